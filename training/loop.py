"""The distributed training loop every model shares.

A task (training/task.py: Task; training/gan.py, ...) owns its models, optimizers, input pipeline and
per-replica train step; this loop owns everything else:

    for each epoch:                                 history.csv -> checkpoint -> figures
        for (global_step, batch) in the task's pipeline, split over replicas:
            per-replica step (task.train_step) --strategy.run--> reduce(SUM) --> global means
            SIGINT / SIGTERM: checkpoint here (mid-epoch), then stop

A checkpoint holds the models, optimizers, the epoch and the step reached in it, and the epoch's
running metric means, so a run resumed from any step boundary ends exactly as an uninterrupted one.
"""

import contextlib
import glob
import hashlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

import keras
import numpy as np
import tensorflow as tf

from training import commands
from training import run_dir as run_files


class NonFiniteLoss(Exception):
    """A loss became NaN or infinite; the run stopped at its last good checkpoint."""


class CheckpointError(Exception):
    """No checkpoint of the run can be restored."""


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped training at a step boundary, after a checkpoint was written there."""

    def __init__(self, message, signal_number):
        super().__init__(message)
        self.exit_status = 128 + signal_number  # the shell's convention for "ended by this signal"


class StopRequests:
    """While active, SIGINT (Ctrl-C) and SIGTERM (a cluster's preemption notice) ask training to stop at
    the next step boundary, where it can checkpoint, instead of killing it mid-step.

    A second signal ends the process at once, as the signal would have; the last checkpoint stays.
    Handlers can only be installed from the main thread; elsewhere signals keep their default.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal_number = None
        self._previous = {}

    def _request_stop(self, signal_number, frame):
        if self.signal_number is not None:
            print(f"\n{signal.Signals(signal_number).name} again: stopping now, without a checkpoint",
                  file=sys.stderr, flush=True)
            signal.signal(signal_number, signal.SIG_DFL)
            os.kill(os.getpid(), signal_number)
            return
        self.signal_number = signal_number
        print(f"\n{signal.Signals(signal_number).name}: stopping at the next step boundary, after a checkpoint "
              "(send it again to stop at once)", file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._request_stop)
        return self

    def __exit__(self, *exc_info):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        return False


def make_stop_agreement(strategy):
    """A function telling every worker of a multi-worker job whether any of them was asked to stop.

    A preemption notice may reach one worker only; all must save the same step's checkpoint together
    (saving is a collective), so each call sums the workers' requests with an all-reduce.
    (tf.distribute.experimental.PreemptionCheckpointHandler does this for SIGTERM under
    MultiWorkerMirroredStrategy only; this one serves SIGINT too, and every strategy, the same way.)
    """

    def replica_sum(requested):
        # The value is made on the replica's own device (an all-reduce of the bare input has no device).
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(requested))

    @tf.function
    def any_worker_stopping(requested):
        summed = strategy.run(replica_sum, args=(requested,))
        return strategy.experimental_local_results(summed)[0] > 0

    return lambda requested: bool(any_worker_stopping(tf.constant(1.0 if requested else 0.0)))


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
    under loss scaling it is measured on the unscaled values. The gradients are summed here, then again by
    the optimizer: the fallback for a Keras whose optimizer cannot clip them itself, once summed
    (optimizers.ClipSummedGradients).
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
    # A step is TensorFlow and Keras ops with no Python control flow on tensors, so AutoGraph need not rewrite
    # it and all it calls when the loop below is traced: 3.5 s of the tiny Transformer's 17 s command.
    replica_step = tf.autograph.experimental.do_not_convert(replica_step)

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
    replicas and batches whatever the split, so the means are those of one device. {} for a task with
    no held-out split.
    """
    replica_step = tf.autograph.experimental.do_not_convert(task.held_out_step)  # as make_multi_step's

    @tf.function
    def batch_sums(inputs):
        per_replica = strategy.run(replica_step, args=(inputs,))
        return {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                for name, value in per_replica.items()}

    def held_out_means():
        dataset = task.held_out_dataset()
        if dataset is None:
            return {}
        totals = {}
        for inputs in strategy.experimental_distribute_dataset(dataset):
            for name, value in batch_sums(inputs).items():
                totals[name] = totals.get(name, 0.0) + float(value)
        count = totals.pop("count")
        return {f"test_{name}": total / count for name, total in totals.items()}

    return held_out_means


def make_trackers(task, strategy):
    """A keras.metrics.Mean per metric the task's step returns."""
    with strategy.scope():
        return {name: keras.metrics.Mean(name=name) for name in task.metric_names}


