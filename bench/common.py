"""What every benchmark shares: runners that train one epoch per call, interleaved, their counted FLOPs,
the time to a quality threshold, and the report.

Throughput is samples per second within an epoch, counted from the end of its first compiled call
(tracing and the iterator's start are not steady state); epochs of the runners alternate, so a slow
spell of this shared machine hits all of them, and the median epoch is what is compared.
"""

import json
import multiprocessing
import shutil
import statistics
import tempfile
import time

import keras
import tensorflow as tf

from bench import flops
from training import cli, commands, distribute, loop
from training import run_dir as run_files


class EpochTimer(keras.callbacks.Callback):
    """Samples/s of each fit() epoch, counted from the end of its first batch (as the Trainer counts)."""

    def __init__(self, samples_per_batch):
        super().__init__()
        self.samples_per_batch = samples_per_batch
        self.rates = []

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if batch == 0:
            self.first_batch_end = now
        self.last_batch, self.last_end = batch, now

    def on_epoch_end(self, epoch, logs=None):
        self.rates.append(self.last_batch * self.samples_per_batch / (self.last_end - self.first_batch_end))


class TrainerRunner:
    """train.py's own Trainer on a task, one epoch per call; returns that epoch's steady-state samples/s."""

    def __init__(self, make_task, settings, loop_iterations=None):
        strategy = tf.distribute.get_strategy()
        self.run_dir = tempfile.mkdtemp(prefix="bench-")
        run_files.prepare(self.run_dir, overwrite=False)
        self.trainer = loop.Trainer(make_task(strategy), strategy, self.run_dir, keep_checkpoints=1,
                                    jit=settings["jit"], verbose=False, chief=True,
                                    steps_per_execution=settings["steps_per_execution"])
        self.loop_iterations = loop_iterations
        self.epochs = 0

    def run_epoch(self):
        self.epochs += 1
        return self.trainer.fit(self.epochs)[-1]["samples_per_sec"]

    def flops_per_sample(self):
        task = self.trainer.task
        step_flops = flops.step_flops(task.train_step, task.train_dataset(0).element_spec, self.loop_iterations)
        return step_flops / task.samples_per_step

    def close(self):
        shutil.rmtree(self.run_dir, ignore_errors=True)


# The row of ours with TensorFlow's default threads (--intra-op-threads 0: every op on all cores), which the
# bench's own process keeps, for the models whose default (auto) is fewer threads per op.
TENSORFLOW_THREADS_VARIANT = ("ours_tensorflow_threads", "ours, --intra-op-threads 0", {"intra_op_threads": 0})


def call_with_threads(intra_op_threads, function, *args, own_process=False):
    """function(*args) in a fresh process whose TensorFlow runs each op on `intra_op_threads` threads (0:
    TensorFlow's default), or here when that is 0 and not `own_process` (this process keeps TensorFlow's
    default threads); `function` must be importable."""
    if not intra_op_threads and not own_process:
        return function(*args)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: TensorFlow not yet started
    pool = context.Pool(1, initializer=distribute.configure_threads, initargs=(intra_op_threads,))
    try:
        return pool.apply(function, args)
    finally:
        pool.close()  # the worker ends on its own, its printed lines flushed
        pool.join()


class ProcessRunner:
    """A TrainerRunner in a process of its own, for settings this process cannot hold: TensorFlow fixes its
    threads when it starts, and the bench's own process keeps TensorFlow's defaults (as fit() gets them),
    so ours with --intra-op-threads above 0 runs here. One epoch per call, as the others."""

    def __init__(self, task_class, settings, loop_iterations=None):
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: TensorFlow not yet started
        self.connection, child_end = context.Pipe()
        self.process = context.Process(target=_serve_trainer_runner,
                                       args=(child_end, task_class, settings, loop_iterations))
        self.process.start()
        self.run_dir = self._call("start")

    def _call(self, command):
        self.connection.send(command)
        reply = self.connection.recv()
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def run_epoch(self):
        return self._call("run_epoch")

    def flops_per_sample(self):
        return self._call("flops_per_sample")

    def close(self):
        self._call("close")
        self.process.join()


def _serve_trainer_runner(connection, task_class, settings, loop_iterations):
    """ProcessRunner's other end: builds the runner under the settings' threads, then answers its calls."""
    import datasets

    distribute.configure_threads(settings["intra_op_threads"])
    try:
        distribute.make_deterministic(0)
        data = datasets.load_for(settings["model"], cli.requested_data(settings), settings.get("one_per_line", False))
        runner = TrainerRunner(lambda strategy: task_class(settings, data, strategy), settings, loop_iterations)
    except Exception as exc:  # reported to the parent, which raises it
        connection.recv()
        connection.send(exc)
        return
    while True:
        command = connection.recv()
        connection.send(runner.run_dir if command == "start" else getattr(runner, command)())
        if command == "close":
            return


