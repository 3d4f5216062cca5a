"""What every benchmark shares: runners that train one epoch per call, interleaved, and their summary.

Throughput is samples per second within an epoch, counted from the end of its first step; epochs of the
runners alternate, and the median and the best epoch are both reported (this shared CPU has slow spells).
"""

import json
import os
import shutil
import statistics
import tempfile
import time

import keras
import tensorflow as tf

from training import loop
from training import run_dir as run_files


class EpochTimer(keras.callbacks.Callback):
    """Samples/s of each fit() epoch, counted from the end of its first batch (as the Trainer counts)."""

    def __init__(self, batch_size):
        super().__init__()
        self.batch_size = batch_size
        self.rates = []

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if batch == 0:
            self.first_batch_end = now
        self.last_batch, self.last_end = batch, now

    def on_epoch_end(self, epoch, logs=None):
        self.rates.append(self.last_batch * self.batch_size / (self.last_end - self.first_batch_end))


class TrainerRunner:
    """train.py's own Trainer on a task, one epoch per call; returns that epoch's steady-state samples/s."""

    def __init__(self, make_task, jit=False, steps_per_execution=1):
        strategy = tf.distribute.get_strategy()
        self.run_dir = tempfile.mkdtemp(prefix="bench-")
        run_files.prepare(self.run_dir, overwrite=False)
        self.trainer = loop.Trainer(make_task(strategy), strategy, self.run_dir, keep_checkpoints=1, jit=jit,
                                    verbose=False, chief=True, steps_per_execution=steps_per_execution)
        self.epochs = 0

    def run_epoch(self):
        self.epochs += 1
        return self.trainer.fit(self.epochs)[-1]["samples_per_sec"]

    def close(self):
        shutil.rmtree(self.run_dir, ignore_errors=True)


class FitRunner:
    """A keras.Model with its own train_step, trained with fit(), one epoch per call."""

    def __init__(self, model, dataset, batch_size):
        self.model, self.dataset = model, dataset
        self.timer = EpochTimer(batch_size)

    def run_epoch(self):
        self.model.fit(self.dataset, epochs=1, verbose=0, callbacks=[self.timer])
        return self.timer.rates[-1]

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
    for runner in runners.values():
        runner.close()
    return rates


def summarize(title, rates, labels, unit, result):
    """Adds each runner's median and best to `result`, the ours / keras-io ratios, and prints a table."""
    for name, values in rates.items():
        result[f"{name}_{unit}_per_sec_median"] = round(statistics.median(values), 1)
        result[f"{name}_{unit}_per_sec_best"] = round(max(values), 1)
    for kind in ("median", "best"):
        result[f"ratio_{kind}"] = round(result[f"ours_{unit}_per_sec_{kind}"]
                                        / result[f"keras_io_fit_{unit}_per_sec_{kind}"], 3)
    print(title)
    print(f"  {unit + '/s':40s} {'median':>8s} {'best':>8s}")
    for name, label in labels.items():
        median, best = result[f"{name}_{unit}_per_sec_median"], result[f"{name}_{unit}_per_sec_best"]
        print(f"  {label:40s} {median:8.0f} {best:8.0f}")
    print(f"  {'ratio ours / keras-io':40s} {result['ratio_median']:8.2f} {result['ratio_best']:8.2f}")
    return result


def image_dataset(images, to_model_range, batch_size):
    """The keras-io examples' input: cached images, shuffled, full batches."""
    return (tf.data.Dataset.from_tensor_slices(images).map(to_model_range).cache()
            .shuffle(len(images), seed=0).batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def environment():
    """What the numbers were measured with."""
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "cpus": os.cpu_count()}


def write_result(result, path):
    """Writes the benchmark's result as JSON when a path was given; returns the result."""
    if path:
        with open(path, "w") as handle:
            json.dump(result, handle, indent=2)
    return result
