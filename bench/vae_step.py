"""Steady-state VAE training throughput: this project's distributed step against the keras-io way.

    python -m bench.vae_step [--batch-size 64] [--latent-dim 20] [--epochs 8] [--out FILE]

Both sides train the same encoder and decoder (train.py's defaults) with the same optimizer, data and batch:
  ours:     training.loop.Trainer on training.vae.VaeTask (what train.py runs: tf.function via strategy.run,
            8 steps per call, eps keyed by step in the tf.data pipeline)
  keras-io: a keras.Model overriding train_step, trained with fit() (the keras-io VAE example's step,
            https://keras.io/examples/generative/vae/), with the loss from logits as ours.
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
from models import vae as vae_models  # noqa: E402
from training import distribute, optimizers  # noqa: E402
from training.cli import parse_args  # noqa: E402
from training.vae import VaeTask, kl_to_standard_normal, reconstruction_nats, to_unit_range  # noqa: E402


class KerasIoVae(keras.Model):
    """The keras-io example's VAE: train_step overridden, z sampled inside, three Mean trackers."""

    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.sampling = vae_models.Sampling(seed=1337)
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def train_step(self, data):
        with tf.GradientTape() as tape:
            z_mean, z_log_var = self.encoder(data, training=True)
            z = self.sampling(z_mean, z_log_var)
            logits = self.decoder(z, training=True)
            reconstruction_loss = tf.reduce_mean(reconstruction_nats(data, logits))
            kl_loss = tf.reduce_mean(kl_to_standard_normal(z_mean, z_log_var))
            total_loss = reconstruction_loss + kl_loss
        variables = self.encoder.trainable_weights + self.decoder.trainable_weights
        grads = tape.gradient(total_loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        self.total_loss_tracker.update_state(total_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {m.name: m.result() for m in self.metrics}


def keras_io_runner(settings, data, steps_per_epoch):
    encoder, decoder = vae_models.build_pair(settings["arch"], settings["latent_dim"], tuple(settings["units"]),
                                             settings["activation"], settings["batch_norm"])
    model = KerasIoVae(encoder, decoder)
    model.compile(optimizer=optimizers.build(settings, steps_per_epoch, mixed_precision=False))
    return FitRunner(model, image_dataset(data.train_images, to_unit_range, settings["batch_size"]),
                     settings["batch_size"])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.vae_step", description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--latent-dim", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=8, help="measured epochs per runner (after one warm-up epoch)")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    distribute.make_deterministic(0)
    data = mnist.load("mnist-5k")
    # train.py's own defaults, as `python train.py vae --latent-dim N --batch-size B` resolves them.
    settings = vars(parse_args(["vae", "--latent-dim", str(args.latent_dim), "--batch-size", str(args.batch_size),
                                "--epochs", "50"]))
    spe = settings["steps_per_execution"]
    runners = {"ours": TrainerRunner(lambda strategy: VaeTask(settings, data, strategy), steps_per_execution=spe),
               "keras_io_fit": keras_io_runner(settings, data, len(data.train_images) // args.batch_size),
               "ours_one_step_per_call": TrainerRunner(lambda strategy: VaeTask(settings, data, strategy))}
    rates = interleave(runners, args.epochs)
    result = {"latent_dim": args.latent_dim, "units": settings["units"], "batch_size": args.batch_size,
              "data": data.source, "epochs": args.epochs, **environment()}
    labels = {"ours": f"ours (Trainer, {spe} steps per call)", "keras_io_fit": "keras-io (train_step + fit)",
              "ours_one_step_per_call": "ours, 1 step per call"}
    summarize(f"VAE (mlp {settings['units']}, latent {args.latent_dim}), batch {args.batch_size}, {data.source}, "
              f"{args.epochs} epochs each, interleaved:", rates, labels, "images", result)
    return write_result(result, args.out)


if __name__ == "__main__":
    main()
