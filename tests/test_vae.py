"""The VAE: its ELBO terms, the importance-weighted bound, training through the engine, export and evaluation."""

import json
import shutil

import numpy as np
import pytest

from conftest import TINY_VAE, assert_equal_up_to_summation_order, model_weights, run_in_process, run_script, train
from test_bad_input import assert_refused
from training.cli import VAE_DEFAULTS
from training.run_dir import read_history


def test_analytic_kl_matches_monte_carlo():
    """KL(q || p) in closed form equals E_q[log q(z) - log p(z)] estimated from samples of q."""
    import tensorflow as tf

    from training.vae import gaussian_log_density, kl_to_standard_normal

    rng = np.random.default_rng(0)
    mean = tf.constant(rng.normal(size=(4, 3)), tf.float32)
    log_var = tf.constant(rng.normal(scale=0.7, size=(4, 3)), tf.float32)
    z = mean + tf.exp(0.5 * log_var) * tf.random.stateless_normal((200_000, 4, 3), seed=(1, 2))
    monte_carlo = tf.reduce_mean(gaussian_log_density(z, mean, log_var)
                                 - gaussian_log_density(z, tf.zeros_like(z), tf.zeros_like(z)), axis=0)
    analytic = kl_to_standard_normal(mean, log_var)
    np.testing.assert_allclose(monte_carlo.numpy(), analytic.numpy(), rtol=0.02, atol=0.01)


def test_importance_weighted_bound_starts_at_the_elbo_and_grows_with_k(tiny_vae_run):
    import keras

    from datasets import mnist
    from evaluation.vae import importance_weighted_bound, log_weights
    from training.vae import to_unit_range

    encoder = keras.models.load_model(tiny_vae_run / "encoder.keras")
    decoder = keras.models.load_model(tiny_vae_run / "decoder.keras")
    images = to_unit_range(mnist.load("mnist-5k").test_images[:100])
    weights = log_weights(encoder, decoder, images, 400, seed=0)  # (K, images)
    elbo = weights.mean()
    # K = 1: the bound is one sample of log w, whose expectation is the ELBO.
    single = np.mean([importance_weighted_bound(weights[k:k + 1]).mean() for k in range(0, 400)])
    assert abs(single - elbo) < 1e-6 * abs(elbo)
    fresh_single = importance_weighted_bound(log_weights(encoder, decoder, images, 1, seed=7)).mean()
    assert abs(fresh_single - elbo) < 0.01 * abs(elbo)
    # It rises with K (Burda et al. 2016), averaged over images and over disjoint groups of samples.
    bounds = [np.mean([importance_weighted_bound(weights[g:g + k]).mean() for g in range(0, 400, k)])
              for k in (1, 10, 100, 400)]
    assert bounds == sorted(bounds) and bounds[-1] > bounds[0] + 0.5, bounds


def test_models_have_the_designed_shapes_and_survive_export(tmp_path):
    import keras

    from models import vae as vae_models

    images = np.random.default_rng(0).uniform(size=(5, 28, 28, 1)).astype("float32")
    for arch in vae_models.ARCHS:
        encoder, decoder = vae_models.build_pair(arch, latent_dim=3)
        mean, log_var = encoder(images)
        assert mean.shape == log_var.shape == (5, 3)
        logits = decoder(mean)
        assert logits.shape == (5, 28, 28, 1)
        z = vae_models.Sampling(seed=1)(mean, log_var)
        assert z.shape == (5, 3)
        decoder.save(tmp_path / f"{arch}.keras")
        loaded = keras.models.load_model(tmp_path / f"{arch}.keras")
        np.testing.assert_allclose(np.asarray(loaded(mean)), np.asarray(logits), rtol=1e-6, atol=1e-6)


def test_a_short_training_lowers_the_test_neg_elbo_far_below_its_start(tmp_path):
    import tensorflow as tf

    from datasets import mnist
    from training import distribute
    from training.cli import parse_args
    from training.vae import VaeTask

    argv = ["vae", "--data", "mnist-5k", "--latent-dim", "20", "--epochs", "2", "--seed", "1", "--quiet"]
    # The untrained model of the same seed, measured as the engine measures the held-out split.
    distribute.make_deterministic(1)
    task = VaeTask(vars(parse_args(argv)), mnist.load("mnist-5k"), tf.distribute.get_strategy())
    sums = [task.held_out_step(batch) for batch in task.held_out_dataset()]
    start = sum(float(s["neg_elbo"]) for s in sums) / sum(float(s["count"]) for s in sums)
    assert start > 500  # about 784 ln 2 = 543 nats: every pixel a coin flip

    train(*argv, "--run-dir", tmp_path / "run")
    history = read_history(tmp_path / "run")
    assert history[-1]["test_neg_elbo"] < 200 < 0.4 * start
    assert history[-1]["test_neg_elbo"] == pytest.approx(history[-1]["test_reconstruction"] + history[-1]["test_kl"])


