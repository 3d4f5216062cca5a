"""Where a training step's time goes: one epoch of train.py's Trainer under the TensorFlow profiler.

    python -m bench.profile MODEL [TRAIN.PY FLAGS...] [--log-dir DIR]

Trains one warm-up epoch (tracing), then profiles the next one and writes the trace to DIR (default
outputs/profile/MODEL). View it with TensorBoard's profile plugin (`pip install tensorboard-plugin-profile`,
then `tensorboard --logdir DIR`); with that package installed this also prints the time per op type.
"""

import glob
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

from bench.common import TrainerRunner  # noqa: E402
import datasets  # noqa: E402
from training import cli, commands, distribute  # noqa: E402
from training.task import task_class  # noqa: E402


def op_type_times(log_dir):
    """{op type: self-time in ms} of the newest trace in log_dir, or None without the profile plugin."""
    try:
        from xprof.convert import raw_to_tool_data
    except ImportError:
        return None
    trace = sorted(glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"), recursive=True))[-1:]
    data, _ = raw_to_tool_data.xspace_to_tool_data(trace, "framework_op_stats", {})
    table = json.loads(data)[0]
    columns = [column["id"] for column in table["cols"]]
    times = {}
    for row in table["rows"]:
        values = dict(zip(columns, [cell.get("v") for cell in row["c"]]))
        if values["type"] != "IDLE":
            times[values["type"]] = times.get(values["type"], 0.0) + values["total_self_time"] / 1000
    return times


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    log_dir = None
    if "--log-dir" in argv:
        index = argv.index("--log-dir")
        if index + 1 >= len(argv):
            commands.fail("--log-dir needs a directory")
        log_dir = argv[index + 1]
        del argv[index:index + 2]
    if "--resume" in argv:
        commands.fail("bench.profile trains a new run; drop --resume")
    try:
        settings = vars(cli.parse_args(argv))
        model = settings["model"]
        distribute.configure_threads(settings["intra_op_threads"])  # as train.py, before TensorFlow starts
        data = datasets.load_for(model, cli.requested_data(settings), settings.get("one_per_line", False))
        cli.settle_run_length(settings, data)
    except (commands.UsageError, datasets.DataError) as exc:
        commands.fail(exc)
    log_dir = log_dir or os.path.join("outputs", "profile", model)
    distribute.make_deterministic(settings["seed"])
    runner = TrainerRunner(lambda strategy: task_class(model)(settings, data, strategy), settings)
    runner.run_epoch()
    tf.profiler.experimental.start(log_dir)
    rate = runner.run_epoch()
    tf.profiler.experimental.stop()
    runner.close()
    print(f"profiled one epoch ({rate:,.0f} samples/s) into {log_dir}")
    times = op_type_times(log_dir)
    if times is None:
        print("view it with: pip install tensorboard-plugin-profile; tensorboard --logdir " + log_dir)
        return
    total = sum(times.values())
    for op_type, milliseconds in sorted(times.items(), key=lambda item: -item[1])[:15]:
        print(f"  {op_type:32s} {milliseconds:9.1f} ms {milliseconds / total:6.1%}")


if __name__ == "__main__":
    main()
