"""Evaluating a trained VAE: the test-set ELBO, an importance-weighted log-likelihood, and its figures.

The pixels are those the run trained on (config.json's --binarize): grey levels in [0, 1], whose Bernoulli
"NLL" compares runs of this project only, or binarised digits (one fixed binarisation of the split, the
same for every run), whose NLL is that of binarised MNIST as papers report it.
"""

import os

import numpy as np
import tensorflow as tf

from training import figures
from training import run_dir as run_files
from training.vae import (TRAIN_SPLIT_KEY, fixed_inputs, gaussian_log_density, kl_to_standard_normal,
                          plot_loss_curves, reconstruction_nats)

# metrics.json's "likelihood": what test_nll_importance_weighted is the NLL of, by config.json's --binarize.
LIKELIHOODS = {False: "Bernoulli NLL on grey levels: compares runs of this project, not an NLL of MNIST",
               True: "NLL of binarised digits (fixed binarisation of the test split), as papers report MNIST's"}
IMAGES_PER_CHUNK = 50  # images whose K latent samples are decoded together (K x 50 decoder rows)


def log_weights(encoder, decoder, images, num_samples, seed):
    """log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x) for z_k ~ q(z|x): an array (K, n_images).
    `images` are float32 in [0, 1], as the model reads them (fixed_inputs).

    E_k[log w_k] is the ELBO; log (1/K) sum_k w_k is the importance-weighted bound of Burda et al.
    (2016), which is at least the ELBO and rises to log p(x) as K grows.
    """
    chunks = []
    for start in range(0, len(images), IMAGES_PER_CHUNK):
        x = images[start:start + IMAGES_PER_CHUNK]
        mean, log_var = encoder(x, training=False)
        eps = tf.random.stateless_normal((num_samples,) + tuple(mean.shape), seed=(seed, start))
        z = mean + tf.exp(0.5 * log_var) * eps  # (K, n, latent_dim)
        flat_z = tf.reshape(z, (-1, mean.shape[-1]))
        logits = decoder(flat_z, training=False)
        repeated_x = tf.reshape(tf.broadcast_to(x, (num_samples,) + tuple(x.shape)), (-1,) + tuple(x.shape[1:]))
        log_likelihood = -tf.reshape(reconstruction_nats(repeated_x, logits), (num_samples, -1))
        log_prior = gaussian_log_density(z, tf.zeros_like(z), tf.zeros_like(z))
        log_posterior = gaussian_log_density(z, mean, log_var)
        chunks.append((log_likelihood + log_prior - log_posterior).numpy())
    return np.concatenate(chunks, axis=1).astype(np.float64)


def importance_weighted_bound(weights):
    """Per image, log (1/K) sum_k exp(log w_k), computed stably."""
    return tf.reduce_logsumexp(weights, axis=0).numpy() - np.log(weights.shape[0])


def evaluate(run_dir, config, data, iw_samples, seed):
    """Returns a metrics dict (nats per image) and writes the evaluation figures into RUN_DIR/figures."""
    encoder = run_files.load_exported_model(run_dir, config, "encoder.keras")
    decoder = run_files.load_exported_model(run_dir, config, "decoder.keras")
    binarize = bool(config["settings"].get("binarize", False))  # runs from before --binarize: grey levels
    test_inputs = fixed_inputs(data.test_images, binarize)  # the images the run's held-out losses used
    test_weights = log_weights(encoder, decoder, test_inputs, iw_samples, seed)
    test_mean, test_log_var = encoder(test_inputs, training=False)
    test_kl = kl_to_standard_normal(test_mean, test_log_var).numpy()
    test_elbo = test_weights.mean(axis=0)
    train_inputs = fixed_inputs(data.train_images, binarize, TRAIN_SPLIT_KEY)
    train_elbo = log_weights(encoder, decoder, train_inputs, 10, seed + 1).mean(axis=0)
    write_figures(run_dir, decoder, data, test_inputs.numpy(), test_mean.numpy(), seed)
    return {
        "model": "vae",
        "arch": config["settings"]["arch"],
        "latent_dim": int(config["settings"]["latent_dim"]),
        "data": data.source,
        "test_images": int(len(data.test_images)),
        "iw_samples": int(iw_samples),
        "seed": seed,
        "binarize": binarize,
        "likelihood": LIKELIHOODS[binarize],
        # -ELBO averaged over the K samples of z per image; its KL part is exact, the rest is the reconstruction.
        "test_neg_elbo": float(-test_elbo.mean()),
        "test_reconstruction": float(-test_elbo.mean() - test_kl.mean()),
        "test_kl": float(test_kl.mean()),
        # -log p(x) estimated with K importance samples: an upper bound on the true NLL, below -ELBO. Of binarised
        # digits, a real NLL; of grey levels, the Bernoulli cross-entropy's (see LIKELIHOODS).
        "test_nll_importance_weighted": float(-importance_weighted_bound(test_weights).mean()),
        "train_neg_elbo": float(-train_elbo.mean()),  # beside test_neg_elbo: how much the model overfits
    }