def test_resume_and_two_replicas_equal_one_uninterrupted_run(tiny_vae_run, tmp_path):
    """KL warm-up and the cosine schedule are functions of the checkpointed step count; the split of a
    batch over replicas changes nothing. tiny_vae_run is the first 2 of 4 epochs."""
    full = tmp_path / "four"
    train(*TINY_VAE, "--epochs", 4, "--run-dir", full)
    half = tmp_path / "half"
    shutil.copytree(tiny_vae_run, half)
    train(*TINY_VAE, "--epochs", 4, "--resume", "--run-dir", half)
    two = tmp_path / "two"
    train(*TINY_VAE, "--epochs", 4, "--cpu-replicas", 2, "--run-dir", two)
    for name in ("encoder.keras", "decoder.keras"):
        for a, b in zip(model_weights(full / name), model_weights(half / name)):
            np.testing.assert_array_equal(a, b)
        # Seen here: 0.03% of the weights beyond 1e-5, the largest difference 1.2e-3 (the step is 3e-3).
        assert_equal_up_to_summation_order(model_weights(two / name), model_weights(full / name),
                                           VAE_DEFAULTS["learning_rate"], steps=24)
    columns = ("neg_elbo", "kl", "test_neg_elbo", "test_kl")
    for a, b in zip(read_history(full), read_history(two)):
        np.testing.assert_allclose([a[c] for c in columns], [b[c] for c in columns], rtol=1e-4)


def test_evaluate_writes_metrics_and_every_figure(tiny_vae_run):
    result = run_script("evaluate.py", tiny_vae_run, "--iw-samples", 20)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "a finished vae run" in result.stdout
    metrics = json.loads((tiny_vae_run / "metrics.json").read_text())
    assert metrics["model"] == "vae" and metrics["iw_samples"] == 20 and metrics["latent_dim"] == 2
    assert metrics["test_neg_elbo"] == pytest.approx(metrics["test_reconstruction"] + metrics["test_kl"])
    # log p(x) >= the importance-weighted bound >= the ELBO, so -log p(x) estimates sit below -ELBO.
    assert 0 < metrics["test_nll_importance_weighted"] <= metrics["test_neg_elbo"]
    for name in ("reconstructions", "prior_samples", "latent_manifold", "latent_space", "interpolation",
                 "losses", "samples"):
        path = tiny_vae_run / "figures" / (name + (".gif" if name == "samples" else ".png"))
        assert path.stat().st_size > 1000, path


def test_latent_space_beyond_two_dimensions_is_projected(tmp_path):
    from evaluation.vae import plot_latent_space

    means = np.random.default_rng(0).normal(size=(300, 5))
    plot_latent_space(means, np.arange(300) % 10, tmp_path / "space.png")
    assert (tmp_path / "space.png").stat().st_size > 1000


def test_evaluate_refuses_flags_of_another_model(tiny_vae_run):
    assert_refused(run_script("evaluate.py", tiny_vae_run, "--samples", 10), "--samples measures gan runs")
    assert_refused(run_script("evaluate.py", tiny_vae_run, "--iw-samples", 0),
                   "--iw-samples must be in [1, 10,000], got 0")


def test_mixed_precision_and_xla_steps_run_and_stay_finite():
    """The GPU paths, exercised on the CPU in-process: mixed_float16 with loss scaling (float32 heads and
    logits), and the step compiled with XLA (--jit)."""
    import keras
    import tensorflow as tf

    from datasets import mnist
    from training import loop
    from training.cli import parse_args, settle_run_length
    from training.vae import VaeTask

    settings = vars(parse_args(["vae", "--latent-dim", "4", "--batch-size", "32", "--steps-per-epoch", "3",
                                "--kl-warmup", "1"]))
    strategy = tf.distribute.get_strategy()
    data = mnist.load("mnist-5k")
    settle_run_length(settings, data)
    for mixed, jit in ((True, False), (False, True)):
        keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
        try:
            task = VaeTask(settings, data, strategy, mixed_precision=mixed)
            assert isinstance(task.optimizer, keras.optimizers.LossScaleOptimizer) == mixed
            run_steps = loop.make_multi_step(task, strategy, jit=jit, trackers=loop.make_trackers(task, strategy))
            means = run_steps(iter(task.train_dataset(epoch=0)), tf.constant(3))
            assert all(np.isfinite(float(value)) for value in means.values()), means
            assert task.encoder.output[0].dtype == "float32" and task.decoder.output.dtype == "float32"
        finally:
            keras.mixed_precision.set_global_policy("float32")


def test_generate_writes_a_grid_of_new_digits(tiny_vae_run, tmp_path, capsys):
    from PIL import Image

    import generate

    out = tmp_path / "digits.png"
    result = run_script("generate.py", tiny_vae_run, "--n", 12, "--out", out, "--seed", 4)
    assert result.returncode == 0, result.stderr[-2000:]
    first = out.read_bytes()
    assert Image.open(out).size == (3 * (10 * 30 + 2), 3 * (2 * 30 + 2))  # 10 columns, 2 rows, 3x enlarged
    # Again, in this process: the same seed, the same digits.
    again = run_in_process(generate.main, tiny_vae_run, "--n", 12, "--out", out, "--seed", 4, capsys=capsys)
    assert again.returncode == 0, again.stderr[-2000:]
    assert out.read_bytes() == first
    for flags, expected in ((["--out", tmp_path / "x.jpg"], "must name a .png file"),
                            (["--out", tmp_path / "no" / "x.png"], "does not exist"),
                            (["--length", 5], "--length is for lstm and transformer runs"),
                            (["--jit"], "--jit is for lstm and transformer runs")):
        assert_refused(run_in_process(generate.main, tiny_vae_run, *flags, capsys=capsys), expected)


