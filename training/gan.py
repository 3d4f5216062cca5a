"""Training the MNIST GAN: the tutorial's alternating discriminator and generator steps.

The tutorial's objective is the min-max game

    min_G max_D  V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))]

trained by alternating (1) a step of D up the gradient of V and (2) a step of G down it.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from datasets import pipeline
from models import gan as gan_models
from training import augment, figures, loop, optimizers
from training import run_dir as run_files
from training.task import Task

GRID_SAMPLES = 100  # a 10 x 10 grid of samples from one fixed noise batch
# The grid and the loss curves are drawn at the first epoch and about FIGURES_PER_RUN evenly spaced ones
# (every epoch of a run of up to 50): redrawing them every epoch took a third of a 500-epoch run's time.
FIGURES_PER_RUN = 50
FIXED_NOISE_KEY = -1  # the grid's noise key; training steps use keys 0, 1, 2, ...
# The averaged generator's BatchNorm statistics are measured on STANDING_BATCHES batches of noise keyed
# -2, -3, ... (standing_statistics).
STANDING_BATCHES, STANDING_BATCH_SIZE = 8, 256
# RUN_DIR/snapshots/generator_epoch_NNN.weights.h5: the sampling generator's weights (the moving
# average with --ema) at about SNAPSHOTS_PER_RUN evenly spaced epochs and the last, for
# `evaluate.py --over-training`; the checkpoints keep only the last few epochs.
SNAPSHOTS = "snapshots"
SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX = "generator_epoch_", ".weights.h5"  # Keras requires the .weights.h5 ending
SNAPSHOTS_PER_RUN = 20


def to_model_range(image):
    """uint8 pixels in [0, 255] -> float32 in [-1, 1], the range of the generator's tanh."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0


def to_unit_range(images):
    """[-1, 1] -> [0, 1], for figures."""
    return (np.asarray(images) + 1.0) / 2.0


