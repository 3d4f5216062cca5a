"""VAE training speed at train.py's defaults: this project's Trainer against the keras-io way, and the
time to a held-out negative ELBO.

    python -m bench.vae_step [--epochs 6] [--out FILE]

Both sides train the same encoder and decoder (train.py's defaults) with the same optimizer, data, batch
and loss, so their counted FLOPs per image are the same and only the engine differs:
  ours:     training.loop.Trainer on training.vae.VaeTask: exactly what `python train.py vae` runs
  keras-io: a keras.Model overriding train_step, trained with fit() (the keras-io VAE example's engine,
            https://keras.io/examples/generative/vae/), with this project's loss from logits.
It also times the two parts of ours' step alone: the gradients, and the optimizer's update (which does
not shrink with the batch).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import (PART_STEPS, TENSORFLOW_THREADS_VARIANT, FitRunner, call_with_threads,  # noqa: E402
                          compare_engines, image_dataset, parse_step_args, repeated_seconds, rounded, run_alone,
                          step_parser, time_to_quality, update_parts)
from datasets import mnist  # noqa: E402
from models import vae as vae_models  # noqa: E402
from training import distribute, optimizers  # noqa: E402
from training.cli import parse_args, settle_run_length  # noqa: E402
from training.vae import VaeTask, kl_to_standard_normal, reconstruction_nats, to_unit_range  # noqa: E402

# The quality the timed run must reach: held-out negative ELBO (nats per image) of the default model
# (latent 2), which it passes in about a fifth of its 50 epochs.
QUALITY_METRIC, QUALITY_THRESHOLD, QUALITY_MAX_EPOCHS = "test_neg_elbo", 165.0, 50


class KerasIoVae(keras.Model):
    """The keras-io example's VAE engine: train_step overridden, z sampled inside, three Mean trackers."""

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


def keras_io_runner(settings, data):
    encoder, decoder = vae_models.build_pair(settings["arch"], settings["latent_dim"], tuple(settings["units"]),
                                             settings["activation"], settings["batch_norm"])
    model = KerasIoVae(encoder, decoder)
    steps_per_epoch = len(data.train_images) // settings["batch_size"]
    model.compile(optimizer=optimizers.build({**settings, "fused_optimizer": False}, steps_per_epoch,
                                             mixed_precision=False))
    return FitRunner(model, image_dataset(data.train_images, to_unit_range, settings["batch_size"]),
                     settings["batch_size"])


def step_parts(settings, data, rows, peak_gflops):
    """Ours' step cut in two and each part timed alone on one batch: the gradients (the model's forward and
    backward passes, one step after another) and the optimizer's update (AdamW's decay and the fused Adam,
    which read and write every weight and its two moments however small the batch; on gradients of zeros,
    which cost the same).
    Also the share of the peak a step could reach if its matmuls ran at the peak and the update took no less."""
    task = VaeTask(settings, data, tf.distribute.get_strategy())
    images, noise = next(iter(task.train_dataset(0)))
    variables = task.trainable_variables

    @tf.function
    def gradients_alone():
        total = tf.constant(0.0)
        for _ in tf.range(PART_STEPS):
            # Each step's input waits for the previous step's whole gradients, as in training, where the
            # next forward pass needs the updated weights. Without that wait, one step's forward pass
            # runs beside the last one's backward pass on the other core and the part looks 30% cheaper.
            step_images = images + 1e-30 * total  # a dependency, not a change: 1e-30 * total is 0 in float32
            with tf.GradientTape() as tape:
                reconstruction, kl = task.neg_elbo_terms(step_images, noise, training=True)
                loss = tf.reduce_mean(reconstruction + kl)
            total += 1e-30 * tf.add_n([tf.reduce_sum(gradient) for gradient in tape.gradient(loss, variables)])
        return total

    batch = settings["batch_size"]
    parts = {**update_parts(rows, batch, peak_gflops, [(task.optimizer, variables)]),
             "gradients_ms": repeated_seconds(gradients_alone) * 1e3}
    print(f"  ours' step, {parts['step_ms']:.2f} ms, in parts timed alone: the gradients {parts['gradients_ms']:.2f} "
          f"ms, the optimizer's update of {parts['weights']:,} weights {parts['update_ms']:.2f} ms; with its "
          f"matmuls at the peak and that update, a step of batch {batch} would reach "
          f"{parts['ceiling_fraction_of_peak']:.0%} of the peak")
    return rounded(parts)


def measure(peak_gflops, epochs, extra_runners=True):
    """The VAE rows of the benchmark (train.py's defaults; see the module docstring)."""
    distribute.make_deterministic(0)
    data = mnist.load("mnist-5k")
    settings = settle_run_length(vars(parse_args(["vae", "--data", "mnist-5k"])), data)
    title = (f"VAE ({settings['arch']} {settings['units']}, latent {settings['latent_dim']}, batch "
             f"{settings['batch_size']}), {data.source}, {epochs} epochs each, interleaved:")
    rows, ratio, _, make_ours = compare_engines(VaeTask, settings, data, keras_io_runner(settings, data),
                                                title=title, unit="images", epochs=epochs,
                                                peak_gflops=peak_gflops, extra_runners=extra_runners,
                                                variants=[TENSORFLOW_THREADS_VARIANT])
    # Timed under the threads ours trains with.
    parts = call_with_threads(settings["intra_op_threads"], step_parts, settings, data, rows, peak_gflops)
    quality = time_to_quality(make_ours(), QUALITY_METRIC, QUALITY_THRESHOLD, QUALITY_MAX_EPOCHS)
    print(f"  time to held-out negative ELBO <= {QUALITY_THRESHOLD:g} nats: {quality['wall_seconds']:.1f} s "
          f"({quality['training_seconds']:.1f} s of training steps; {quality['epochs']} epochs, "
          f"reached {quality['value']:.2f})")
    return {"command": "python train.py vae", "unit": "images", "latent_dim": settings["latent_dim"],
            "units": settings["units"], "batch_size": settings["batch_size"], "data": data.source,
            "epochs": epochs, "rows": rows, "ratio_to_keras_io_fit": ratio, "step_parts": parts,
            "time_to_quality": quality}


def main(argv=None):
    args = parse_step_args(step_parser("vae", __doc__, epochs=6), argv)
    return run_alone("vae", measure, args.out, epochs=args.epochs)


if __name__ == "__main__":
    main()
