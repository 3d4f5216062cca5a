"""Evaluate a finished run: `python evaluate.py RUN_DIR` writes RUN_DIR/metrics.json and figures.

It reads the run's config.json to tell which model it holds (gan, vae, lstm, transformer) and measures it accordingly.
`--over-training` (GAN runs) also measures the generator snapshots that training wrote, epoch by epoch.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as in train.py: keep TensorFlow's start-up quiet

from datasets import TEXT_MODELS  # noqa: E402
from training import commands  # noqa: E402

commands.skip_unused_imports()  # before Keras: a faster start

from training import run_dir as run_files  # noqa: E402

# What a finished run of each model holds; a run without them is unfinished.
EXPORTS = {"gan": ("generator.keras", "discriminator.keras"), "vae": ("encoder.keras", "decoder.keras"),
           **{model: ("model.keras", "vocab.json") for model in TEXT_MODELS}}
# Flags that measure one model only, and their defaults; their counts' upper bounds (memory, not taste).
MAX_COUNTS = {"samples": 100_000, "iw_samples": 10_000, "poems": 10_000}
DEFAULT_POEMS = 500  # evaluation.verse.DEFAULT_POEMS (not imported: flags are checked before TensorFlow loads)
MODEL_FLAGS = {"gan": {"samples": 1000, "over_training": False}, "vae": {"iw_samples": 100}, "lstm": {},
               "transformer": {}}


def build_parser():
    parser = commands.Parser(prog="evaluate.py", description="Evaluate a run directory written by train.py.")
    parser.add_argument("run_dir", help="a run directory, e.g. outputs/gan/20260101-120000")
    parser.add_argument("--seed", type=int, default=0, help="seeds the samples drawn for the measures")
    parser.add_argument("--samples", type=int, default=None,
                        help="gan: how many samples to generate and measure (default 1000)")
    parser.add_argument("--iw-samples", type=int, default=None,
                        help="vae: importance samples K per test image for the log-likelihood (default 100)")
    parser.add_argument("--over-training", action="store_const", const=True, default=None,
                        help="gan: also measure the generator snapshots training wrote (classifier FID and "
                             "effective classes per epoch) into figures/quality_over_training.png")
    parser.add_argument("--poems", type=int, default=None,
                        help=f"text runs on one poem a line: how many poems to sample and measure, beside as many real "
                             f"held-out ones (default {DEFAULT_POEMS})")
    return parser


def resolve(argv):
    """(args with the model's defaults filled in, the run's config); raises UsageError or RunDirError."""
    args = build_parser().parse_args(argv)
    commands.require_seed(args.seed)
    config = run_files.open_finished_run(args.run_dir, EXPORTS)
    run_files.require_writable(args.run_dir)  # metrics.json and figures are written into the run
    model = config["settings"]["model"]
    for other_model, flags in MODEL_FLAGS.items():
        for name, default in flags.items():
            flag = "--" + name.replace("_", "-")
            if other_model != model and getattr(args, name) is not None:
                raise commands.UsageError(f"{flag} measures {other_model} runs; {args.run_dir} holds a {model} run")
            if other_model == model:
                value = default if getattr(args, name) is None else getattr(args, name)
                if not isinstance(value, bool) and not 1 <= value <= MAX_COUNTS[name]:
                    raise commands.UsageError(f"{flag} must be in [1, {MAX_COUNTS[name]:,}], got {value}")
                setattr(args, name, value)
    one_per_line = model in TEXT_MODELS and config["data"].get("one_per_line", False)
    if args.poems is not None and not one_per_line:
        raise commands.UsageError(f"--poems measures runs on one poem a line; {args.run_dir} holds a {model} run on "
                             f"{config['data']['source']}")
    if one_per_line:
        args.poems = DEFAULT_POEMS if args.poems is None else args.poems
        if not 1 <= args.poems <= MAX_COUNTS["poems"]:
            raise commands.UsageError(f"--poems must be in [1, {MAX_COUNTS['poems']:,}], got {args.poems}")
    if model == "gan" and args.over_training:
        from training.gan import SNAPSHOTS, list_snapshots

        if not list_snapshots(args.run_dir):
            raise commands.UsageError(f"--over-training: {args.run_dir} has no generator snapshots ({SNAPSHOTS}/), "
                                 "which train.py writes since this version; train the run again to measure it")
    return args, config


def print_metrics(metrics):
    """Prints the metrics as a two-column table, and a GAN's over-training measures one row per epoch."""
    table = {name: value for name, value in metrics.items() if name not in ("over_training", "verse")}
    width = max(map(len, table))
    for name, value in table.items():
        if isinstance(value, list):  # a histogram, the FID floor's draws
            value = ", ".join(f"{item:.4f}" if isinstance(item, float) else str(item) for item in value)
        print(f"  {name:<{width}}  {value:.4f}" if isinstance(value, float) else f"  {name:<{width}}  {value}")
    if "verse" in metrics:
        from evaluation.verse import table as verse_table

        print(verse_table(metrics["verse"], metrics["held_out_bits_per_char"]))
    if "over_training" in metrics:
        columns = [name for name in metrics["over_training"] if name != "epoch"]
        print("  over training (generator snapshots):\n    epoch  " + "  ".join(columns))
        rows = zip(metrics["over_training"]["epoch"], *map(metrics["over_training"].get, columns))
        for epoch, *values in rows:  # each value right-aligned under its column's name
            cells = (f"{value:>{len(name)}.4f}" for name, value in zip(columns, values))
            print(f"    {epoch:>5}  " + "  ".join(cells))


