"""Evaluate a finished run: `python evaluate.py RUN_DIR` writes RUN_DIR/metrics.json and figures."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as in train.py: keep TensorFlow's start-up quiet

from training import cli  # noqa: E402
from training import run_dir as run_files  # noqa: E402

EXPORTS = {"gan": ("generator.keras", "discriminator.keras")}


def main(argv=None):
    parser = cli.Parser(prog="evaluate.py", description="Evaluate a run directory written by train.py.")
    parser.add_argument("run_dir", help="a run directory, e.g. outputs/gan/20260101-120000")
    parser.add_argument("--samples", type=int, default=1000, help="how many samples to generate and measure")
    parser.add_argument("--seed", type=int, default=0, help="seeds the samples' noise")
    try:
        args = parser.parse_args(argv)
        if args.samples < 1:
            raise cli.UsageError(f"--samples must be 1 or more, got {args.samples}")
        cli.require_seed(args.seed)
        config = run_files.open_finished_run(args.run_dir, EXPORTS)
    except (cli.UsageError, run_files.RunDirError) as exc:
        cli.fail(exc)
    model = config["settings"]["model"]
    print(f"{args.run_dir}: a finished {model} run ({config['settings'].get('arch', '')}, "
          f"{config['settings']['epochs']} epochs on {config['data']['source']})")

    from datasets import mnist
    from evaluation import gan as gan_evaluation

    try:
        data = mnist.load(config["data"]["source"])
    except mnist.DataUnavailable as exc:
        cli.fail(exc)
    metrics = gan_evaluation.evaluate(args.run_dir, config, data, args.samples, args.seed)
    run_files.write_json(os.path.join(args.run_dir, "metrics.json"), metrics)
    width = max(map(len, metrics))
    for name, value in metrics.items():
        print(f"  {name:<{width}}  {value:.4f}" if isinstance(value, float) else f"  {name:<{width}}  {value}")
    print(f"wrote {os.path.join(args.run_dir, 'metrics.json')} and "
          f"{os.path.join(args.run_dir, run_files.FIGURES, 'evaluation_samples.png')}")


if __name__ == "__main__":
    main(sys.argv[1:])
