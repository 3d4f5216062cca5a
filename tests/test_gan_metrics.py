"""The GAN's sample-quality measures (classifier FID and its floor, classifier score, effective classes),
the generator snapshots they are measured on over training, and evaluate.py's --over-training."""

import json
import math
import os
import shutil

import numpy as np
import pytest

from conftest import run_script
from test_bad_input import assert_refused

NEW_KEYS = ("fid_classifier_features", "fid_floor_real_train_vs_test", "fid_ratio_to_floor", "classifier_score",
            "effective_classes", "confident_fraction", "fid_floor_mean", "fid_floor_std",
            "memorization_median_distance_samples", "memorization_median_distance_held_out",
            "memorization_distance_ratio", "memorization_share_below_held_out_p1")


def test_frechet_distance_is_zero_for_one_set_and_grows_with_shift_and_noise():
    from evaluation.classifier import frechet_distance

    features = np.random.default_rng(0).normal(size=(2000, 16))
    assert abs(frechet_distance(features, features)) < 1e-6
    # A shift s of every feature moves only the mean: the distance is exactly 16 s^2.
    shifted = [frechet_distance(features, features + shift) for shift in (0.1, 0.5, 1.0, 2.0)]
    np.testing.assert_allclose(shifted, [16 * shift**2 for shift in (0.1, 0.5, 1.0, 2.0)], rtol=1e-6)
    noise = np.random.default_rng(1).normal(size=features.shape)
    noised = [frechet_distance(features, features + scale * noise) for scale in (0.1, 0.5, 1.0, 2.0)]
    assert 0 < noised[0] and all(a < b for a, b in zip(noised, noised[1:])), noised


def test_frechet_distance_of_a_collapsed_set_is_finite():
    """Samples that all give the same features make a singular covariance, as a collapsed generator does."""
    from evaluation.classifier import frechet_distance

    features = np.random.default_rng(0).normal(size=(500, 16))
    collapsed = np.ones((500, 16))
    # mu differs by (1 - mean) per feature, and Tr(S_a + 0 - 2 * 0) is the variance left over.
    expected = np.sum((features.mean(axis=0) - 1) ** 2) + np.trace(np.cov(features, rowvar=False))
    assert frechet_distance(collapsed, features) == pytest.approx(expected, rel=1e-3)


def test_nearest_distances_are_those_of_every_pair():
    from evaluation.gan import DISTANCE_ROWS, nearest_distances

    rng = np.random.default_rng(0)
    images, references = rng.uniform(size=(DISTANCE_ROWS + 7, 6, 6, 1)), rng.uniform(size=(30, 6, 6, 1))
    pairs = np.linalg.norm(images.reshape(-1, 1, 36) - references.reshape(1, -1, 36), axis=-1)
    np.testing.assert_allclose(nearest_distances(images, references), pairs.min(axis=1), rtol=1e-4)
    assert np.all(nearest_distances(references, references) == 0)  # each its own nearest, at distance 0


def test_memorization_flags_copies_of_training_digits_and_not_unseen_real_ones():
    """On the 5k sample: a 'generator' that returns training digits (or them with a little noise) is flagged,
    real digits it never saw are not."""
    from datasets import mnist
    from evaluation.gan import memorization

    data = mnist.load("mnist-5k")
    train, test = data.train_images / 255.0, data.test_images / 255.0
    held_out, unseen = test[::2], test[1::2]  # the test split is sorted by digit: 50 of each digit in each half
    ratio, share = "memorization_distance_ratio", "memorization_share_below_held_out_p1"
    copies = memorization(train[::8], train, held_out)
    assert copies[ratio] < 0.01 and copies[share] == 1.0, copies
    noise = np.random.default_rng(0).normal(scale=0.05, size=train[::8].shape)
    noisy_copies = memorization(np.clip(train[::8] + noise, 0, 1), train, held_out)
    assert noisy_copies[ratio] < 0.5 and noisy_copies[share] > 0.9, noisy_copies
    real = memorization(unseen, train, held_out)
    assert 0.9 < real[ratio] < 1.1 and real[share] < 0.05, real
    assert real["memorization_median_distance_held_out"] > 3  # digits differ by a few pixels' worth, not 0


