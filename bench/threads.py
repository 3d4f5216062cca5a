"""Training speed of one model at train.py's defaults under several --intra-op-threads settings.

    python -m bench.threads MODEL [--threads 0 1] [--rounds 3] [--epochs 3] [--train-flags="--arch dcgan"]
                                  [--engine fit]

TensorFlow fixes its thread pools when it starts, so each setting trains in its own process: the Trainer
that train.py runs (or, with --engine fit, the keras-io fit() baseline of `python -m bench`), one warm-up
epoch, then --epochs measured ones (their median). The settings' processes alternate for --rounds rounds,
so a slow spell of this shared machine hits all of them; the median of the rounds is reported for each.
"""

import importlib
import os
import shlex
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from training import cli, commands  # noqa: E402

MODELS = ("gan", "vae", "lstm")


def measure_one(model, intra_op_threads, epochs, train_flags=(), engine="ours"):
    """Samples/s (median of `epochs` epochs after a warm-up) of train.py's defaults with `train_flags`,
    in this process (whose threads are already set), trained by `engine`."""
    import datasets
    from bench.common import TrainerRunner
    from training import distribute
    from training.task import task_class

    data_flag = ["--corpus", "pydoc"] if model == "lstm" else ["--data", "mnist-5k"]
    settings = vars(cli.parse_args([model, *data_flag, *train_flags, "--intra-op-threads", str(intra_op_threads)]))
    distribute.make_deterministic(settings["seed"])
    # --train-flags may name other data
    data = datasets.load_for(model, cli.requested_data(settings), settings.get("one_per_line", False))
    cli.settle_run_length(settings, data)
    if engine == "fit":
        step_module = importlib.import_module(f"bench.{model}_step")
        if model == "lstm":  # whole epochs, as the Trainer's
            from training.lstm import windows_per_epoch
            steps = windows_per_epoch(len(data.train_ids), settings["seq_len"]) // settings["batch_size"]
            runner = step_module.keras_io_runner(settings, data, steps)
        else:
            runner = step_module.keras_io_runner(settings, data)
    else:
        runner = TrainerRunner(lambda strategy: task_class(model)(settings, data, strategy), settings)
    runner.run_epoch()
    rates = [runner.run_epoch() for _ in range(epochs)]
    runner.close()
    return statistics.median(rates)


def build_parser():
    parser = commands.Parser(prog="python -m bench.threads", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=MODELS)
    parser.add_argument("--threads", type=int, nargs="+", default=[0, 1],
                        help="--intra-op-threads settings to compare (0: TensorFlow's default)")
    parser.add_argument("--rounds", type=int, default=3, help="processes per setting, alternated")
    parser.add_argument("--epochs", type=int, default=3, help="measured epochs per process, after a warm-up")
    parser.add_argument("--train-flags", default="", help="more train.py flags, e.g. --train-flags=\"--arch dcgan\"")
    parser.add_argument("--engine", choices=("ours", "fit"), default="ours",
                        help="ours: train.py's Trainer; fit: the keras-io fit() baseline of python -m bench")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_or_exit(argv)
    if min(args.threads) < 0:
        commands.fail(f"--threads must be 0 or more, got {min(args.threads)}")
    for name in ("rounds", "epochs"):
        if getattr(args, name) < 1:
            commands.fail(f"--{name} must be 1 or more, got {getattr(args, name)}")
    try:
        train_flags = shlex.split(args.train_flags)
        cli.parse_args([args.model, *train_flags])
    except (commands.UsageError, ValueError) as exc:
        commands.fail(f"--train-flags: {exc}")
    from bench.common import call_with_threads  # TensorFlow, only once the command is known to be good

    rates = {threads: [] for threads in args.threads}
    for _ in range(args.rounds):
        for threads in args.threads:
            rates[threads].append(call_with_threads(threads, measure_one, args.model, threads, args.epochs,
                                                    train_flags, args.engine, own_process=True))
    unit = "characters" if args.model == "lstm" else "images"
    baseline = statistics.median(rates[args.threads[0]])
    for threads, measured in rates.items():
        median = statistics.median(measured)
        engine = " (keras-io fit)" if args.engine == "fit" else ""
        print(f"{args.model}{engine} --intra-op-threads {threads}: {median:,.0f} {unit}/s "
              f"({median / baseline:.2f}x --intra-op-threads {args.threads[0]}; rounds "
              f"{', '.join(f'{rate:,.0f}' for rate in measured)})")
    return rates


if __name__ == "__main__":
    main()