def write_figures(run_dir, decoder, data, test_inputs, test_means, seed):
    """The evaluation figures; `test_inputs` are the test images as the model read them (n, 28, 28, 1) and
    `test_means` their posterior means (n, latent_dim)."""
    folder = os.path.join(run_dir, run_files.FIGURES)
    latent_dim = test_means.shape[-1]

    def decode(latents):
        return tf.sigmoid(decoder(np.asarray(latents, np.float32), training=False)).numpy()

    # Test digits (odd rows) above their reconstructions: the decoder's pixel means at the posterior mean.
    # 40 digits evenly spaced through the test split (the 5k sample's split is ordered by digit).
    spread = np.linspace(0, len(data.test_images) - 1, 40).round().astype(int)
    originals = test_inputs[spread]
    reconstructed = decode(test_means[spread])
    pairs = np.concatenate([np.stack([originals[row:row + 10], reconstructed[row:row + 10]])
                            for row in range(0, 40, 10)])
    figures.save_grid(pairs.reshape((-1, 28, 28, 1)), os.path.join(folder, "reconstructions.png"))

    # New digits: z ~ p(z) = N(0, I) through the decoder.
    prior = tf.random.stateless_normal((100, latent_dim), seed=(seed, 1 << 20))
    figures.save_grid(decode(prior), os.path.join(folder, "prior_samples.png"))

    if latent_dim == 2:
        # The tutorial's manifold: a grid of z at evenly spaced quantiles of N(0, 1) in each dimension,
        # so every cell covers the same prior mass.
        quantiles = tf.math.ndtri(np.linspace(0.05, 0.95, 20)).numpy()
        grid = np.array([[x, y] for y in quantiles[::-1] for x in quantiles])
        figures.save_grid(decode(grid), os.path.join(folder, "latent_manifold.png"), columns=20, scale=2)

    # Interpolation between pairs of test digits: decode (1 - t) mu_a + t mu_b for t in [0, 1].
    rows = []
    for first, second in _pairs_of_different_digits(data.test_labels, 6):
        steps = np.linspace(0.0, 1.0, 10)[:, None]
        rows.append(decode((1 - steps) * test_means[first] + steps * test_means[second]))
    figures.save_grid(np.concatenate(rows), os.path.join(folder, "interpolation.png"))

    plot_latent_space(test_means, data.test_labels, os.path.join(folder, "latent_space.png"))
    plot_loss_curves(run_files.read_history(run_dir), os.path.join(folder, "losses.png"))


def _pairs_of_different_digits(labels, count):
    """The first test image of digit i paired with that of digit i + 1, for i = 0, 1, ..."""
    first_of = {int(label): index for index, label in reversed(list(enumerate(labels)))}
    digits = sorted(first_of)
    return [(first_of[digits[i]], first_of[digits[(i + 1) % len(digits)]]) for i in range(min(count, len(digits)))]


def plot_latent_space(means, labels, path):
    """Posterior means of the test digits coloured by label; projected on 2 principal axes if latent_dim > 2."""
    title, axis_names = "posterior means of the test digits", ("z[0]", "z[1]")
    if means.shape[1] > 2:
        centred = means - means.mean(axis=0)
        _, singular_values, axes = np.linalg.svd(centred, full_matrices=False)
        means = centred @ axes[:2].T
        explained = (singular_values[:2] ** 2).sum() / (singular_values ** 2).sum()
        title += f"\n(first 2 principal axes, {explained:.0%} of the variance)"
        axis_names = ("principal axis 1", "principal axis 2")
    figures.save_scatter(means, labels, path, title, axis_names, colour_label="digit")
