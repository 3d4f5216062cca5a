"""Steady-state GAN training throughput: this project's distributed step against the keras-io way.

    python -m bench.gan_step [--arch mlp] [--batch-size 64] [--epochs 4] [--rounds 2]

Both sides train the same two models on the same data, batch size and optimizers, in one process:
  ours:     training.loop.Trainer (the exact code train.py runs: tf.function step via strategy.run,
            keyed noise made in the tf.data pipeline, a progress-bar sync every step)
  keras-io: a keras.Model overriding train_step, trained with fit() (the keras-io DCGAN example's step,
            https://keras.io/examples/generative/dcgan_overriding_train_step/)
Throughput is images per second after the first epoch (which pays for tracing), median over epochs.
"""

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from datasets import mnist  # noqa: E402
from models import gan as gan_models  # noqa: E402
from training import distribute, loop  # noqa: E402
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


def measure_ours(settings, data, epochs):
    strategy = tf.distribute.get_strategy()
    task = GanTask(settings, data, strategy)
    with tempfile.TemporaryDirectory() as run_dir:
        for sub in ("checkpoints", "logs", "figures"):
            os.makedirs(os.path.join(run_dir, sub))
        trainer = loop.Trainer(task, strategy, run_dir, keep_checkpoints=1, jit=False, verbose=False, chief=True)
        history = trainer.fit(epochs)
    return [row["samples_per_sec"] for row in history[1:]]


def measure_keras_io(settings, data, epochs):
    generator, discriminator = gan_models.build_pair(settings["arch"], settings["noise_dim"])
    model = KerasIoGan(discriminator, generator, settings["noise_dim"])
    model.compile(d_optimizer=keras.optimizers.Adam(settings["learning_rate"], beta_1=settings["beta_1"]),
                  g_optimizer=keras.optimizers.Adam(settings["learning_rate"], beta_1=settings["beta_1"]),
                  loss_fn=keras.losses.BinaryCrossentropy(from_logits=True))
    dataset = (tf.data.Dataset.from_tensor_slices(data.train_images).map(to_model_range).cache()
               .shuffle(len(data.train_images), seed=0).batch(settings["batch_size"], drop_remainder=True)
               .prefetch(tf.data.AUTOTUNE))
    timer = EpochTimer(settings["batch_size"])
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[timer])
    return timer.rates[1:]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.gan_step", description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=("mlp", "dcgan"), default="mlp")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per measurement (the first is not counted)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of both measurements")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    distribute.make_deterministic(0)
    data = mnist.load("mnist-5k")
    settings = {"seed": 0, "noise_dim": 100, "batch_size": args.batch_size, "arch": args.arch,
                "learning_rate": 2e-4, "beta_1": 0.5}
    # The comparison is like for like: the tutorial's recipe on both sides (no R1, no EMA).
    # train.py's defaults add the R1 penalty (a second backward pass through D) and the EMA;
    # their cost is measured too, for information.
    with_remedies = {**settings, "r1_gamma": 10.0, "ema": 0.999}
    ours, theirs, ours_defaults = [], [], []
    for _ in range(args.rounds):
        ours += measure_ours(settings, data, args.epochs)
        theirs += measure_keras_io(settings, data, args.epochs)
        ours_defaults += measure_ours(with_remedies, data, args.epochs)
    result = {"arch": args.arch, "batch_size": args.batch_size, "data": data.source,
              "ours_images_per_sec": round(statistics.median(ours), 1),
              "keras_io_fit_images_per_sec": round(statistics.median(theirs), 1),
              "ours_with_r1_and_ema_images_per_sec": round(statistics.median(ours_defaults), 1),
              "tensorflow": tf.__version__, "keras": keras.__version__, "cpus": os.cpu_count()}
    result["ratio"] = round(result["ours_images_per_sec"] / result["keras_io_fit_images_per_sec"], 3)
    print(f"GAN ({args.arch}), batch {args.batch_size}, {data.source}, median of {len(ours)} epochs each:")
    print(f"  ours (Trainer, strategy.run)      {result['ours_images_per_sec']:8.0f} images/s")
    print(f"  keras-io (train_step + fit)       {result['keras_io_fit_images_per_sec']:8.0f} images/s")
    print(f"  ratio ours / keras-io             {result['ratio']:8.2f}")
    print(f"  ours with R1 + EMA (the defaults) {result['ours_with_r1_and_ema_images_per_sec']:8.0f} images/s")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
