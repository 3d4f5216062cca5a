"""Steady-state GAN training throughput: this project's distributed step against the keras-io way.

    python -m bench.gan_step [--arch mlp] [--batch-size 64] [--epochs 8] [--out FILE]

Both sides train the same two models on the same data, batch size and optimizers, in one process:
  ours:     training.loop.Trainer (the exact code train.py runs: tf.function via strategy.run, 8 steps
            per call, keyed noise made in the tf.data pipeline, a host read of the means every call)
  keras-io: a keras.Model overriding train_step, trained with fit() (the keras-io DCGAN example's step,
            https://keras.io/examples/generative/dcgan_overriding_train_step/)
Throughput is images per second within an epoch, counted from the end of its first step; epochs of the
runners alternate, and the median and the best epoch are both reported (this shared CPU has slow spells).
"""

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from datasets import mnist  # noqa: E402
from models import gan as gan_models  # noqa: E402
from training import distribute, loop  # noqa: E402
from training import run_dir as run_files  # noqa: E402
from training.gan import GanTask, to_model_range  # noqa: E402


class KerasIoGan(keras.Model):
    """The keras-io example's GAN: train_step overridden, D on real+fake concatenated, then G."""

    def __init__(self, discriminator, generator, noise_dim):
        super().__init__()
        self.discriminator = discriminator
        self.generator = generator
        self.noise_dim = noise_dim
        self.seed_generator = keras.random.SeedGenerator(1337)

    def compile(self, d_optimizer, g_optimizer, loss_fn):
        super().compile()
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.loss_fn = loss_fn
        self.d_loss_metric = keras.metrics.Mean(name="d_loss")
        self.g_loss_metric = keras.metrics.Mean(name="g_loss")

    @property
    def metrics(self):
        return [self.d_loss_metric, self.g_loss_metric]

    def train_step(self, real_images):
        batch_size = tf.shape(real_images)[0]
        noise = keras.random.normal((batch_size, self.noise_dim), seed=self.seed_generator)
        generated = self.generator(noise)
        combined = tf.concat([generated, real_images], axis=0)
        labels = tf.concat([tf.ones((batch_size, 1)), tf.zeros((batch_size, 1))], axis=0)
        labels += 0.05 * keras.random.uniform(tf.shape(labels), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            d_loss = self.loss_fn(labels, self.discriminator(combined))
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))
        noise = keras.random.normal((batch_size, self.noise_dim), seed=self.seed_generator)
        misleading_labels = tf.zeros((batch_size, 1))
        with tf.GradientTape() as tape:
            g_loss = self.loss_fn(misleading_labels, self.discriminator(self.generator(noise)))
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
        self.d_loss_metric.update_state(d_loss)
        self.g_loss_metric.update_state(g_loss)
        return {"d_loss": self.d_loss_metric.result(), "g_loss": self.g_loss_metric.result()}


class EpochTimer(keras.callbacks.Callback):
    """Images/s of each epoch, counted from the end of its first batch (as the Trainer counts)."""

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


class OursRunner:
    """train.py's own Trainer, one epoch per call; returns that epoch's steady-state images/s."""

    def __init__(self, settings, data, jit=False, steps_per_execution=1):
        strategy = tf.distribute.get_strategy()
        self.run_dir = tempfile.mkdtemp(prefix="bench-gan-")
        run_files.prepare(self.run_dir, overwrite=False)
        self.trainer = loop.Trainer(GanTask(settings, data, strategy), strategy, self.run_dir,
                                    keep_checkpoints=1, jit=jit, verbose=False, chief=True,
                                    steps_per_execution=steps_per_execution)
        self.epochs = 0

    def run_epoch(self):
        self.epochs += 1
        return self.trainer.fit(self.epochs)[-1]["samples_per_sec"]

    def close(self):
        shutil.rmtree(self.run_dir, ignore_errors=True)


