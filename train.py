"""Train one of the tutorial's generators: `python train.py {gan,vae,lstm,transformer} [flags]` (see --help).

A thin command line over training/: it checks the request, sets up devices and the
tf.distribute strategy, loads the data, and hands a model's task to the shared Trainer.
"""

import os
import platform
import sys

# TensorFlow's C++ start-up chatter (CPU features, oneDNN, end-of-sequence notices) would bury the
# progress bar; warnings and errors still show. Set TF_CPP_MIN_LOG_LEVEL=0 to see everything.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from training import cli, commands  # noqa: E402

commands.skip_unused_imports()  # before Keras: a faster start

from training import run_dir as run_files  # noqa: E402
from training.task import task_class  # noqa: E402 - each model's Task (training/task.py), which the Trainer runs

# Settings a resumed run may change when typed again; every other one is the run's own, from its config.json.
# --run-dir is where the run is now: a run directory may be moved or copied and resumed there. The fused
# optimizer, LSTM and Transformer, like --jit, only choose how the same function is computed.
CHANGEABLE_ON_RESUME = {"epochs", "strategy", "cpu_replicas", "jit", "quiet", "keep_checkpoints",
                        "steps_per_execution", "run_dir", "fused_optimizer", "fused_lstm", "fused_transformer",
                        "lstm_chains", "intra_op_threads"}


def resolve_settings(argv):
    """Parses argv into (settings, data source to load, the run's earlier config or None).

    On --resume the run's recorded settings win; a typed flag may only change what a resumed run can.
    """
    args = cli.parse_args(argv)
    settings = vars(args)
    run_files.check_usable(args.run_dir, args.resume, args.overwrite)
    if not args.resume:
        return settings, cli.requested_data(settings), None
    config = run_files.read_run_config(args.run_dir)
    recorded = config["settings"]
    if recorded["model"] != args.model:
        raise commands.UsageError(f"{args.run_dir} holds a {recorded['model']} run, not a {args.model} run")
    typed = cli.explicit_flags(argv)
    for name, value in recorded.items():
        if name in typed and name in CHANGEABLE_ON_RESUME:
            continue
        if name in typed and settings.get(name) != value:
            flag = "--" + name.replace("_", "-")
            raise commands.UsageError(f"{flag} {settings.get(name)} differs from the run's {value}; "
                                 "a resumed run keeps its settings")
        settings[name] = value
    # Load the source the run actually used, even if `--data auto` would now find another.
    return settings, config["data"]["source"], config


