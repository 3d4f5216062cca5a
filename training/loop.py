"""The distributed training loop every model shares.

A task (training/gan.py, ...) owns its models, optimizers, input pipeline and per-replica
train step; this loop owns everything else:

    for each epoch:                                 checkpoint -> history.csv -> figures
        for (global_step, batch) in the task's pipeline, split over replicas:
            per-replica step (task.train_step) --strategy.run--> reduce(SUM) --> global means
"""

import os
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from training import run_dir as run_files


class NonFiniteLoss(Exception):
    """A loss became NaN or infinite; the run stopped at its last good checkpoint."""


def global_mean(per_example, global_batch_size):
    """This replica's share of the global-batch mean: divided by the global batch, not the replica's,
    so that summing over replicas gives the mean over the whole global batch."""
    return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)


def apply_gradients(optimizer, gradients, variables):
    """optimizer.apply_gradients, with loss-scale overflow decided for all replicas at once.

    Keras 3's LossScaleOptimizer judges "finite" from one replica's gradients before they are
    summed over replicas; an overflow on another replica must make every replica skip the step.
    """
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        overflow = tf.cast(tf.logical_not(optimizer.check_finite(gradients)), tf.float32)
        any_overflow = tf.distribute.get_replica_context().all_reduce("sum", overflow) > 0
        gradients = [tf.where(any_overflow, tf.constant(float("nan"), gradient.dtype), gradient)
                     for gradient in gradients]
    optimizer.apply_gradients(zip(gradients, variables))


def clip_by_global_norm(gradients, clip_norm, optimizer):
    """This replica's gradients scaled so that their sum over replicas has global norm <= clip_norm.

    The norm is that of the summed (global-batch) gradient, so N replicas clip exactly as one would;
    under loss scaling it is measured on the unscaled values.
    """
    replica_context = tf.distribute.get_replica_context()
    total = replica_context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
    loss_scale = optimizer.scale_loss(tf.constant(1.0))
    norm = tf.linalg.global_norm(total) / loss_scale
    factor = clip_norm / tf.maximum(norm, clip_norm)
    return [gradient * tf.cast(factor, gradient.dtype) for gradient in gradients]


def make_multi_step(task, strategy, jit, trackers):
    """A tf.function running `num_steps` global steps from a distributed iterator in one call.

    Each global step runs `task.train_step` on every replica and sums the results over replicas;
    each replica returns values already divided by the global batch size (see
    tf.nn.compute_average_loss), so the sum is the global-batch mean. The step folds them into
    `trackers` (name -> keras.metrics.Mean) inside the graph and the call returns the running means.
    Several steps per call save Python round trips (Keras' steps_per_execution); the steps, their
    order and their results are exactly those of one step per call.
    """
    replica_step = tf.function(task.train_step, jit_compile=True) if jit else task.train_step

    def step(inputs):
        per_replica = strategy.run(replica_step, args=(inputs,))
        for name, value in per_replica.items():
            trackers[name].update_state(strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None))

    @tf.function
    def run_steps(iterator, num_steps):
        for _ in tf.range(num_steps):
            step(next(iterator))
        return {name: tracker.result() for name, tracker in trackers.items()}

    return run_steps


def make_held_out_pass(task, strategy):
    """A function measuring the task's held-out split: {name: mean over its examples}.

    `task.held_out_step` returns per-replica sums over its rows plus their "count"; sums add up over
    replicas and batches whatever the split, so the means are those of one device.
    """
    replica_step = task.held_out_step

    @tf.function
    def batch_sums(inputs):
        per_replica = strategy.run(replica_step, args=(inputs,))
        return {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                for name, value in per_replica.items()}

    def held_out_means():
        totals = {}
        for inputs in strategy.experimental_distribute_dataset(task.held_out_dataset()):
            for name, value in batch_sums(inputs).items():
                totals[name] = totals.get(name, 0.0) + float(value)
        count = totals.pop("count")
        return {f"test_{name}": total / count for name, total in totals.items()}

    return held_out_means


def make_trackers(task, strategy):
    """A keras.metrics.Mean per metric the task's step returns."""
    with strategy.scope():
        return {name: keras.metrics.Mean(name=name) for name in task.metric_names}


def completed_epochs(checkpoint_dir):
    """Epochs completed by the latest checkpoint in `checkpoint_dir`, read without restoring anything."""
    return int(tf.train.load_variable(tf.train.latest_checkpoint(checkpoint_dir), "epoch/.ATTRIBUTES/VARIABLE_VALUE"))


