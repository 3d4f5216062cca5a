"""GAN training speed at train.py's defaults: this project's Trainer against the keras-io way.

    python -m bench.gan_step [--epochs 6] [--out FILE]

Both sides train the same two models (the MLP pair) on the same data, batch, loss and optimizers, so
their counted FLOPs per image are the same and only the engine differs:
  ours:     training.loop.Trainer on training.gan.GanTask: exactly what `python train.py gan` runs
  keras-io: a keras.Model overriding train_step, trained with fit() (the keras-io DCGAN example's engine,
            https://keras.io/examples/generative/dcgan_overriding_train_step/), with this project's loss:
            non-saturating, the R1 penalty and the generator's moving average, as train.py's defaults.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import (TENSORFLOW_THREADS_VARIANT, FitRunner, call_with_threads,  # noqa: E402
                          compare_engines, image_dataset, parse_step_args, rounded, run_alone, step_parser,
                          update_parts)
from datasets import mnist  # noqa: E402
from models import gan as gan_models  # noqa: E402
from training import distribute  # noqa: E402
from training.cli import parse_args, settle_run_length  # noqa: E402
from training.gan import GanTask, binary_cross_entropy, to_model_range  # noqa: E402


class KerasIoGan(keras.Model):
    """The keras-io example's GAN engine: train_step overridden, noise drawn inside, D's step then G's."""

    def __init__(self, discriminator, generator, noise_dim, r1_gamma):
        super().__init__()
        self.discriminator, self.generator = discriminator, generator
        self.noise_dim, self.r1_gamma = noise_dim, r1_gamma
        self.seed_generator = keras.random.SeedGenerator(1337)

    def compile(self, d_optimizer, g_optimizer):
        super().compile()
        self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer
        self.d_loss_metric = keras.metrics.Mean(name="d_loss")
        self.g_loss_metric = keras.metrics.Mean(name="g_loss")

    @property
    def metrics(self):
        return [self.d_loss_metric, self.g_loss_metric]

    def train_step(self, real_images):
        batch_size = tf.shape(real_images)[0]
        noise = keras.random.normal((batch_size, self.noise_dim), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            with tf.GradientTape() as input_tape:
                input_tape.watch(real_images)
                real_logits = self.discriminator(real_images, training=True)
            fake_logits = self.discriminator(self.generator(noise, training=True), training=True)
            per_example = (binary_cross_entropy(tf.ones_like(real_logits), real_logits)
                           + binary_cross_entropy(tf.zeros_like(fake_logits), fake_logits))
            if self.r1_gamma:
                input_gradients = input_tape.gradient(real_logits, real_images)
                per_example += 0.5 * self.r1_gamma * tf.reduce_sum(tf.square(input_gradients), axis=[1, 2, 3])
            d_loss = tf.reduce_mean(per_example)
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))
        noise = keras.random.normal((batch_size, self.noise_dim), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            logits = self.discriminator(self.generator(noise, training=True), training=True)
            g_loss = tf.reduce_mean(binary_cross_entropy(tf.ones_like(logits), logits))
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
        self.d_loss_metric.update_state(d_loss)
        self.g_loss_metric.update_state(g_loss)
        return {"d_loss": self.d_loss_metric.result(), "g_loss": self.g_loss_metric.result()}


def keras_io_runner(settings, data):
    """The keras-io engine on train.py's GAN recipe (same models, loss and optimizers), trained with fit()."""
    generator, discriminator = gan_models.build_pair(settings["arch"], settings["noise_dim"])
    model = KerasIoGan(discriminator, generator, settings["noise_dim"], settings["r1_gamma"])
    ema = settings["ema"]
    adam = lambda ema_momentum=0.0: keras.optimizers.Adam(  # noqa: E731
        settings["learning_rate"], beta_1=settings["beta_1"], use_ema=ema_momentum > 0,
        ema_momentum=ema_momentum or 0.99)
    model.compile(d_optimizer=adam(), g_optimizer=adam(ema))
    return FitRunner(model, image_dataset(data.train_images, to_model_range, settings["batch_size"]),
                     settings["batch_size"])


def step_parts(settings, data, rows, peak_gflops, goal_ratio):
    """Ours' step beside its two optimizers' updates timed alone (D's Adam, and G's Adam with the weights'
    moving average), the share of the peak a step could reach with its matmuls at the peak and those
    updates, and the share `goal_ratio` times keras-io's fit would need."""
    task = GanTask(settings, data, tf.distribute.get_strategy())
    pairs = [(task.d_optimizer, task.judge.trainable_variables), (task.g_optimizer, task.generator.trainable_variables)]
    parts = update_parts(rows, settings["batch_size"], peak_gflops, pairs)
    parts["fraction_of_peak_for_goal"] = goal_ratio * rows["keras_io_fit"]["fraction_of_peak"]
    print(f"  ours' step {parts['step_ms']:.2f} ms, of which the two optimizers' updates of {parts['weights']:,} "
          f"weights take {parts['update_ms']:.2f} ms alone; with its matmuls at the peak and those updates a step "
          f"would reach {parts['ceiling_fraction_of_peak']:.0%} of the peak, and {goal_ratio:g}x keras-io's fit "
          f"needs {parts['fraction_of_peak_for_goal']:.0%}")
    return rounded(parts)


def measure(peak_gflops, epochs, extra_runners=True, goal_ratio=1.3):
    """The GAN rows of the benchmark (train.py's defaults; see the module docstring)."""
    distribute.make_deterministic(0)
    data = mnist.load("mnist-5k")
    settings = settle_run_length(vars(parse_args(["gan", "--data", "mnist-5k"])), data)
    title = (f"GAN ({settings['arch']}, batch {settings['batch_size']}, R1 {settings['r1_gamma']:g}, "
             f"EMA {settings['ema']:g}), {data.source}, {epochs} epochs each, interleaved:")
    rows, ratio, _, _ = compare_engines(GanTask, settings, data, keras_io_runner(settings, data), title=title,
                                        unit="images", epochs=epochs, peak_gflops=peak_gflops,
                                        extra_runners=extra_runners, variants=[TENSORFLOW_THREADS_VARIANT])
    # Timed under the threads ours trains with.
    parts = call_with_threads(settings["intra_op_threads"], step_parts, settings, data, rows, peak_gflops,
                              goal_ratio)
    return {"command": "python train.py gan", "unit": "images", "arch": settings["arch"],
            "batch_size": settings["batch_size"], "data": data.source, "epochs": epochs, "rows": rows,
            "ratio_to_keras_io_fit": ratio, "step_parts": parts}


def main(argv=None):
    args = parse_step_args(step_parser("gan", __doc__, epochs=6), argv)
    return run_alone("gan", measure, args.out, epochs=args.epochs)


if __name__ == "__main__":
    main()
