"""Training the MNIST VAE: maximise the evidence lower bound (ELBO) of the tutorial,

    log p(x) >= ELBO(x) = E_q(z|x)[log p(x|z)] - KL(q(z|x) || p(z)),     p(z) = N(0, I),

by minimising, per image, the negative ELBO = reconstruction + KL (both in nats):
  reconstruction  -log p(x|z) with z ~ q(z|x) drawn once by the reparameterisation trick: the Bernoulli
                  cross-entropy of the 784 pixels against the decoder's logits, summed over pixels;
  KL              KL(N(mu, sigma^2) || N(0, I)) in closed form, summed over latent dimensions.

The tutorial's x is the grey level in [0, 1], whose Bernoulli "likelihood" is no probability of the image.
With --binarize x is a 0/1 image instead, as in the papers' binarised MNIST: dynamically binarised for
training (Burda et al. 2016: each pixel drawn afresh as Bernoulli(grey level) every time the image is
used), and binarised once with a fixed key for the held-out split, so -log p(x) is a real NLL.
"""

import math
import os

import numpy as np
import tensorflow as tf

from datasets import pipeline
from models import vae as vae_models
from training import figures, loop, optimizers
from training import run_dir as run_files
from training.task import Task

GRID_SAMPLES = 100  # a 10 x 10 grid decoded from one fixed batch of prior samples, every epoch
FIXED_LATENT_KEY = -1  # the grid's latent key; training steps use keys 0, 1, 2, ...
HELD_OUT_KEY = -2  # held-out batch i draws its eps with key HELD_OUT_KEY - i, the same every epoch
# --binarize: the held-out split's (and evaluate.py's training split's) one binarisation, the same for every
# run whatever its --seed, so their NLLs compare; keyed (FIXED_BINARIZATION_SEED, split key).
FIXED_BINARIZATION_SEED = 0
TEST_SPLIT_KEY, TRAIN_SPLIT_KEY = 0, 1
LOG_2PI = math.log(2.0 * math.pi)


def to_unit_range(image):
    """uint8 pixels in [0, 255] -> float32 in [0, 1], the Bernoulli means the decoder models."""
    return tf.cast(image, tf.float32) / 255.0


def fixed_inputs(images, binarize, split_key=TEST_SPLIT_KEY):
    """A whole split's uint8 images as the model reads them in evaluation: grey levels in [0, 1], or with
    `binarize` 0/1 pixels drawn once, from a key that depends on the split alone."""
    grey = to_unit_range(images)
    return pipeline.keyed_bernoulli(grey, FIXED_BINARIZATION_SEED, split_key) if binarize else grey


def reconstruction_nats(images, logits):
    """-log p(x|z) per image: sum over pixels of -[x log s(l) + (1 - x) log(1 - s(l))], s the sigmoid.

    Computed from logits, which is exact where sigmoid(l) would round to 0 or 1.
    """
    return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=images, logits=logits), axis=[1, 2, 3])


def kl_to_standard_normal(mean, log_var):
    """KL(N(mu, sigma^2) || N(0, I)) per image = -1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)."""
    return -0.5 * tf.reduce_sum(1.0 + log_var - tf.square(mean) - tf.exp(log_var), axis=-1)


def gaussian_log_density(z, mean, log_var):
    """log N(z; mu, sigma^2) per row, summed over the last axis."""
    return -0.5 * tf.reduce_sum(LOG_2PI + log_var + tf.square(z - mean) * tf.exp(-log_var), axis=-1)