class Trainer:
    """Runs epochs of a task under a strategy, writing checkpoints, history, logs and figures."""

    def __init__(self, task, strategy, run_dir, *, keep_checkpoints, jit, verbose, chief, steps_per_execution=1):
        self.task = task
        self.strategy = strategy
        self.run_dir = run_dir
        self.verbose = verbose
        self.chief = chief
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")  # epochs completed
        self.checkpoint = tf.train.Checkpoint(epoch=self.epoch, **task.checkpoint_items())
        # Only the chief writes the run; other workers of a multi-worker job must still take part in
        # the save (it is a collective), so they save to a temporary directory they delete. All of
        # them restore from the run's own checkpoints (on a file system they share).
        self.run_checkpoints = os.path.join(run_dir, run_files.CHECKPOINTS)
        checkpoint_dir = self.run_checkpoints if chief else tempfile.mkdtemp()
        self.manager = tf.train.CheckpointManager(self.checkpoint, checkpoint_dir, max_to_keep=keep_checkpoints)
        self.trackers = make_trackers(task, strategy)
        self.run_steps = make_multi_step(task, strategy, jit, self.trackers)
        # Tasks with a held-out split (VAE, LSTM) are measured on it after every epoch: test_* columns.
        self.held_out_means = make_held_out_pass(task, strategy) if hasattr(task, "held_out_step") else None
        self.steps_per_execution = steps_per_execution
        self.writer = None  # TensorBoard's writer, opened by fit(): nothing is written before training starts

    def restore(self):
        """Restores the latest checkpoint; returns the number of epochs already completed."""
        path = tf.train.latest_checkpoint(self.run_checkpoints)
        self.checkpoint.restore(path).assert_existing_objects_matched()
        return int(self.epoch.numpy())

    def fit(self, epochs):
        """Trains until `epochs` are complete; returns the history rows."""
        history = run_files.read_history(self.run_dir)[: int(self.epoch.numpy())]
        wall_seconds = history[-1]["wall_seconds"] if history else 0.0
        steps = self.task.steps_per_epoch
        if self.chief and self.writer is None:
            self.writer = tf.summary.create_file_writer(os.path.join(self.run_dir, run_files.LOGS))
        for epoch in range(int(self.epoch.numpy()), epochs):
            started = time.perf_counter()
            means = self._run_epoch(epoch, epochs, steps)
            if self.held_out_means is not None:
                means.update(self.held_out_means())
                if self.verbose:
                    print("  held out: " + ", ".join(f"{name} {value:.4f}" for name, value in means.items()
                                                     if name.startswith("test_")))
            epoch_seconds = time.perf_counter() - started
            wall_seconds += epoch_seconds
            row = {"epoch": epoch + 1, **means, "epoch_seconds": round(epoch_seconds, 3),
                   "wall_seconds": round(wall_seconds, 3)}
            history.append(row)
            # History first, then the checkpoint: a process killed between the two leaves one row
            # too many, which a resume drops (it keeps the rows up to the checkpoint's epoch).
            if self.chief:
                run_files.write_history(self.run_dir, history)
            self.epoch.assign(epoch + 1)
            saved = self.manager.save(checkpoint_number=epoch + 1)
            if self.chief:
                with self.writer.as_default(step=epoch + 1):
                    for name, value in row.items():
                        if name != "epoch":
                            tf.summary.scalar(name, value)
                    self.task.end_epoch(epoch + 1, history, self.run_dir)
                self.writer.flush()
            elif saved:
                shutil.rmtree(os.path.dirname(saved), ignore_errors=True)
        return history

    def _run_epoch(self, epoch, epochs, steps):
        # Samples per global step: images for the GAN and VAE, characters for the LSTM.
        batch_size = getattr(self.task, "samples_per_step", self.task.global_batch_size)
        dataset = self.strategy.experimental_distribute_dataset(self.task.train_dataset(epoch))
        for tracker in self.trackers.values():
            tracker.reset_state()
        labels = getattr(self.task, "metric_labels", {})
        if self.verbose:
            print(f"Epoch {epoch + 1}/{epochs}")
        progbar = keras.utils.Progbar(steps, verbose=1 if self.verbose else 0,
                                      stateful_metrics=[labels.get(n, n) for n in self.trackers] + ["samples/s"])
        epoch_started = steady_started = time.perf_counter()
        iterator = iter(dataset)
        done = steady_from = 0
        while done < steps:
            count = min(self.steps_per_execution, steps - done)
            # The epoch's running means; once a step's value is NaN or infinite, so is its mean.
            means = {name: float(value) for name, value in self.run_steps(iterator, tf.constant(count)).items()}
            done += count
            for name, value in means.items():
                if not np.isfinite(value):
                    kept = (f"the last good checkpoint (epoch {epoch}) is kept in {self.manager.directory}"
                            if epoch else "no epoch had completed, so there is no checkpoint")
                    raise NonFiniteLoss(f"{name} became {value} at epoch {epoch + 1}, by step {done}; "
                                        f"training stopped and {kept}. Try a lower --learning-rate")
            now = time.perf_counter()
            if not steady_from:
                # The first call of an epoch pays for tracing (epoch 1) and the iterator's start;
                # steady-state throughput is counted from the end of it.
                steady_started, steady_from = now, done
            rate = (done - steady_from) * batch_size / (now - steady_started) if done > steady_from else 0.0
            progbar.update(done, [(labels.get(n, n), v) for n, v in means.items()] + [("samples/s", rate)])
        ended = time.perf_counter()
        # With a single call there is no steady state to count; report it, start-up and all.
        counted_steps, counted_seconds = ((done - steady_from, ended - steady_started) if done > steady_from
                                          else (done, ended - epoch_started))
        means["samples_per_sec"] = round(counted_steps * batch_size / counted_seconds, 1)
        return means