class KerasIoRunner:
    """The keras-io GAN trained with fit(), one epoch per call; returns that epoch's images/s."""

    def __init__(self, settings, data):
        generator, discriminator = gan_models.build_pair(settings["arch"], settings["noise_dim"])
        self.model = KerasIoGan(discriminator, generator, settings["noise_dim"])
        adam = lambda: keras.optimizers.Adam(settings["learning_rate"], beta_1=settings["beta_1"])  # noqa: E731
        self.model.compile(d_optimizer=adam(), g_optimizer=adam(),
                           loss_fn=keras.losses.BinaryCrossentropy(from_logits=True))
        self.dataset = (tf.data.Dataset.from_tensor_slices(data.train_images).map(to_model_range).cache()
                        .shuffle(len(data.train_images), seed=0)
                        .batch(settings["batch_size"], drop_remainder=True).prefetch(tf.data.AUTOTUNE))
        self.timer = EpochTimer(settings["batch_size"])

    def run_epoch(self):
        self.model.fit(self.dataset, epochs=1, verbose=0, callbacks=[self.timer])
        return self.timer.rates[-1]

    def close(self):
        pass


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.gan_step", description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=("mlp", "dcgan"), default="mlp")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=8, help="measured epochs per runner (after one warm-up epoch)")
    parser.add_argument("--steps-per-execution", type=int, default=8,
                        help="steps per compiled call for ours (train.py's default)")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    distribute.make_deterministic(0)
    data = mnist.load("mnist-5k")
    settings = {"seed": 0, "noise_dim": 100, "batch_size": args.batch_size, "arch": args.arch,
                "learning_rate": 2e-4, "beta_1": 0.5}
    # Like for like: the tutorial's recipe on both sides (no R1, no EMA). train.py's defaults add the
    # R1 penalty (a second backward pass through D) and the EMA; their cost is measured for information.
    spe = args.steps_per_execution
    runners = {"ours": OursRunner(settings, data, steps_per_execution=spe),
               "keras_io_fit": KerasIoRunner(settings, data),
               "ours_one_step_per_call": OursRunner(settings, data, steps_per_execution=1),
               "ours_with_r1_and_ema": OursRunner({**settings, "r1_gamma": 10.0, "ema": 0.999}, data,
                                                  steps_per_execution=spe),
               "ours_jit": OursRunner(settings, data, jit=True, steps_per_execution=spe)}
    # Epochs alternate between the runners, so a slow spell of this shared machine hits all of them;
    # each runner's first epoch pays for tracing and is not counted.
    rates = {name: [] for name in runners}
    for epoch in range(args.epochs + 1):
        for name, runner in runners.items():
            rate = runner.run_epoch()
            if epoch:
                rates[name].append(rate)
    for runner in runners.values():
        runner.close()
    result = {"arch": args.arch, "batch_size": args.batch_size, "data": data.source, "epochs": args.epochs,
              "tensorflow": tf.__version__, "keras": keras.__version__, "cpus": os.cpu_count()}
    for name, values in rates.items():
        result[f"{name}_images_per_sec_median"] = round(statistics.median(values), 1)
        result[f"{name}_images_per_sec_best"] = round(max(values), 1)
    for kind in ("median", "best"):
        result[f"ratio_{kind}"] = round(result[f"ours_images_per_sec_{kind}"]
                                        / result[f"keras_io_fit_images_per_sec_{kind}"], 3)
    print(f"GAN ({args.arch}), batch {args.batch_size}, {data.source}, {args.epochs} epochs each, interleaved:")
    print(f"  {'images/s':36s} {'median':>8s} {'best':>8s}")
    labels = {"ours": f"ours (Trainer, {spe} steps per call)", "keras_io_fit": "keras-io (train_step + fit)",
              "ours_one_step_per_call": "ours, 1 step per call",
              "ours_with_r1_and_ema": "ours with R1 + EMA (the defaults)",
              "ours_jit": "ours with --jit (XLA)"}
    for name, label in labels.items():
        median, best = result[name + "_images_per_sec_median"], result[name + "_images_per_sec_best"]
        print(f"  {label:36s} {median:8.0f} {best:8.0f}")
    print(f"  {'ratio ours / keras-io':36s} {result['ratio_median']:8.2f} {result['ratio_best']:8.2f}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