class VaeTask(Task):
    """The VAE's encoder, decoder, optimizer, input pipelines and per-replica steps."""

    name = "vae"
    metric_names = ("neg_elbo", "reconstruction", "kl")
    metric_labels = {"neg_elbo": "-ELBO"}

    def __init__(self, settings, data, strategy, mixed_precision=False):
        self.seed = settings["seed"]
        self.latent_dim = settings["latent_dim"]
        self.beta = settings["beta"]
        self.binarize = settings.get("binarize", False)  # runs from before --binarize: grey levels
        self.global_batch_size = settings["batch_size"]
        self.num_train = len(data.train_images)
        self.examples = pipeline.cached_examples(data.train_images, to_unit_range)
        self.held_out_inputs = fixed_inputs(data.test_images, self.binarize)
        self.steps_per_epoch = pipeline.steps_per_epoch(self.num_train, self.global_batch_size,
                                                        settings.get("steps_per_epoch"))
        if self.steps_per_epoch < 1:
            raise ValueError(f"--batch-size {self.global_batch_size} is larger than the "
                             f"{self.num_train} training images")
        self.kl_warmup_steps = settings["kl_warmup"] * self.steps_per_epoch
        with strategy.scope():
            self.encoder, self.decoder = vae_models.build_pair(
                settings["arch"], self.latent_dim, tuple(settings["units"]), settings["activation"],
                settings["batch_norm"])
            self.sampling = vae_models.Sampling(name="sampling", dtype="float32")  # float32 even when mixed
            self.optimizer = optimizers.build(settings, self.steps_per_epoch, mixed_precision)
            # Optimizer slots are made here, in the strategy's scope (see GanTask).
            self.optimizer.build(self.trainable_variables)
        self.fixed_latents = pipeline.keyed_normal((GRID_SAMPLES, self.latent_dim), self.seed, FIXED_LATENT_KEY)

    @property
    def trainable_variables(self):
        return self.encoder.trainable_variables + self.decoder.trainable_variables

    def checkpoint_items(self):
        return {"encoder": self.encoder, "decoder": self.decoder, "optimizer": self.optimizer}

    def train_dataset(self, epoch):
        """Global batches of (images in [0, 1], eps (batch, latent_dim)), eps keyed by (seed, global step);
        with --binarize each image's pixels are drawn as Bernoulli(grey level) from the same key, so a new
        0/1 image each time, the same for any number of replicas and on resume."""
        batches = pipeline.epoch_batches(self.examples, self.num_train, self.global_batch_size,
                                         self.seed, epoch, self.steps_per_epoch)

        def with_noise(step, images):
            if self.binarize:
                images = pipeline.keyed_bernoulli(images, self.seed, step)
            return images, pipeline.keyed_normal((self.global_batch_size, self.latent_dim), self.seed, step)

        return batches.map(with_noise, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def held_out_dataset(self):
        """The test split in batches of (images, eps), with the same images (fixed_inputs) and eps every epoch."""
        dataset = tf.data.Dataset.from_tensor_slices(self.held_out_inputs)
        dataset = dataset.batch(self.global_batch_size).enumerate()

        def with_noise(index, images):
            shape = (tf.shape(images, out_type=tf.int64)[0], self.latent_dim)
            return images, pipeline.keyed_normal(shape, self.seed, HELD_OUT_KEY - index)

        return pipeline.shard_by_data(dataset.map(with_noise))

    def neg_elbo_terms(self, images, noise, training):
        """(reconstruction, KL) per image, in nats, with z = mu + sigma * eps drawn from q(z|x)."""
        mean, log_var = self.encoder(images, training=training)
        latents = self.sampling(mean, log_var, noise)
        logits = self.decoder(latents, training=training)
        return reconstruction_nats(images, logits), kl_to_standard_normal(mean, log_var)

    def kl_weight(self):
        """beta, ramped up linearly from 0 over the first --kl-warmup epochs (Bowman et al. 2016)."""
        if not self.kl_warmup_steps:
            return tf.constant(self.beta)
        progress = tf.cast(self.optimizer.iterations + 1, tf.float32) / self.kl_warmup_steps
        return self.beta * tf.minimum(1.0, progress)

    def train_step(self, inputs):
        """One Adam step on this replica's rows of -ELBO (reconstruction + beta * KL, beta = 1 for the VAE)."""
        images, noise = inputs
        with tf.GradientTape() as tape:
            reconstruction, kl = self.neg_elbo_terms(images, noise, training=True)
            loss = loop.global_mean(reconstruction + self.kl_weight() * kl, self.global_batch_size)
            scaled_loss = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        loop.apply_gradients(self.optimizer, tape.gradient(scaled_loss, variables), variables)
        return {"neg_elbo": loop.global_mean(reconstruction + kl, self.global_batch_size),
                "reconstruction": loop.global_mean(reconstruction, self.global_batch_size),
                "kl": loop.global_mean(kl, self.global_batch_size)}

    def held_out_step(self, inputs):
        """Sums over this replica's held-out rows of the three terms (the full -ELBO, beta aside)."""
        images, noise = inputs
        reconstruction, kl = self.neg_elbo_terms(images, noise, training=False)
        return {"neg_elbo": tf.reduce_sum(reconstruction + kl), "reconstruction": tf.reduce_sum(reconstruction),
                "kl": tf.reduce_sum(kl), "count": tf.cast(tf.shape(images)[0], tf.float32)}

    def sample_grid(self):
        """Pixel means sigmoid(decoder(z)) for the fixed prior samples z ~ N(0, I), in [0, 1]."""
        return tf.sigmoid(self.decoder(self.fixed_latents, training=False)).numpy()

    def end_epoch(self, epoch, history, run_dir):
        """Writes this epoch's grid of prior samples, the loss curves and a TensorBoard image."""
        samples = self.sample_grid()
        folder = os.path.join(run_dir, run_files.FIGURES)
        figures.save_grid(samples, os.path.join(folder, f"samples_epoch_{epoch:03d}.png"))
        plot_loss_curves(history, os.path.join(folder, "losses.png"))
        tf.summary.image("samples", figures.tile(samples, 10)[np.newaxis, ..., np.newaxis], max_outputs=1)

    def export(self, run_dir):
        """Saves encoder.keras, decoder.keras and the GIF of the per-epoch grids."""
        figures.save_epoch_gif(os.path.join(run_dir, run_files.FIGURES))
        for model, name in ((self.encoder, "encoder"), (self.decoder, "decoder")):
            with run_files.atomic_path(os.path.join(run_dir, f"{name}.keras")) as partial:
                model.save(partial)


def plot_loss_curves(history, path):
    """-ELBO, reconstruction and KL per epoch, train beside held-out test."""
    panels = [(title, [name, f"test_{name}"]) for name, title in
              (("neg_elbo", "-ELBO (nats/image)"), ("reconstruction", "reconstruction"), ("kl", "KL"))]
    labels = {column: ("test" if column.startswith("test_") else "train") for _, pair in panels for column in pair}
    figures.plot_curves(history, panels, path, title="VAE training", labels=labels)