def test_binarize_draws_zero_one_pixels_with_the_grey_level_as_probability_and_a_seed():
    import tensorflow as tf

    from datasets import mnist
    from datasets.pipeline import keyed_bernoulli
    from training.vae import fixed_inputs, to_unit_range

    images = mnist.load("mnist-5k").test_images[:200]
    grey = to_unit_range(images)
    first = keyed_bernoulli(grey, 5, 7).numpy()
    assert set(np.unique(first)) == {0.0, 1.0}
    np.testing.assert_array_equal(first, keyed_bernoulli(grey, 5, 7).numpy())  # the same key, the same pixels
    assert not np.array_equal(first, keyed_bernoulli(grey, 5, 8).numpy())  # the next step: a fresh draw
    assert not np.array_equal(first, keyed_bernoulli(grey, 6, 7).numpy())
    # Black stays 0, white stays 1, and over 1,000 draws each pixel is 1 about as often as its grey level
    # (a pixel's share has a standard deviation of at most 0.016).
    grey = grey.numpy()
    assert first[grey == 0].max() == 0 and first[grey == 1].min() == 1
    share = keyed_bernoulli(tf.broadcast_to(grey[:10], (1000, 10, 28, 28, 1)), 5, 7).numpy().mean(axis=0)
    assert np.abs(share - grey[:10]).max() < 0.1 and abs((share - grey[:10]).mean()) < 0.002
    # The held-out split's binarisation is one, whatever the run's seed; without --binarize, grey levels.
    np.testing.assert_array_equal(fixed_inputs(images, True).numpy(), fixed_inputs(images, True).numpy())
    assert set(np.unique(fixed_inputs(images, True).numpy())) == {0.0, 1.0}
    np.testing.assert_array_equal(fixed_inputs(images, False).numpy(), grey)


def test_a_short_binarized_training_lowers_the_held_out_loss_and_evaluate_measures_binary_digits(tmp_path):
    """--binarize: 0/1 training batches drawn afresh each step, a fixed 0/1 held-out split, the flag in
    config.json, and evaluate.py measuring the same 0/1 digits the run's held-out loss did."""
    import keras
    import tensorflow as tf

    from datasets import mnist
    from evaluation import vae as vae_evaluation
    from training import distribute
    from training.cli import parse_args, settle_run_length
    from training.vae import VaeTask, fixed_inputs

    argv = [*TINY_VAE, "--binarize", "--latent-dim", "8", "--epochs", "2", "--steps-per-epoch", "25"]
    data = mnist.load("mnist-5k")
    distribute.make_deterministic(3)
    task = VaeTask(settle_run_length(vars(parse_args(argv)), data), data, tf.distribute.get_strategy())
    (step, (images, _)), = task.train_dataset(epoch=0).take(1).enumerate()
    again, = [batch for batch, _ in task.train_dataset(epoch=0).take(1)]
    assert set(np.unique(images.numpy())) == {0.0, 1.0}
    np.testing.assert_array_equal(images.numpy(), again.numpy())  # keyed by (seed, step): reproducible
    sums = [task.held_out_step(batch) for batch in task.held_out_dataset()]
    start = sum(float(s["neg_elbo"]) for s in sums) / sum(float(s["count"]) for s in sums)

    run = tmp_path / "binarized"
    train(*argv, "--run-dir", run)
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["binarize"] is True and config["settings_from"]["binarize"] == "flag"
    held_out = [row["test_neg_elbo"] for row in read_history(run)]
    assert held_out[-1] < 0.6 * start, (start, held_out)

    metrics = vae_evaluation.evaluate(str(run), config, data, iw_samples=5, seed=0)
    assert metrics["binarize"] is True and "binarised" in metrics["likelihood"]
    assert 0 < metrics["test_nll_importance_weighted"] <= metrics["test_neg_elbo"]
    assert metrics["test_neg_elbo"] == pytest.approx(held_out[-1], rel=0.03)  # up to the draws of z
    # evaluate.py measured the fixed 0/1 test digits, the ones the held-out pass read, not the grey levels.
    # (Bernoulli cross-entropy is linear in x, so the two NLLs are close in size: compare them exactly.)
    encoder, decoder = (keras.models.load_model(run / name) for name in ("encoder.keras", "decoder.keras"))
    nll = {binarize: -vae_evaluation.importance_weighted_bound(vae_evaluation.log_weights(
        encoder, decoder, fixed_inputs(data.test_images, binarize), 5, 0)).mean() for binarize in (False, True)}
    assert metrics["test_nll_importance_weighted"] == pytest.approx(nll[True], rel=1e-6)
    assert abs(nll[True] - nll[False]) > 1e-3 * nll[True]