def checkpoint_prefixes(checkpoint_dir):
    """The checkpoints in `checkpoint_dir`, newest first, found from their files: the manager's state
    file names the latest one, which may be the damaged one, or may lag a checkpoint written after it."""
    numbers = []
    for index_file in glob.glob(os.path.join(checkpoint_dir, "ckpt-*.index")):
        number = os.path.basename(index_file)[len("ckpt-"):-len(".index")]
        if number.isdigit():
            numbers.append(int(number))
    return [os.path.join(checkpoint_dir, f"ckpt-{number}") for number in sorted(numbers, reverse=True)]


def duration(seconds):
    """Seconds as a short duration: `42 s`, `8 min 05 s`, `1 h 12 min`."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def run_progress_line(history, epochs):
    """After an epoch, the whole run's time so far and left, the latter at the mean epoch so far, e.g.
    `run: epoch 3/120, 13 s so far, about 8 min 30 s left (4.4 s an epoch)`."""
    done = history[-1]["epoch"]
    mean = sum(row["epoch_seconds"] for row in history) / len(history)
    left = f"about {duration(mean * (epochs - done))} left" if done < epochs else "done"
    return (f"run: epoch {done}/{epochs}, {duration(history[-1]['wall_seconds'])} so far, {left} "
            f"({mean:.1f} s an epoch)")


class Trainer:
    """Runs epochs of a task under a strategy, writing checkpoints, history, logs and figures."""

    def __init__(self, task, strategy, run_dir, *, keep_checkpoints, jit, verbose, chief, steps_per_execution=1):
        self.task = task
        self.strategy = strategy
        self.run_dir = run_dir
        self.verbose = verbose
        self.chief = chief
        # Where training stands: epochs completed, steps of the next epoch already done and the seconds
        # they took (both 0 at an epoch boundary), and the running means of that epoch's metrics.
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        self.seconds_in_epoch = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="seconds_in_epoch")
        self.trackers = make_trackers(task, strategy)
        self.checkpoint = tf.train.Checkpoint(
            epoch=self.epoch, step_in_epoch=self.step_in_epoch, seconds_in_epoch=self.seconds_in_epoch,
            metrics={name: tracker.variables for name, tracker in self.trackers.items()},
            **task.checkpoint_items())
        # Only the chief writes the run; other workers of a multi-worker job must still take part in
        # the save (it is a collective), so they save to a temporary directory they delete. All of
        # them restore from the run's own checkpoints (on a file system they share).
        self.run_checkpoints = os.path.join(run_dir, run_files.CHECKPOINTS)
        checkpoint_dir = self.run_checkpoints if chief else tempfile.mkdtemp()
        self.manager = tf.train.CheckpointManager(self.checkpoint, checkpoint_dir, max_to_keep=keep_checkpoints)
        self.run_steps = make_multi_step(task, strategy, jit, self.trackers)
        # Tasks with a held-out split (VAE, text) are measured on it after every epoch: test_* columns.
        self.held_out_means = make_held_out_pass(task, strategy)
        self.steps_per_execution = steps_per_execution
        multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        self.stop_agreed = make_stop_agreement(strategy) if multi_worker else (lambda requested: requested)
        self.writer = None  # TensorBoard's writer, opened by fit(): nothing is written before training starts

    def weights_fingerprint(self):
        """SHA-256 of every model weight's bytes, in a fixed order: equal on every worker of a synchronous job."""
        digest = hashlib.sha256()
        for item in self.task.checkpoint_items().values():
            if isinstance(item, keras.Model):
                for weight in item.weights:
                    digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
        return digest.hexdigest()

    def restore(self):
        """Restores the newest checkpoint that reads back whole; returns (epochs completed, steps into the next).

        A damaged newest checkpoint (a truncated or corrupted file: each tensor's checksum is verified
        as it is read) is reported and the one before it used. Raises CheckpointError if none restores.
        """
        prefixes = checkpoint_prefixes(self.run_checkpoints)
        if not prefixes:
            raise CheckpointError(f"{self.run_checkpoints} holds no checkpoint")
        failures = []
        for attempt, prefix in enumerate(prefixes):
            try:
                status = self.checkpoint.restore(prefix)
                status.expect_partial()  # a mismatch is reported by the assertion below, not by TF's log at exit
                status.assert_existing_objects_matched()
            except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways (OpError, IndexError, ...)
                reason = commands.one_line(exc)
                # The failed attempt leaves TensorFlow holding checkpoint values it would warn about when
                # the process exits, after our own message; that message already says what happened.
                tf.get_logger().setLevel("ERROR")
                failures.append(f"{os.path.basename(prefix)}: {reason}")
                if attempt + 1 < len(prefixes):
                    print(f"warning: checkpoint {prefix} cannot be restored ({reason}); trying the one before it",
                          file=sys.stderr, flush=True)
                continue
            return int(self.epoch.numpy()), int(self.step_in_epoch.numpy())
        raise CheckpointError(f"no checkpoint in {self.run_checkpoints} can be restored ({failures[0]}); "
                              "start the run again with --overwrite")

    def fit(self, epochs):
        """Trains until `epochs` are complete; returns the history rows.

        Raises Interrupted, after checkpointing, when SIGINT or SIGTERM arrives (on any worker).
        """
        history = run_files.read_history(self.run_dir)[: int(self.epoch.numpy())]
        wall_seconds = history[-1]["wall_seconds"] if history else 0.0
        if self.chief and self.writer is None:
            self.writer = tf.summary.create_file_writer(os.path.join(self.run_dir, run_files.LOGS))
        with StopRequests() as stop, self._temporary_checkpoints_removed():
            for epoch in range(int(self.epoch.numpy()), epochs):
                means, epoch_seconds = self._run_epoch(epoch, epochs, stop)
                held_out = self.held_out_means()
                means.update(held_out)
                if held_out and self.verbose:
                    print("  held out: " + ", ".join(f"{name} {value:.4f}" for name, value in held_out.items()))
                wall_seconds += epoch_seconds
                row = {"epoch": epoch + 1, **means, "epoch_seconds": round(epoch_seconds, 3),
                       "wall_seconds": round(wall_seconds, 3)}
                history.append(row)
                if self.verbose:
                    print(run_progress_line(history, epochs), flush=True)
                # History first, then the checkpoint: a process killed between the two leaves one row
                # too many, which a resume drops (it keeps the rows up to the checkpoint's epoch).
                if self.chief:
                    run_files.write_history(self.run_dir, history)
                self.epoch.assign(epoch + 1)
                self.step_in_epoch.assign(0)
                self.seconds_in_epoch.assign(0.0)
                self._save()
                if self.chief:
                    with self.writer.as_default(step=epoch + 1):
                        for name, value in row.items():
                            if name != "epoch":
                                tf.summary.scalar(name, value)
                        self.task.end_epoch(epoch + 1, history, self.run_dir)
                    self.writer.flush()
                if epoch + 1 < epochs and self.stop_agreed(stop.signal_number is not None):
                    self._interrupted(stop, f"after epoch {epoch + 1}")
        return history

    @contextlib.contextmanager
    def _temporary_checkpoints_removed(self):
        """A worker other than the chief deletes its temporary checkpoint directory however fit() ends."""
        try:
            yield
        finally:
            if not self.chief:
                shutil.rmtree(self.manager.directory, ignore_errors=True)

    def _save(self):
        """Writes a checkpoint numbered by the global step; a non-chief worker deletes its copy."""
        global_step = int(self.epoch.numpy()) * self.task.steps_per_epoch + int(self.step_in_epoch.numpy())
        saved = self.manager.save(checkpoint_number=global_step)
        if not self.chief and saved:
            shutil.rmtree(os.path.dirname(saved), ignore_errors=True)

    def _interrupted(self, stop, where):
        """Raises Interrupted, saying where training stopped and how to continue."""
        cause = (signal.Signals(stop.signal_number).name if stop.signal_number is not None
                 else "another worker's stop request")
        raise Interrupted(f"{cause}: training stopped {where} and was checkpointed in {self.run_checkpoints}; "
                          f"continue it with: python train.py {self.task.name} --resume --run-dir {self.run_dir}",
                          stop.signal_number or signal.SIGTERM)

    def _run_epoch(self, epoch, epochs, stop):
        """Runs the rest of one epoch; returns (the metrics' epoch means plus samples_per_sec, seconds it took)."""
        steps = self.task.steps_per_epoch
        # Samples per global step: images for the GAN and VAE, characters for the text models.
        batch_size = self.task.samples_per_step
        done = int(self.step_in_epoch.numpy())  # > 0 when resuming a run interrupted inside this epoch
        dataset = self.task.train_dataset(epoch)
        if done:
            # The pipeline is keyed by (seed, epoch) and (seed, step): skipping the batches already
            # trained on leaves exactly the batches, and noise, the uninterrupted run went on to.
            dataset = dataset.skip(done)
        else:
            for tracker in self.trackers.values():
                tracker.reset_state()
        dataset = self.strategy.experimental_distribute_dataset(dataset)
        labels = self.task.metric_labels
        if self.verbose:
            print(f"Epoch {epoch + 1}/{epochs}" + (f" (resumed at step {done})" if done else ""), flush=True)
        progbar = keras.utils.Progbar(steps, verbose=1 if self.verbose else 0,
                                      stateful_metrics=[labels.get(n, n) for n in self.trackers] + ["samples/s"])
        seconds_before = float(self.seconds_in_epoch.numpy())
        epoch_started = steady_started = time.perf_counter()
        iterator = iter(dataset)
        steady_from = None
        while done < steps:
            if self.stop_agreed(stop.signal_number is not None):
                self.step_in_epoch.assign(done)
                self.seconds_in_epoch.assign(seconds_before + time.perf_counter() - epoch_started)
                self._save()
                self._interrupted(stop, f"in epoch {epoch + 1} after step {done} of {steps}")
            count = min(self.steps_per_execution, steps - done)
            # The epoch's running means; once a step's value is NaN or infinite, so is its mean.
            means = {name: float(value) for name, value in self.run_steps(iterator, tf.constant(count)).items()}
            done += count
            for name, value in means.items():
                if not np.isfinite(value):
                    kept = (f"the last good checkpoint is kept in {self.manager.directory}"
                            if self.manager.latest_checkpoint else "no checkpoint had been written")
                    raise NonFiniteLoss(f"{name} became {value} at epoch {epoch + 1}, by step {done}; "
                                        f"training stopped and {kept}. Try a lower --learning-rate")
            now = time.perf_counter()
            if steady_from is None:
                # The first call of an epoch pays for tracing (epoch 1) and the iterator's start;
                # steady-state throughput is counted from the end of it.
                steady_started, steady_from = now, done
            rate = (done - steady_from) * batch_size / (now - steady_started) if done > steady_from else 0.0
            progbar.update(done, [(labels.get(n, n), v) for n, v in means.items()] + [("samples/s", rate)])
        ended = time.perf_counter()
        # With a single call there is no steady state to count; report it, start-up and all.
        counted_steps, counted_seconds = ((done - steady_from, ended - steady_started) if done > steady_from
                                          else (count, ended - epoch_started))
        means["samples_per_sec"] = round(counted_steps * batch_size / counted_seconds, 1)
        return means, seconds_before + ended - epoch_started