class FitRunner:
    """A compiled keras.Model trained with fit(), one epoch per call (the keras-io examples' way)."""

    def __init__(self, model, dataset, samples_per_batch, loop_iterations=None):
        self.model, self.dataset = model, dataset
        self.samples_per_batch, self.loop_iterations = samples_per_batch, loop_iterations
        self.timer = EpochTimer(samples_per_batch)

    def run_epoch(self):
        self.model.fit(self.dataset, epochs=1, verbose=0, callbacks=[self.timer])
        return self.timer.rates[-1]

    def flops_per_sample(self):
        step_flops = flops.step_flops(self.model.train_step, self.dataset.element_spec, self.loop_iterations)
        return step_flops / self.samples_per_batch

    def close(self):
        pass


def interleave(runners, epochs):
    """{name: [samples/s of each measured epoch]}; each runner's first epoch (tracing) is not counted."""
    rates = {name: [] for name in runners}
    for epoch in range(epochs + 1):
        for name, runner in runners.items():
            rate = runner.run_epoch()
            if epoch:
                rates[name].append(rate)
    return rates


def compare_engines(task_class, settings, data, keras_io, *, title, unit, epochs, peak_gflops, extra_runners,
                    loop_iterations=None, keras_io_label="keras-io (train_step + fit)", one_step_per_call=True,
                    variants=()):
    """Measures ours (the Trainer at train.py's `settings`) against the keras-io baseline, interleaved, and
    with extra_runners ours at one step per call, with the other --jit setting and with each of `variants`
    ((name, label, changed settings)); prints the table.

    Returns (rows, ours / keras-io ratio, ours' trained task, make_ours): make_ours(**changed_settings)
    makes a fresh TrainerRunner, e.g. for time_to_quality.
    """
    def make_ours(**changed):
        run_settings = {**settings, **changed}
        if run_settings.get("intra_op_threads", 0):  # this process keeps TensorFlow's default threads
            return ProcessRunner(task_class, run_settings, loop_iterations)
        return TrainerRunner(lambda strategy: task_class(run_settings, data, strategy), run_settings,
                             loop_iterations)

    runners = {"ours": make_ours(), "keras_io_fit": keras_io}
    threads = settings["intra_op_threads"]
    threads_label = f", {threads} thread{'s' if threads > 1 else ''} per op" if threads else ""
    labels = {"ours": f"ours (train.py: Trainer, {settings['steps_per_execution']} steps per call{threads_label})",
              "keras_io_fit": keras_io_label}
    if extra_runners and one_step_per_call:
        runners["ours_one_step_per_call"] = make_ours(steps_per_execution=1)
        labels["ours_one_step_per_call"] = "ours, --steps-per-execution 1"
    if extra_runners:
        runners["ours_jit"] = make_ours(jit=not settings["jit"])
        labels["ours_jit"] = "ours, --no-jit" if settings["jit"] else "ours, --jit"
        for name, label, changed in variants:
            runners[name], labels[name] = make_ours(**changed), label
    trained_task = runners["ours"].trainer.task if isinstance(runners["ours"], TrainerRunner) else None
    rows = measure_runners(runners, labels, epochs, unit, peak_gflops)
    return rows, print_rows(title, rows, unit, peak_gflops), trained_task, make_ours


def measure_runners(runners, labels, epochs, unit, peak_gflops):
    """Interleaved throughput of every runner, its counted FLOPs and its share of the matmul peak."""
    rates = interleave(runners, epochs)
    rows = {}
    for name, runner in runners.items():
        median = statistics.median(rates[name])
        flops_per_sample = runner.flops_per_sample()
        gflops = median * flops_per_sample / 1e9
        rows[name] = {"label": labels[name], f"{unit}_per_sec_median": round(median, 1),
                      f"{unit}_per_sec_best": round(max(rates[name]), 1),
                      "mflops_per_sample": round(flops_per_sample / 1e6, 4),
                      "gflops_per_sec": round(gflops, 1), "fraction_of_peak": round(gflops / peak_gflops, 3)}
        runner.close()
    return rows


PART_STEPS = 64  # runs of a step's part per timed call (step_parts)


def repeated_seconds(function, repeats=5):
    """The median seconds of one run of a compiled function's work, which it does PART_STEPS times a call."""
    function()  # traces
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function().numpy()
        times.append((time.perf_counter() - started) / PART_STEPS)
    return statistics.median(times)


def zero_gradients_update(pairs):
    """A compiled function applying each (optimizer, variables) of `pairs` PART_STEPS times to gradients of
    zeros: the optimizers' updates alone, which read and write every weight and its moments however small
    the batch, and cost the same whatever the gradients."""
    zeros = [[tf.zeros_like(variable) for variable in variables] for _, variables in pairs]

    @tf.function
    def updates_alone():
        for _ in tf.range(PART_STEPS):
            for (optimizer, variables), gradients in zip(pairs, zeros):
                loop.apply_gradients(optimizer, gradients, variables)
        return pairs[0][0].iterations

    return updates_alone


def rounded(values):
    """A step's parts for the JSON report: floats to 3 decimals."""
    return {key: round(value, 3) if isinstance(value, float) else value for key, value in values.items()}