def measure(args, config, data):
    """The run's metrics (its model's own measures), writing its figures; raises RunDirError for bad files."""
    model = config["settings"]["model"]
    if model == "gan":
        from evaluation import gan as gan_evaluation

        return gan_evaluation.evaluate(args.run_dir, config, data, args.samples, args.seed, args.over_training)
    if model == "vae":
        from evaluation import vae as vae_evaluation

        return vae_evaluation.evaluate(args.run_dir, config, data, args.iw_samples, args.seed)
    if model == "transformer":
        from evaluation import transformer as transformer_evaluation

        return transformer_evaluation.evaluate(args.run_dir, config, data, args.seed, poems=args.poems)
    from evaluation import lstm as lstm_evaluation

    return lstm_evaluation.evaluate(args.run_dir, config, data, args.seed, poems=args.poems)


def main(argv=None):
    try:
        args, config = resolve(sys.argv[1:] if argv is None else argv)
    except (commands.UsageError, run_files.RunDirError) as exc:
        commands.fail(exc)
    settings = config["settings"]
    model = settings["model"]
    kinds = {"lstm": lambda: f"{settings['layers']} x LSTM {settings['units']}",
             "transformer": lambda: f"{settings['layers']} Transformer blocks of width {settings['d_model']}"}
    kind = kinds.get(model, lambda: settings["arch"])()
    print(f"{args.run_dir}: a finished {model} run ({kind}, {settings['epochs']} epochs on "
          f"{config['data']['source']})")

    import datasets

    try:
        data = datasets.load_for(model, config["data"]["source"], config["data"].get("one_per_line", False))
    except datasets.DataError as exc:
        commands.fail(exc)
    try:
        metrics = measure(args, config, data)
    except run_files.RunDirError as exc:  # an export or vocabulary that is damaged or another model's
        commands.fail(exc)
    run_files.write_json(os.path.join(args.run_dir, "metrics.json"), metrics)
    print_metrics(metrics)
    written = ("evaluation_samples.txt", "evaluation_poems.txt") if "verse" in metrics else ("evaluation_samples.txt",)
    extra = "".join(f", {os.path.join(args.run_dir, name)}" for name in written) if model in TEXT_MODELS else ""
    print(f"wrote {os.path.join(args.run_dir, 'metrics.json')}{extra} and figures in "
          f"{os.path.join(args.run_dir, run_files.FIGURES)}")


if __name__ == "__main__":
    main()
