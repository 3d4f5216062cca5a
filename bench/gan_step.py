"""Steady-state GAN training throughput: this project's distributed step against the keras-io way.

    python -m bench.gan_step [--arch mlp] [--batch-size 64] [--epochs 8] [--out FILE]

Both sides train the same two models on the same data, batch size and optimizers, in one process:
  ours:     training.loop.Trainer (the exact code train.py runs: tf.function via strategy.run, 8 steps
            per call, keyed noise made in the tf.data pipeline, a host read of the means every call)
  keras-io: a keras.Model overriding train_step, trained with fit() (the keras-io DCGAN example's step,
            https://keras.io/examples/generative/dcgan_overriding_train_step/)
Throughput is counted as bench/common.py says; epochs of the runners alternate.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import (FitRunner, TrainerRunner, environment, image_dataset, interleave,  # noqa: E402
                          summarize, write_result)
from datasets import mnist  # noqa: E402
from models import gan as gan_models  # noqa: E402
from training import distribute  # noqa: E402
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


def keras_io_runner(settings, data):
    """The keras-io GAN (same models and optimizers) trained with fit()."""
    generator, discriminator = gan_models.build_pair(settings["arch"], settings["noise_dim"])
    model = KerasIoGan(discriminator, generator, settings["noise_dim"])
    adam = lambda: keras.optimizers.Adam(settings["learning_rate"], beta_1=settings["beta_1"])  # noqa: E731
    model.compile(d_optimizer=adam(), g_optimizer=adam(), loss_fn=keras.losses.BinaryCrossentropy(from_logits=True))
    return FitRunner(model, image_dataset(data.train_images, to_model_range, settings["batch_size"]),
                     settings["batch_size"])


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

    def ours(extra=None, **kwargs):
        return TrainerRunner(lambda strategy: GanTask({**settings, **(extra or {})}, data, strategy), **kwargs)

    runners = {"ours": ours(steps_per_execution=spe),
               "keras_io_fit": keras_io_runner(settings, data),
               "ours_one_step_per_call": ours(steps_per_execution=1),
               "ours_with_r1_and_ema": ours({"r1_gamma": 10.0, "ema": 0.999}, steps_per_execution=spe),
               "ours_jit": ours(jit=True, steps_per_execution=spe)}
    # Epochs alternate between the runners, so a slow spell of this shared machine hits all of them.
    rates = interleave(runners, args.epochs)
    result = {"arch": args.arch, "batch_size": args.batch_size, "data": data.source, "epochs": args.epochs,
              **environment()}
    labels = {"ours": f"ours (Trainer, {spe} steps per call)", "keras_io_fit": "keras-io (train_step + fit)",
              "ours_one_step_per_call": "ours, 1 step per call",
              "ours_with_r1_and_ema": "ours with R1 + EMA (the defaults)",
              "ours_jit": "ours with --jit (XLA)"}
    summarize(f"GAN ({args.arch}), batch {args.batch_size}, {data.source}, {args.epochs} epochs each, interleaved:",
              rates, labels, "images", result)
    return write_result(result, args.out)


if __name__ == "__main__":
    main()