def test_classifier_score_and_effective_classes_count_the_classes():
    from evaluation.classifier import classifier_score, effective_classes, judge

    confident_uniform = np.eye(10)[np.arange(1000) % 10]  # each sample sure of one digit, all digits equally
    one_digit = np.eye(10)[np.full(1000, 3)]
    unsure = np.full((1000, 10), 0.1)
    assert classifier_score(confident_uniform) == pytest.approx(10)
    assert classifier_score(one_digit) == pytest.approx(1)
    assert classifier_score(unsure) == pytest.approx(1)
    assert effective_classes(np.full(10, 0.1)) == pytest.approx(10)
    assert effective_classes(np.eye(10)[3]) == pytest.approx(1)
    measures = judge(confident_uniform)
    assert measures["effective_classes"] == pytest.approx(10) and measures["confident_fraction"] == 1.0
    assert judge(unsure)["confident_fraction"] == 0.0


def test_evaluations_started_together_train_the_classifier_once(tmp_path, capsys):
    """While one process trains the classifier (here a thread holding the cache's lock, saving an untrained
    one), another's load_or_train waits and loads what was saved instead of training a second copy."""
    import threading

    from datasets import mnist
    from evaluation import classifier as digit_classifier
    from training import run_dir as run_files

    if not run_files.FILE_LOCKS:
        pytest.skip("no file locks on this platform")
    data = mnist.load("mnist-5k")
    stem = digit_classifier.cache_stem("mnist-5k", str(tmp_path))
    locked, saved = threading.Event(), {"test_accuracy": 0.1, "source": "mnist-5k"}

    def trainer():
        with run_files.exclusive(stem + ".lock"):
            locked.set()
            digit_classifier.build_classifier().save(stem + ".keras")
            run_files.write_json(stem + ".json", saved)

    thread = threading.Thread(target=trainer)
    thread.start()
    locked.wait()
    classifier, info = digit_classifier.load_or_train(data, cache_dir=str(tmp_path))
    thread.join()
    assert info == saved and "training the digit classifier" not in capsys.readouterr().out
    assert classifier.name == "digit_classifier"


def test_the_classifier_s_epochs_can_be_set_for_quick_checks_and_name_its_cache(monkeypatch, capsys):
    from evaluation import classifier as digit_classifier

    env, version = digit_classifier.EPOCHS_ENV, digit_classifier.VERSION
    monkeypatch.setenv(env, "3")
    assert digit_classifier.epochs_for("mnist-5k") == 3
    assert digit_classifier.cache_stem("mnist-5k", "cache") == os.path.join("cache", f"mnist-5k-v{version}-3epochs")
    monkeypatch.setenv(env, "20")  # the recipe's own number: the recipe's classifier
    assert digit_classifier.cache_stem("mnist-5k", "cache") == os.path.join("cache", f"mnist-5k-v{version}")
    monkeypatch.delenv(env)
    assert digit_classifier.epochs_for("mnist") == 5 and digit_classifier.epochs_for("mnist-5k") == 20
    for bad in ("0", "two", "-1", "2.5"):
        monkeypatch.setenv(env, bad)
        with pytest.raises(SystemExit) as exit_info:
            digit_classifier.epochs_for("mnist-5k")
        assert exit_info.value.code == 2
        expected = f"error: {env} must be a whole number of epochs, 1 or more, got {bad!r}"
        assert capsys.readouterr().err.strip() == expected