def update_parts(rows, batch_size, peak_gflops, pairs):
    """Ours' step beside its optimizers' updates timed alone (each (optimizer, variables) of `pairs`, on
    gradients of zeros), and the share of the peak the step would reach if its counted matmuls ran at the
    peak and those updates took as long on top of them: the most an engine gets at this batch unless the
    updates overlap the matmuls."""
    parts = {"weights": sum(int(variable.shape.num_elements()) for _, variables in pairs for variable in variables),
             "step_ms": batch_size / rows["ours"]["images_per_sec_median"] * 1e3,
             "update_ms": repeated_seconds(zero_gradients_update(pairs)) * 1e3}
    matmul_seconds = batch_size * rows["ours"]["mflops_per_sample"] * 1e6 / (peak_gflops * 1e9)
    parts["ceiling_fraction_of_peak"] = matmul_seconds / (matmul_seconds + parts["update_ms"] / 1e3)
    return parts


def time_to_quality(runner, metric, threshold, max_epochs):
    """Trains `runner` (a fresh TrainerRunner) until held-out `metric` is at most `threshold`: the epochs and
    the wall-clock seconds it took, everything a run does between its epochs (held-out pass, checkpoint,
    figures) included, and the seconds of training steps alone."""
    history = []
    started = time.perf_counter()
    for _ in range(max_epochs):
        runner.run_epoch()
        history = run_files.read_history(runner.run_dir)
        if history[-1][metric] <= threshold:
            break
    wall_seconds = time.perf_counter() - started
    runner.close()
    last = history[-1]
    return {"metric": metric, "threshold": threshold, "reached": last[metric] <= threshold,
            "epochs": last["epoch"], "value": round(last[metric], 4), "wall_seconds": round(wall_seconds, 1),
            "training_seconds": last["wall_seconds"]}


def print_rows(title, rows, unit, peak_gflops):
    print(title)
    print(f"  {'':60s} {unit + '/s':>10s} {'MFLOP/sample':>12s} {'GFLOP/s':>8s} {'of peak':>8s}")
    for row in rows.values():
        print(f"  {row['label']:60s} {row[f'{unit}_per_sec_median']:10.0f} {row['mflops_per_sample']:12.3f} "
              f"{row['gflops_per_sec']:8.1f} {row['fraction_of_peak']:8.1%}")
    ratio = rows["ours"][f"{unit}_per_sec_median"] / rows["keras_io_fit"][f"{unit}_per_sec_median"]
    print(f"  ours / keras-io fit: {ratio:.2f}x   (matmul peak {peak_gflops:.0f} GFLOP/s)")
    return round(ratio, 3)


def image_dataset(images, to_model_range, batch_size):
    """The keras-io examples' input: cached images, shuffled, full batches."""
    return (tf.data.Dataset.from_tensor_slices(images).map(to_model_range).cache()
            .shuffle(len(images), seed=0).batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def run_alone(name, measure, out, **measure_args):
    """One model's benchmark on its own (python -m bench.<model>_step): the matmul peak, then
    measure(peak, **measure_args); written as JSON to `out` when given."""
    peak = flops.matmul_peak()
    result = {"matmul_peak_gflops": peak, **distribute.describe_machine(), name: measure(peak["peak"], **measure_args)}
    if out:
        run_files.write_atomic(out, json.dumps(result, indent=2) + "\n")
    return result


def step_parser(model, doc, epochs):
    """The command line of `python -m bench.<model>_step`: --epochs and --out; each adds its own."""
    parser = commands.Parser(prog=f"python -m bench.{model}_step", description=" ".join(doc.split("\n\n")[0].split()))
    parser.add_argument("--epochs", type=int, default=epochs,
                        help=f"measured epochs per runner, after a warm-up (default: {epochs})")
    parser.add_argument("--out", help="also write the results as JSON here")
    return parser


def text_step_parser(model, doc, steps_per_epoch):
    """The command line of `python -m bench.<text model>_step`: --epochs, --steps-per-epoch, --length
    (characters to generate), --out."""
    parser = step_parser(model, doc, epochs=3)
    parser.add_argument("--steps-per-epoch", type=int, default=steps_per_epoch,
                        help="training steps per measured epoch")
    parser.add_argument("--length", type=int, default=500, help="characters to generate")
    return parser


def text_step_main(model, doc, measure, argv, steps_per_epoch):
    """`python -m bench.<text model>_step`: parses its flags, measures, writes --out."""
    parser = text_step_parser(model, doc, steps_per_epoch)
    args = parse_step_args(parser, argv, at_least_one=("epochs", "steps_per_epoch", "length"))
    return run_alone(model, measure, args.out, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                     length=args.length)


def parse_step_args(parser, argv, at_least_one=("epochs",)):
    """Parsed flags, or one `error:` line and exit status 2, before anything is measured."""
    args = parser.parse_or_exit(argv)
    for name in at_least_one:
        if getattr(args, name) < 1:
            commands.fail(f"--{name.replace('_', '-')} must be 1 or more, got {getattr(args, name)}")
    if args.out:
        try:
            run_files.prepare_output_file(args.out)
        except run_files.RunDirError as exc:
            commands.fail(f"--out {args.out} {exc}")
    return args