def run_config(argv, settings, data, strategy_name, replicas, precision, steps_per_epoch, threads, previous=None):
    """config.json: what produced the run (settings and where each came from, data actually used, strategy,
    versions, machine)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from training import distribute

    return {
        "format_version": run_files.FORMAT_VERSION,
        "command": "python train.py " + " ".join(argv),
        "settings": {k: v for k, v in settings.items() if k not in ("resume", "overwrite")},
        "settings_from": setting_sources(argv, settings, previous),
        "data": {"requested": cli.requested_data(settings), **data.summary()},
        "strategy": {"name": strategy_name, "replicas": replicas, "global_batch_size": settings["batch_size"],
                     "per_replica_batch_size": settings["batch_size"] // replicas},
        "precision": precision,
        "steps_per_epoch": steps_per_epoch,
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                     "keras": keras.__version__, "numpy": np.__version__},
        "machine": distribute.machine(),
        "threads": threads,  # TensorFlow's intra-op and inter-op threads in effect (0: its default)
    }


def setting_sources(argv, settings, previous):
    """config.json's settings_from: a new run's (cli.setting_sources); a resumed run keeps its first command's
    ("recorded" where that run predates settings_from), but for the flags typed now."""
    if previous is None:
        return {k: v for k, v in cli.setting_sources(argv, settings).items() if k not in ("resume", "overwrite")}
    recorded = previous.get("settings_from") or {name: "recorded" for name in previous["settings"]}
    typed = cli.explicit_flags(argv) & CHANGEABLE_ON_RESUME
    return {**recorded, **{name: "flag" for name in typed if name in settings}}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        settings, data_source, previous_config = resolve_settings(argv)
    except (commands.UsageError, run_files.RunDirError) as exc:
        commands.fail(exc)

    # Only now import TensorFlow: a mistyped command is refused without waiting for it.
    import tensorflow as tf

    import datasets
    from training import distribute, loop
    task_type = task_class(settings["model"])

    try:
        threads = distribute.configure_threads(settings["intra_op_threads"])
        distribute.configure_devices(settings["cpu_replicas"])
        strategy, strategy_name = distribute.choose_strategy(settings["strategy"], settings["cpu_replicas"])
        precision = distribute.configure_precision(settings["mixed_precision"])
        replicas = strategy.num_replicas_in_sync
        if settings["jit"] and replicas > 1:
            # On split CPU devices XLA compiles for the one physical CPU and cannot reach the other
            # replicas' variables; on several GPUs Keras itself turns XLA off under tf.distribute.
            raise commands.UsageError(f"--jit runs on one replica only, and this run has {replicas}; "
                                 "drop --jit, or train on one device")
        if settings["batch_size"] % replicas:
            raise commands.UsageError(
                f"--batch-size {settings['batch_size']} does not divide over {replicas} replicas; "
                f"use a multiple of {replicas}")
        data = datasets.load_for(settings["model"], data_source, settings.get("one_per_line", False))
    except (commands.UsageError, distribute.SetupError, datasets.DataError) as exc:
        commands.fail(exc)
    print(f"data: {data.description}")
    cli.settle_run_length(settings, data)  # a new image run's epochs from its --train-images budget
    if settings.get("lr_schedule") == "cosine" and settings["epochs"] > settings["lr_decay_epochs"]:
        print(f"note: the cosine learning-rate decay ends at epoch {settings['lr_decay_epochs']}; the epochs "
              "after it train at learning rate 0 (start a run with a larger --lr-decay-epochs to train longer)")
    print(f"strategy: {strategy_name} with {replicas} replica(s); precision {precision}")

    distribute.make_deterministic(settings["seed"])
    try:
        task = task_type(settings, data, strategy, mixed_precision=precision == "mixed_float16")
    except ValueError as exc:
        commands.fail(exc)
    except (MemoryError, tf.errors.ResourceExhaustedError) as exc:
        commands.fail(f"the model does not fit in memory ({commands.one_line(exc)}); use smaller layers")
    run_dir = settings["run_dir"]
    chief = distribute.is_chief(strategy)
    if chief:
        # A new run's directory (an --overwrite removes the old run first); on --resume, only the
        # folders a run holds that are missing are made.
        try:
            run_files.prepare(run_dir, settings["overwrite"])
        except OSError as exc:
            commands.fail(f"cannot write the run directory {run_dir}: {exc.strerror or exc}")
    trainer = loop.Trainer(task, strategy, run_dir, keep_checkpoints=settings["keep_checkpoints"],
                           jit=settings["jit"], verbose=not settings["quiet"], chief=chief,
                           steps_per_execution=settings["steps_per_execution"])
    completed = 0
    if settings["resume"]:
        # Restore before the run's files are rewritten, so a resume that is refused leaves the run as it was.
        try:
            task.check_resume(run_dir)
            run_files.read_history(run_dir)  # a damaged history.csv is refused now, not after an epoch
            completed, steps_done = trainer.restore()
        except (ValueError, OSError, loop.CheckpointError, run_files.RunDirError) as exc:
            commands.fail(exc)
        if completed >= settings["epochs"]:
            commands.fail(f"the run in {run_dir} has already trained {completed} epochs; "
                     f"pass --epochs above {completed} to train on")
        print(f"resuming {run_dir} after epoch {completed}" + (f", step {steps_done}" if steps_done else ""))
    if chief:
        config = run_config(argv, settings, data, strategy_name, replicas, precision, task.steps_per_epoch,
                            threads, previous_config)
        if previous_config is not None:
            config["resumed_from_epoch"] = previous_config.get("resumed_from_epoch", []) + [completed]
        run_files.write_json(os.path.join(run_dir, run_files.CONFIG), config)

    try:
        history = trainer.fit(settings["epochs"])
    except loop.NonFiniteLoss as exc:
        commands.fail(exc)
    except (MemoryError, tf.errors.ResourceExhaustedError) as exc:
        commands.fail(f"a training step does not fit in memory ({commands.one_line(exc)}); "
                 "use a smaller --batch-size or smaller layers")
    except loop.Interrupted as exc:
        # Not an error of the command: the run is whole and continues with --resume.
        print(exc, file=sys.stderr)
        sys.exit(exc.exit_status)
    # Every worker prints it: all of a synchronous job's workers must end with the same weights.
    print(f"weights sha256 {trainer.weights_fingerprint()}")
    if chief:
        task.export(run_dir)
        last = history[-1]
        print(f"trained {last['epoch']} epochs in {last['wall_seconds']:.0f} s "
              f"({last['samples_per_sec']:.0f} samples/s); run written to {run_dir}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # Ctrl-C before training began (training itself stops at a step boundary, checkpointed).
        print("\ninterrupted before training began; no checkpoint was written", file=sys.stderr)
        sys.exit(130)
