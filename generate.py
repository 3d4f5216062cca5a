"""Generate from a finished run.

    python generate.py RUN_DIR --prompt "To be" --length 300 --temperature 0.8 [--top-k 20] [--top-p 0.9] [--seed 0]
        a text run (lstm, transformer): prints the prompt and the text that follows it
    python generate.py RUN_DIR --poems 5 [--form 5x4|5x8|7x4|7x8] [--acrostic 春夏秋冬]
        a text run on one poem (document) a line: poems from line start to line end, one a line; --form
        places the punctuation by position, --acrostic starts the k-th clause with its k-th character
    python generate.py RUN_DIR --n 64 --out samples.png [--seed 0]
        a GAN or VAE run: writes a PNG grid of new digits
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as in train.py: keep TensorFlow's start-up quiet

from models.poems import FORMS, FREE_POEM_MAX_LENGTH, PoemError, acrostic_form, form_bias  # noqa: E402 (numpy only)
from datasets import TEXT_MODELS  # noqa: E402
from training import commands  # noqa: E402

commands.skip_unused_imports()  # before Keras: a faster start

from training import run_dir as run_files  # noqa: E402

TEXT_EXPORTS = ("model.keras", "vocab.json")
EXPORTS = {"gan": ("generator.keras",), "vae": ("decoder.keras",), **{model: TEXT_EXPORTS for model in TEXT_MODELS}}
TEXT_RUNS = " and ".join(TEXT_MODELS)
TEXT_FLAGS = ("prompt", "length", "temperature", "top_k", "top_p", "poems", "form", "acrostic", "jit")
POEM_FLAGS = ("poems", "form", "acrostic")  # for runs on one poem (document) a line
IMAGE_FLAGS = ("n", "out")
MAX_DIGITS = 10_000  # a grid of 100 x 100 digits; more would only exhaust memory
MAX_LENGTH = 1_000_000
MAX_POEMS = 10_000


def build_parser():
    parser = commands.Parser(prog="generate.py", description="Generate text or digits from a run written by train.py.")
    parser.add_argument("run_dir", help="a finished run directory")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same output")
    parser.add_argument("--prompt", default=None, help="text: the text to continue (default: a newline)")
    parser.add_argument("--length", type=int, default=None, help="text: characters to generate (default 500)")
    parser.add_argument("--temperature", type=commands.finite_float, default=None,
                        help="text: divides the logits; below 1 is more conservative, above 1 more varied (default 1)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="text: sample only among the k most likely characters (default: all)")
    parser.add_argument("--top-p", type=commands.finite_float, default=None,
                        help="text: nucleus sampling, only among the most likely characters whose probabilities "
                             "add up to p (default 1: all)")
    parser.add_argument("--poems", type=int, default=None,
                        help="text runs on one poem a line: how many poems, each from a line start to its line end "
                             "(default 1 with --form or --acrostic); --length caps a free poem's characters "
                             f"(default {FREE_POEM_MAX_LENGTH})")
    parser.add_argument("--form", choices=tuple(FORMS), default=None,
                        help="text runs on one poem a line: characters x clauses (5x4 五言绝句 ... 7x8 七言律诗); the "
                             "punctuation and the line end are placed by position, the characters sampled")
    parser.add_argument("--acrostic", default=None,
                        help="text runs on one poem a line: 藏头诗, clause k starts with the k-th character given "
                             "(the form defaults to 7x4, or 7x8 for 5 to 8 characters)")
    parser.add_argument("--jit", action="store_true", default=None,
                        help="text: compile the whole sampling loop with XLA: some seconds to compile, then faster "
                             "per character; the same seed gives another text than without it (models/sampling.py)")
    parser.add_argument("--n", type=int, default=None, help="gan/vae: how many digits (default 64)")
    parser.add_argument("--out", default=None, help="gan/vae: the PNG to write (default: RUN_DIR/generated.png)")
    return parser


def resolve(argv):
    """(args with the model's defaults filled in, the run's config); raises UsageError or RunDirError."""
    args = build_parser().parse_args(argv)
    commands.require_seed(args.seed)
    config = run_files.open_finished_run(args.run_dir, EXPORTS)
    model = config["settings"]["model"]
    text_run = model in TEXT_MODELS
    own, other = (TEXT_FLAGS, IMAGE_FLAGS) if text_run else (IMAGE_FLAGS, TEXT_FLAGS)
    for name in other:
        if getattr(args, name) is not None:
            kind = "gan and vae" if text_run else TEXT_RUNS
            raise commands.UsageError(f"--{name.replace('_', '-')} is for {kind} runs; "
                                      f"{args.run_dir} holds a {model} run")
    if text_run:
        resolve_poem_flags(args, config)
        args.length = (500 if args.poems is None else FREE_POEM_MAX_LENGTH) if args.length is None else args.length
        args.temperature = 1.0 if args.temperature is None else args.temperature
        if not 0 <= args.length <= MAX_LENGTH:
            raise commands.UsageError(f"--length must be in [0, {MAX_LENGTH:,}], got {args.length}")
        if args.poems is not None and args.length < 1:
            raise commands.UsageError(f"--length caps each poem's characters; give 1 or more, got {args.length}")
        if not args.temperature > 0:
            raise commands.UsageError(f"--temperature must be above 0, got {args.temperature}")
        if args.top_k is not None and args.top_k < 1:
            raise commands.UsageError(f"--top-k must be 1 or more, got {args.top_k}")
        args.top_p = 1.0 if args.top_p is None else args.top_p
        if not 0 < args.top_p <= 1:
            raise commands.UsageError(f"--top-p must be in (0, 1], got {args.top_p}")
        if args.prompt == "":
            raise commands.UsageError("--prompt is empty; give at least one character (or leave it out)")
    else:
        args.n = 64 if args.n is None else args.n
        if not 1 <= args.n <= MAX_DIGITS:
            raise commands.UsageError(f"--n must be in [1, {MAX_DIGITS:,}], got {args.n}")
        args.out = args.out or os.path.join(args.run_dir, "generated.png")
        if not args.out.lower().endswith(".png"):
            raise commands.UsageError(f"--out {args.out} must name a .png file")
        folder = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(folder):
            raise commands.UsageError(f"--out {args.out}: the folder {folder} does not exist")
    return args, config


def resolve_poem_flags(args, config):
    """Checks --poems, --form and --acrostic against the run (one poem a line?) before anything loads."""
    asked = [name for name in POEM_FLAGS if getattr(args, name) is not None]
    if not asked:
        return
    flag = "--" + asked[0]
    if not config["data"].get("one_per_line"):
        raise commands.UsageError(f"{flag} is for runs on one poem (document) a line; {args.run_dir} was trained on "
                             f"running text ({config['data']['source']}); train with --corpus tang or "
                             "--corpus PATH --one-per-line")
    if args.prompt is not None:
        raise commands.UsageError(f"--prompt continues a text; {flag} starts every poem at a line start")
    args.poems = 1 if args.poems is None else args.poems
    if not 1 <= args.poems <= MAX_POEMS:
        raise commands.UsageError(f"--poems must be in [1, {MAX_POEMS:,}], got {args.poems}")
    if args.acrostic is not None:
        if not args.acrostic:
            raise commands.UsageError("--acrostic is empty; give the characters the clauses start with")
        try:
            args.form = args.form or acrostic_form(args.acrostic)
        except PoemError as exc:
            raise commands.UsageError(exc) from None
        if len(args.acrostic) > FORMS[args.form][1]:
            raise commands.UsageError(f"--acrostic {args.acrostic} has {len(args.acrostic)} characters and --form "
                                 f"{args.form} only {FORMS[args.form][1]} clauses")


def generate_text(args, config):
    from datasets.text import CorpusError
    from models.poems import sample_poems
    from training.lstm import default_prompt, load_run_vocabulary
    from training.task import task_class

    vocabulary = load_run_vocabulary(args.run_dir)
    prompt = default_prompt(vocabulary) if args.prompt is None else args.prompt
    try:
        prompt_ids = vocabulary.encode(prompt)
    except CorpusError as exc:
        raise commands.UsageError(f"--prompt has {exc}") from None
    if args.form:
        try:  # an acrostic the vocabulary cannot write is refused before the model loads
            form_bias(vocabulary, args.form, args.acrostic or "")
        except PoemError as exc:
            raise commands.UsageError(exc) from None
    model = run_files.load_exported_model(args.run_dir, config, "model.keras", len(vocabulary))
    # The run's task knows its model's sampler: the LSTM's state carried, or the Transformer's KV cache.
    sampler = task_class(config["settings"]["model"]).make_sampler(model)
    if args.poems is not None:
        poems = sample_poems(sampler, vocabulary, args.poems, args.form, args.acrostic, args.temperature,
                             top_k=args.top_k or 0, top_p=args.top_p, seed=args.seed, max_length=args.length,
                             jit=bool(args.jit))
        return "\n".join(poems)
    ids = sampler.generate(prompt_ids, args.length, args.temperature, top_k=args.top_k or 0, top_p=args.top_p,
                           seed=args.seed, jit=bool(args.jit))
    return prompt + vocabulary.decode(ids)


def generate_images(args, config):
    import numpy as np
    import tensorflow as tf

    from training import figures

    model = config["settings"]["model"]
    name = "generator.keras" if model == "gan" else "decoder.keras"
    network = run_files.load_exported_model(args.run_dir, config, name)
    latent = tf.random.stateless_normal((args.n, network.input_shape[-1]), seed=(args.seed, 0))
    output = network(latent, training=False)
    # The GAN's tanh images are in [-1, 1]; the VAE's decoder gives logits whose sigmoid is the pixel mean.
    images = (np.asarray(output) + 1) / 2 if model == "gan" else tf.sigmoid(output).numpy()
    figures.save_grid(images, args.out, columns=min(10, args.n) if args.n < 64 else 8)


def main(argv=None):
    try:
        args, config = resolve(sys.argv[1:] if argv is None else argv)
    except (commands.UsageError, run_files.RunDirError) as exc:
        commands.fail(exc)
    model = config["settings"]["model"]
    try:
        if model in TEXT_MODELS:
            text = generate_text(args, config)
        else:
            generate_images(args, config)
    except (commands.UsageError, run_files.RunDirError) as exc:
        commands.fail(exc)
    except OSError as exc:
        commands.fail(f"cannot write {args.out}: {exc.strerror or exc}")
    if model in TEXT_MODELS:
        sys.stdout.write(text + "\n")
    else:
        print(f"wrote {args.n} new digits from the {model} run to {args.out}")


if __name__ == "__main__":
    main()