def test_snapshot_schedule():
    from training.gan import is_snapshot_epoch

    def snapshots(epochs):
        return [epoch for epoch in range(1, epochs + 1) if is_snapshot_epoch(epoch, epochs)]

    assert snapshots(100) == list(range(5, 101, 5))
    assert snapshots(2) == [1, 2] and snapshots(30) == list(range(1, 31))
    assert snapshots(45) == list(range(2, 45, 2)) + [45]  # every 2nd epoch, and the last


def test_figure_schedule():
    from training.gan import is_figure_epoch

    def figure_epochs(epochs):
        return [epoch for epoch in range(1, epochs + 1) if is_figure_epoch(epoch, epochs)]

    assert figure_epochs(50) == list(range(1, 51))
    assert figure_epochs(500) == [1] + list(range(10, 501, 10))  # the first, every 10th and the last
    assert figure_epochs(101) == [1] + list(range(2, 101, 2)) + [101]


def test_evaluate_measures_quality_and_quality_over_training(tiny_gan_run):
    # 1,200 samples: more than the 1,000 test digits of the 5k sample, so all of those are compared.
    result = run_script("evaluate.py", tiny_gan_run, "--samples", 1200, "--over-training")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "not Inception" in result.stdout and "over training" in result.stdout
    metrics = json.loads((tiny_gan_run / "metrics.json").read_text())
    assert all(math.isfinite(metrics[name]) for name in NEW_KEYS)
    assert "not Inception" in metrics["fid_feature_space"]
    assert metrics["fid_generated_images"] == metrics["fid_real_train_images"] == 1200
    assert metrics["fid_test_images"] == 1000
    # Two epochs of 4 steps make blobs, far from real digits; real training digits are close to the test ones.
    assert 0 < metrics["fid_floor_real_train_vs_test"] < metrics["fid_classifier_features"]
    assert metrics["fid_ratio_to_floor"] == pytest.approx(
        metrics["fid_classifier_features"] / metrics["fid_floor_real_train_vs_test"])
    # The floor over 5 draws of 1,200 of the 4,000 training digits: the first is the floor, and they differ.
    floors = metrics["fid_floor_draws"]
    assert len(floors) == 5 and floors[0] == metrics["fid_floor_real_train_vs_test"] and len(set(floors)) == 5
    assert metrics["fid_floor_min"] == min(floors) < metrics["fid_floor_mean"] < max(floors) == metrics["fid_floor_max"]
    assert 0 < metrics["fid_floor_std"] < metrics["fid_floor_mean"]
    # Blobs copy no training digit: they are no closer to one than unseen real digits are.
    assert metrics["memorization_train_images"] == 4000 and metrics["memorization_held_out_images"] == 1000
    assert metrics["memorization_distance_ratio"] > 0.5 and metrics["memorization_share_below_held_out_p1"] < 0.1
    assert 1 <= metrics["classifier_score"] <= 10 and 1 <= metrics["effective_classes"] <= 10
    over_training = metrics["over_training"]
    assert over_training["epoch"] == [1, 2]
    # The last snapshot holds the exported generator's weights: the same samples, the same distance.
    assert over_training["fid_classifier_features"][-1] == pytest.approx(metrics["fid_classifier_features"])
    assert over_training["effective_classes"][-1] == pytest.approx(metrics["effective_classes"])
    for figure in ("class_histogram.png", "quality_over_training.png"):
        assert (tiny_gan_run / "figures" / figure).stat().st_size > 1000


def test_over_training_is_refused_without_snapshots_and_for_other_models(tiny_gan_run, tiny_vae_run, tmp_path):
    old_run = tmp_path / "before_snapshots"
    shutil.copytree(tiny_gan_run, old_run, ignore=shutil.ignore_patterns("checkpoints", "logs", "snapshots"))
    assert_refused(run_script("evaluate.py", old_run, "--over-training"), "no generator snapshots", "train")
    # The flag is refused as every model-specific flag is (an LSTM run goes the same way).
    assert_refused(run_script("evaluate.py", tiny_vae_run, "--over-training"),
                   f"--over-training measures gan runs; {tiny_vae_run} holds a vae run")