def is_evenly_spaced_epoch(epoch, total_epochs, count):
    """True for every k-th epoch, k = max(1, total_epochs // count), and for the last one."""
    return epoch % max(1, total_epochs // count) == 0 or epoch == total_epochs


def is_snapshot_epoch(epoch, total_epochs):
    return is_evenly_spaced_epoch(epoch, total_epochs, SNAPSHOTS_PER_RUN)


def is_figure_epoch(epoch, total_epochs):
    return epoch == 1 or is_evenly_spaced_epoch(epoch, total_epochs, FIGURES_PER_RUN)


def snapshot_path(run_dir, epoch):
    return os.path.join(run_dir, SNAPSHOTS, f"{SNAPSHOT_PREFIX}{epoch:03d}{SNAPSHOT_SUFFIX}")


def list_snapshots(run_dir):
    """[(epoch, path)] of the generator snapshots in `run_dir`, by epoch; [] when there are none."""
    folder = os.path.join(run_dir, SNAPSHOTS)
    names = os.listdir(folder) if os.path.isdir(folder) else []
    # An unfinished write is named .partial-..., so it never matches the prefix.
    epochs = [int(name[len(SNAPSHOT_PREFIX):-len(SNAPSHOT_SUFFIX)]) for name in names
              if name.startswith(SNAPSHOT_PREFIX) and name.endswith(SNAPSHOT_SUFFIX)]
    return [(epoch, snapshot_path(run_dir, epoch)) for epoch in sorted(epochs)]


def standing_statistics(generator, noise_batches):
    """Sets each BatchNorm layer's moving mean and variance to the average of its batch statistics over
    `noise_batches`, computed with the generator's own weights ("standing statistics", Brock et al. 2019).

    The moving-average (--ema) weights are not the weights whose activations the trained moving
    statistics followed, so the averaged generator needs statistics of its own. Calling it in training
    mode on batch k with momentum (k - 1) / k makes each layer's moving value the running mean of the
    batch values: moving <- moving (k - 1) / k + batch / k.
    """
    norms = [layer for layer in generator.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [norm.momentum for norm in norms]
    try:
        for k, noise in enumerate(noise_batches if norms else [], start=1):
            for norm in norms:
                norm.momentum = (k - 1) / k
            generator(noise, training=True)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum


def standing_noise(noise_dim, seed):
    """The noise batches the averaged generator's standing statistics are measured on, keyed -2, -3, ..."""
    return [pipeline.keyed_normal((STANDING_BATCH_SIZE, noise_dim), seed, FIXED_NOISE_KEY - 1 - k)
            for k in range(STANDING_BATCHES)]


def binary_cross_entropy(labels, logits):
    """Per-example -[y log sigmoid(l) + (1 - y) log(1 - sigmoid(l))], computed stably from logits."""
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)[:, 0]


class GanTask(Task):
    """The GAN's models, optimizers, input pipeline and per-replica train step."""

    name = "gan"
    metric_names = ("d_loss", "g_loss", "d_real", "d_fake")
    metric_labels = {"d_real": "D(x)", "d_fake": "D(G(z))"}

    def __init__(self, settings, data, strategy, mixed_precision=False):
        self.seed = settings["seed"]
        self.noise_dim = settings["noise_dim"]
        self.global_batch_size = settings["batch_size"]
        self.r1_gamma = settings.get("r1_gamma", 0.0)
        self.real_label = 1.0 - settings.get("label_smoothing", 0.0)
        self.diffaugment = settings.get("diffaugment", False)
        self.code_classes = settings.get("info_code", 0)
        self.info_weight = settings.get("info_weight", 1.0)
        self.num_train = len(data.train_images)
        self.examples = pipeline.cached_examples(data.train_images, to_model_range)
        self.steps_per_epoch = pipeline.steps_per_epoch(self.num_train, self.global_batch_size,
                                                        settings.get("steps_per_epoch"))
        if self.steps_per_epoch < 1:
            raise ValueError(f"--batch-size {self.global_batch_size} is larger than the "
                             f"{self.num_train} training images")
        with strategy.scope():
            self.generator, self.discriminator = gan_models.build_pair(settings["arch"], self.noise_dim,
                                                                       self.code_classes)
            # With --info-code, D's step also trains InfoGAN's code head (Q), which shares D's body.
            self.judge = (gan_models.with_code_head(self.discriminator, self.code_classes) if self.code_classes
                          else self.discriminator)
            self.g_optimizer = self._adam(settings, mixed_precision, settings.get("ema", 0.0))
            self.d_optimizer = self._adam(settings, mixed_precision)
            # Keras 3 creates optimizer slots lazily; under a distribution strategy that first happens
            # inside the replica function and fails, so build them here, in the strategy's scope.
            self.g_optimizer.build(self.generator.trainable_variables)
            self.d_optimizer.build(self.judge.trainable_variables)
        self.ema_generator = None
        self.fixed_noise = pipeline.keyed_normal((GRID_SAMPLES, self.noise_dim), self.seed, FIXED_NOISE_KEY)
        self.total_epochs = settings.get("epochs")  # None when built without train.py's settings: no snapshots

    def _adam(self, settings, mixed_precision, ema_momentum=0.0):
        # use_ema: Keras keeps an exponential moving average of the weights inside the optimizer.
        # D and G each take one step per training step, so both follow the same --lr-schedule.
        optimizer = optimizers.adam_class(settings)(
            optimizers.learning_rate(settings, self.steps_per_epoch), beta_1=settings["beta_1"],
            use_ema=ema_momentum > 0, ema_momentum=ema_momentum or 0.99)
        # Under mixed_float16, scale the loss so small float16 gradients do not flush to zero.
        return keras.optimizers.LossScaleOptimizer(optimizer) if mixed_precision else optimizer

    def checkpoint_items(self):
        items = {"generator": self.generator, "discriminator": self.discriminator,
                 "g_optimizer": self.g_optimizer, "d_optimizer": self.d_optimizer}
        if self.code_classes:
            items["discriminator_with_code_head"] = self.judge
        return items

    def train_dataset(self, epoch):
        """Global batches of (real images in [-1, 1], noise (batch, 2, noise_dim)) for one epoch.

        The noise is made in the pipeline, keyed by (seed, global step), so every replica layout
        and every resumed run draws the same z for the same example: row i is example i's noise,
        [:, 0] for the discriminator's step and [:, 1] for the generator's.
        """
        batches = pipeline.epoch_batches(self.examples, self.num_train, self.global_batch_size,
                                         self.seed, epoch, self.steps_per_epoch)

        def with_noise(step, images):
            noise = pipeline.keyed_normal((self.global_batch_size, 2, self.noise_dim), self.seed, step)
            if not self.diffaugment:
                return images, noise
            # With --diffaugment, each example's translation and cutout, keyed the same way (training/augment.py).
            return images, noise, augment.draw_parameters(self.global_batch_size, self.seed, step)

        return batches.map(with_noise, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def train_step(self, inputs):
        """One alternating update on this replica's share of the global batch: D first, then G."""
        real_images, noise, *augmentation = inputs
        if augmentation:
            # D sees only augmented images, real and generated, in both steps (DiffAugment).
            views = [lambda images, use=use: augment.augment(images, augmentation[0][:, use])
                     for use in (augment.REAL_FOR_D, augment.GENERATED_FOR_D, augment.GENERATED_FOR_G)]
        else:
            views = [tf.identity] * 3
        d_metrics = self.discriminator_step(real_images, noise[:, 0], *views[:2])
        g_metrics = self.generator_step(noise[:, 1], views[2])
        return {**d_metrics, **g_metrics}

    def _mean(self, per_example):
        return loop.global_mean(per_example, self.global_batch_size)

    def _logits_and_code_logits(self, images):
        """(D's logits, and with --info-code the code head's logits, else None)."""
        if not self.code_classes:
            return self.discriminator(images, training=True), None
        return self.judge(images, training=True)

    def _code_loss(self, noise, code_logits):
        """InfoGAN's lower bound on the mutual information I(c; G(z, c)), up to the constant H(c): the
        cross-entropy of the code head's reading of G's image against the code c in z (Chen et al. 2016,
        eq. 5), weighted by --info-weight (their lambda). Per example; 0 without --info-code."""
        if code_logits is None:
            return 0.0
        code = gan_models.categorical_code(noise, self.code_classes)  # the c that G sees
        return self.info_weight * tf.nn.sparse_softmax_cross_entropy_with_logits(labels=code, logits=code_logits)

    def discriminator_step(self, real_images, noise, real_view=tf.identity, generated_view=tf.identity):
        """(1) D maximises log D(x) + log(1 - D(G(z))): binary cross-entropy, real -> 1, generated -> 0.

        D judges real_view(x) and generated_view(G(z)): the images themselves, or with --diffaugment
        their augmented versions."""
        real_images = real_view(real_images)
        ones = tf.ones((tf.shape(real_images)[0], 1))
        with tf.GradientTape() as tape:
            with tf.GradientTape() as input_tape:
                input_tape.watch(real_images)
                real_logits = self.discriminator(real_images, training=True)
            fake_images = generated_view(self.generator(noise, training=True))
            fake_logits, code_logits = self._logits_and_code_logits(fake_images)
            # One-sided label smoothing (Salimans et al. 2016): real labels 1 - s, generated stay 0.
            per_example = (binary_cross_entropy(self.real_label * ones, real_logits)
                           + binary_cross_entropy(tf.zeros_like(ones), fake_logits)
                           + self._code_loss(noise, code_logits))  # with --info-code, Q learns to read c
            if self.r1_gamma:
                # R1 (Mescheder et al. 2018): + gamma/2 ||grad_x D(x)||^2 on real images keeps D smooth
                # where the data is, which stops it overfitting a small training set. Under mixed_float16
                # the input gradient is taken loss-scaled, so small float16 values do not flush to zero.
                loss_scale = self.d_optimizer.scale_loss(tf.constant(1.0))
                input_gradients = input_tape.gradient(real_logits, real_images,
                                                      output_gradients=tf.fill(tf.shape(real_logits), loss_scale))
                input_gradients /= loss_scale
                per_example += 0.5 * self.r1_gamma * tf.reduce_sum(tf.square(input_gradients), axis=[1, 2, 3])
            d_loss = self._mean(per_example)
            scaled_loss = self.d_optimizer.scale_loss(d_loss)
        loop.apply_gradients(self.d_optimizer, tape.gradient(scaled_loss, self.judge.trainable_variables),
                             self.judge.trainable_variables)
        return {"d_loss": d_loss,
                "d_real": self._mean(tf.sigmoid(real_logits)[:, 0]),  # D(x): 1 = sure it is real
                "d_fake": self._mean(tf.sigmoid(fake_logits)[:, 0])}  # D(G(z)), before D's update

    def generator_step(self, noise, generated_view=tf.identity):
        """(2) G's step. The tutorial's min-max has G minimise log(1 - D(G(z))); early in training D
        rejects G's samples with confidence, where that term is flat and its gradient vanishes. The
        non-saturating loss -log D(G(z)) has the same fixed point but strong gradients exactly then
        (Goodfellow et al. 2014, section 3): binary cross-entropy with the label "real"."""
        with tf.GradientTape() as tape:
            logits, code_logits = self._logits_and_code_logits(generated_view(self.generator(noise, training=True)))
            # With --info-code, G also makes its code readable from its image (InfoGAN).
            g_loss = self._mean(binary_cross_entropy(tf.ones_like(logits), logits)
                                + self._code_loss(noise, code_logits))
            scaled_loss = self.g_optimizer.scale_loss(g_loss)
        loop.apply_gradients(self.g_optimizer, tape.gradient(scaled_loss, self.generator.trainable_variables),
                    self.generator.trainable_variables)
        return {"g_loss": g_loss}

    def sampling_generator(self):
        """The generator to sample and export: with --ema, a copy holding the moving-average weights and
        BatchNorm statistics measured for them."""
        optimizer = getattr(self.g_optimizer, "inner_optimizer", self.g_optimizer)  # under loss scaling
        if not optimizer.use_ema:
            return self.generator
        if self.ema_generator is None:
            self.ema_generator = keras.models.clone_model(self.generator)
        self.ema_generator.set_weights(self.generator.get_weights())
        # Keras' optimizer keeps the averages in the order of the variables it was built on.
        for variable, average in zip(self.ema_generator.trainable_variables,
                                     optimizer._model_variables_moving_average):
            variable.assign(average)
        standing_statistics(self.ema_generator, standing_noise(self.noise_dim, self.seed))
        return self.ema_generator

    def sample_grid(self, generator=None):
        """The sampling generator's (or `generator`'s) images for the fixed noise batch, in [0, 1]."""
        generator = self.sampling_generator() if generator is None else generator
        return to_unit_range(generator(self.fixed_noise, training=False))

    def end_epoch(self, epoch, history, run_dir):
        """At the epochs is_figure_epoch picks, writes the sample grid, the loss curves and a TensorBoard
        image; at those is_snapshot_epoch picks, a snapshot of the sampling generator's weights."""
        snapshot = self.total_epochs and is_snapshot_epoch(epoch, self.total_epochs)
        figure = not self.total_epochs or is_figure_epoch(epoch, self.total_epochs)
        if not (snapshot or figure):
            return
        generator = self.sampling_generator()  # once: with --ema it measures its BatchNorm statistics
        if snapshot:
            self.save_snapshot(snapshot_path(run_dir, epoch), generator)
        if not figure:
            return
        samples = self.sample_grid(generator)
        figures.save_grid(samples, os.path.join(run_dir, run_files.FIGURES, f"samples_epoch_{epoch:03d}.png"))
        figures.plot_curves(history, [("losses", ["d_loss", "g_loss"]),
                                      ("discriminator outputs", ["d_real", "d_fake"])],
                            os.path.join(run_dir, run_files.FIGURES, "losses.png"), title="GAN training",
                            labels=self.metric_labels)
        tf.summary.image("samples", figures.tile(samples, 10)[np.newaxis, ..., np.newaxis], max_outputs=1)

    def save_snapshot(self, path, generator=None):
        """Saves the sampling generator's weights (about 6 MB for the MLP) to `path`, atomically."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with run_files.atomic_path(path) as partial:
            (self.sampling_generator() if generator is None else generator).save_weights(partial)

    def export(self, run_dir):
        """Saves generator.keras (the moving average with --ema), discriminator.keras and the GIF of the
        per-epoch grids."""
        figures.save_epoch_gif(os.path.join(run_dir, run_files.FIGURES))
        for model, name in ((self.sampling_generator(), "generator"), (self.discriminator, "discriminator")):
            with run_files.atomic_path(os.path.join(run_dir, f"{name}.keras")) as partial:
                model.save(partial)
