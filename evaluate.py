"""Evaluate a finished run: `python evaluate.py RUN_DIR` writes RUN_DIR/metrics.json and figures.

It reads the run's config.json to tell which model it holds (gan, vae, lstm) and measures it accordingly.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as in train.py: keep TensorFlow's start-up quiet

from training import cli  # noqa: E402
from training import run_dir as run_files  # noqa: E402

# What a finished run of each model holds; a run without them is unfinished.
EXPORTS = {"gan": ("generator.keras", "discriminator.keras"), "vae": ("encoder.keras", "decoder.keras"),
           "lstm": ("model.keras", "vocab.json")}
# Flags that measure one model only, and their defaults.
MODEL_FLAGS = {"gan": {"samples": 1000}, "vae": {"iw_samples": 100}, "lstm": {}}


def build_parser():
    parser = cli.Parser(prog="evaluate.py", description="Evaluate a run directory written by train.py.")
    parser.add_argument("run_dir", help="a run directory, e.g. outputs/gan/20260101-120000")
    parser.add_argument("--seed", type=int, default=0, help="seeds the samples drawn for the measures")
    parser.add_argument("--samples", type=int, default=None,
                        help="gan: how many samples to generate and measure (default 1000)")
    parser.add_argument("--iw-samples", type=int, default=None,
                        help="vae: importance samples K per test image for the log-likelihood (default 100)")
    return parser


def resolve(argv):
    """(args with the model's defaults filled in, the run's config); raises UsageError or RunDirError."""
    args = build_parser().parse_args(argv)
    cli.require_seed(args.seed)
    config = run_files.open_finished_run(args.run_dir, EXPORTS)
    model = config["settings"]["model"]
    for other_model, flags in MODEL_FLAGS.items():
        for name, default in flags.items():
            flag = "--" + name.replace("_", "-")
            if other_model != model and getattr(args, name) is not None:
                raise cli.UsageError(f"{flag} measures {other_model} runs; {args.run_dir} holds a {model} run")
            if other_model == model:
                value = default if getattr(args, name) is None else getattr(args, name)
                if value < 1:
                    raise cli.UsageError(f"{flag} must be 1 or more, got {value}")
                setattr(args, name, value)
    return args, config


def main(argv=None):
    try:
        args, config = resolve(sys.argv[1:] if argv is None else argv)
    except (cli.UsageError, run_files.RunDirError) as exc:
        cli.fail(exc)
    settings = config["settings"]
    model = settings["model"]
    kind = (f"{settings['layers']} x LSTM {settings['units']}" if model == "lstm" else settings["arch"])
    print(f"{args.run_dir}: a finished {model} run ({kind}, {settings['epochs']} epochs on "
          f"{config['data']['source']})")

    import datasets

    try:
        data = datasets.load_for(model, config["data"]["source"])
    except datasets.DataError as exc:
        cli.fail(exc)
    if model == "gan":
        from evaluation import gan as gan_evaluation

        metrics = gan_evaluation.evaluate(args.run_dir, config, data, args.samples, args.seed)
    elif model == "vae":
        from evaluation import vae as vae_evaluation

        metrics = vae_evaluation.evaluate(args.run_dir, config, data, args.iw_samples, args.seed)
    else:
        from evaluation import lstm as lstm_evaluation

        metrics = lstm_evaluation.evaluate(args.run_dir, config, data, args.seed)
    run_files.write_json(os.path.join(args.run_dir, "metrics.json"), metrics)
    width = max(map(len, metrics))
    for name, value in metrics.items():
        value = ", ".join(map(str, value)) if isinstance(value, list) else value
        print(f"  {name:<{width}}  {value:.4f}" if isinstance(value, float) else f"  {name:<{width}}  {value}")
    extra = f", {os.path.join(args.run_dir, 'evaluation_samples.txt')}" if model == "lstm" else ""
    print(f"wrote {os.path.join(args.run_dir, 'metrics.json')}{extra} and figures in "
          f"{os.path.join(args.run_dir, run_files.FIGURES)}")


if __name__ == "__main__":
    main()
