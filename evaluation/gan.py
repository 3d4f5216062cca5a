"""Evaluating a trained GAN: new samples, how well its own discriminator tells them from held-out digits,
and their quality measured with the project's MNIST digit classifier (evaluation/classifier.py).

The quality measures are those of the Inception-based FID and Inception Score with that classifier in
Inception's place ("classifier FID", "classifier score"): comparable between runs of this project, not
with published numbers. FID is biased upward at small sample counts, so it is printed beside its floor:
the same distance between as many real training digits and the same test digits, and that floor's spread
over FLOOR_DRAWS draws of those training digits.

None of those measures would notice a generator that copies its training digits, so `memorization`
measures how close samples sit to their nearest training digit, beside how close unseen real digits do.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from datasets.mnist import NUM_CLASSES
from evaluation import classifier as digit_classifier
from evaluation.spread import spread
from models import gan as gan_models
from training import figures
from training import run_dir as run_files
from training.gan import GRID_SAMPLES, list_snapshots, to_model_range, to_unit_range

FID_FEATURE_SPACE = (f"the project's MNIST digit classifier, penultimate layer ({digit_classifier.FEATURE_UNITS} "
                     "features); not Inception")
CLASS_HISTOGRAM = "class_histogram.png"
QUALITY_OVER_TRAINING = "quality_over_training.png"
FID_KEY = "fid_classifier_features"  # the metric's name in metrics.json
FLOOR_DRAWS = 5  # draws of real training digits whose FID to the test digits gives the floor's spread
# memorization: a sample "too close" to a training digit is nearer to one than all but this percentage of the
# held-out digits are (the p1 of memorization_share_below_held_out_p1).
COPY_PERCENTILE = 1
DISTANCE_ROWS = 500  # samples per matrix product: 500 x 60,000 float32 distances (full MNIST), 120 MB at a time
DISTANCE_SPACE = "L2 in pixel space, grey levels in [0, 1] (at most 28)"


@dataclasses.dataclass(frozen=True)
class FidReference:
    """What generated samples' classifier FID is measured against, and what real digits score (the floor)."""

    test_features: np.ndarray  # (test images compared, 128) classifier features of held-out digits
    compared: int  # generated samples (and real training digits, for the floor) compared with them
    floor_draws: tuple  # the classifier FID of `compared` real training digits against the same test digits,
    #                     one per draw of those training digits (the first is `floor`)

    @property
    def floor(self):
        return self.floor_draws[0]


def random_subset(images, count, seed):
    """min(count, len(images)) of `images`, drawn without replacement, keyed by `seed`.

    Random, not the first `count`: the splits of the 5k sample are sorted by digit.
    """
    return images[np.sort(np.random.default_rng(seed).permutation(len(images))[:count])]


def generate(generator, num_samples, seed):
    """(num_samples, 28, 28, 1) images in [-1, 1] for noise keyed by `seed`: the same z for every generator."""
    noise = tf.random.stateless_normal((num_samples, generator.input_shape[-1]), seed=(seed, 0))
    return generator.predict(noise, batch_size=digit_classifier.PREDICT_BATCH, verbose=0)


def fid_reference(two_headed_classifier, data, num_samples, seed, floor_draws=FLOOR_DRAWS):
    """The FidReference for `num_samples` generated samples: up to as many test digits (all of them when
    there are fewer), and as many training digits as samples for the floor, so both sides of the floor
    have the sizes of the generated FID's sides. The floor is measured for `floor_draws` random draws of
    the training digits (the first keyed by `seed` alone, as before the spread was measured), against the
    same test digits, as the generated samples are."""
    test_images = random_subset(data.test_images, num_samples, seed)
    _, test_features = digit_classifier.predict(two_headed_classifier, to_model_range(test_images))
    floors = []
    for draw in range(floor_draws):
        train_images = random_subset(data.train_images, num_samples, seed if draw == 0 else [seed, draw])
        _, train_features = digit_classifier.predict(two_headed_classifier, to_model_range(train_images))
        floors.append(digit_classifier.frechet_distance(train_features, test_features))
    return FidReference(test_features, len(train_images), tuple(floors))


def nearest_distances(images, references):
    """Each image's L2 distance to its nearest reference image, both arrays of grey levels in [0, 1].

    ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b: the a.b of DISTANCE_ROWS images against every reference is one
    matrix product, so no loop runs over pairs. That difference of large terms loses the digits of small
    distances (a copy's 0 comes out near 1e-3), so it only picks each image's nearest reference, and the
    distance to that one is then computed directly: a copy's is exactly 0.
    """
    images = np.asarray(images, np.float32).reshape(len(images), -1)
    references = np.asarray(references, np.float32).reshape(len(references), -1)
    reference_norms = np.sum(references ** 2, axis=1)
    nearest = []
    for start in range(0, len(images), DISTANCE_ROWS):
        rows = images[start:start + DISTANCE_ROWS]
        # ||a||^2 is the same for every b of a row: the nearest b minimises ||b||^2 - 2 a.b.
        nearest.append(np.argmin(reference_norms[None, :] - 2.0 * rows @ references.T, axis=1))
    return np.linalg.norm(images - references[np.concatenate(nearest)], axis=1)


def memorization(samples, train_images, held_out_images):
    """How close samples are to the training digits, measured against how close unseen real digits are.

    All in [0, 1]. A generator that copies training digits puts its samples at distance ~0 from one: the ratio
    of the median distances falls towards 0 and most samples are closer than COPY_PERCENTILE% of the held-out
    digits are; real digits the model never saw give a ratio near 1 and a share near COPY_PERCENTILE%.
    """
    sample_distances = nearest_distances(samples, train_images)
    held_out_distances = nearest_distances(held_out_images, train_images)
    threshold = np.percentile(held_out_distances, COPY_PERCENTILE)
    return {"memorization_distance": DISTANCE_SPACE,
            "memorization_train_images": int(len(train_images)),
            "memorization_held_out_images": int(len(held_out_images)),
            "memorization_median_distance_samples": float(np.median(sample_distances)),
            "memorization_median_distance_held_out": float(np.median(held_out_distances)),
            "memorization_distance_ratio": float(np.median(sample_distances) / np.median(held_out_distances)),
            "memorization_share_below_held_out_p1": float(np.mean(sample_distances < threshold))}


def sample_quality(two_headed_classifier, images, reference):
    """{FID_KEY: classifier FID of the images against reference's test digits, **classifier.judge(...)}."""
    probabilities, features = digit_classifier.predict(two_headed_classifier, images)
    fid = digit_classifier.frechet_distance(features[:reference.compared], reference.test_features)
    return {FID_KEY: fid, **digit_classifier.judge(probabilities)}


def quality_over_training(run_dir, config, two_headed_classifier, reference, num_samples, seed):
    """{"epoch": [...], FID_KEY: [...], "effective_classes": [...]} of each generator snapshot the run wrote
    (see training/gan.py), all from the same noise; draws figures/quality_over_training.png."""
    settings = config["settings"]
    generator, _ = gan_models.build_pair(settings["arch"], settings["noise_dim"], settings.get("info_code", 0))
    rows = []
    for epoch, path in list_snapshots(run_dir):
        try:
            generator.load_weights(path)
        except Exception as exc:  # noqa: BLE001 - a truncated file, another architecture's weights: all fail here
            reason = " ".join(str(exc).split())[:160] or type(exc).__name__
            raise run_files.RunDirError(f"{path} cannot be loaded ({reason}); delete it to measure the other "
                                        "snapshots") from exc
        quality = sample_quality(two_headed_classifier, generate(generator, num_samples, seed), reference)
        rows.append({"epoch": epoch, FID_KEY: quality[FID_KEY], "effective_classes": quality["effective_classes"]})
    fid_panel = "classifier FID against the test digits (log scale)"
    classes_panel = "effective number of digit classes"
    figures.plot_curves(rows, [(fid_panel, [FID_KEY]), (classes_panel, ["effective_classes"])],
                        os.path.join(run_dir, run_files.FIGURES, QUALITY_OVER_TRAINING),
                        title=f"sample quality over training: {num_samples} samples of each generator snapshot\n"
                              f"FID on the features of {FID_FEATURE_SPACE}",
                        labels={FID_KEY: "generated vs test", "effective_classes": "generated"},
                        reference_lines={fid_panel: [(reference.floor, "floor: real training vs test")],
                                         classes_panel: [(NUM_CLASSES, "all 10 digits equally")]},
                        axis_settings={fid_panel: {"yscale": "log"},
                                       classes_panel: {"ylim": (0, NUM_CLASSES + 0.5)}})
    return {name: [row[name] for row in rows] for name in rows[0]}


def save_class_histogram(quality, path, num_samples):
    """A bar chart of the share of samples the classifier puts in each digit class."""
    title = (f"digit classes of {num_samples} samples: {quality['effective_classes']:.2f} effective classes, "
             f"{quality['confident_fraction']:.1%} confident (p >= {digit_classifier.CONFIDENT})")
    figures.save_bars(range(NUM_CLASSES), quality["class_histogram"], path, title,
                      ("digit the classifier sees", "share of samples"),
                      reference_line=(1 / NUM_CLASSES, "uniform"))


def evaluate(run_dir, config, data, num_samples, seed, over_training=False):
    """Returns a metrics dict and writes figures/evaluation_samples.png and figures/class_histogram.png
    (and, with `over_training`, figures/quality_over_training.png)."""
    generator = run_files.load_exported_model(run_dir, config, "generator.keras")
    discriminator = run_files.load_exported_model(run_dir, config, "discriminator.keras")
    generated = generate(generator, num_samples, seed)
    held_out = random_subset(data.test_images, num_samples, seed)
    real = to_model_range(held_out)
    real_logits = discriminator(real, training=False).numpy()[:, 0]
    generated_logits = discriminator(generated, training=False).numpy()[:, 0]
    classifier, classifier_info = digit_classifier.load_or_train(data)
    two_headed_classifier = digit_classifier.with_features(classifier)
    reference = fid_reference(two_headed_classifier, data, num_samples, seed)
    quality = sample_quality(two_headed_classifier, generated, reference)
    figures.save_grid(to_unit_range(generated[:GRID_SAMPLES]),
                      os.path.join(run_dir, run_files.FIGURES, "evaluation_samples.png"))
    save_class_histogram(quality, os.path.join(run_dir, run_files.FIGURES, CLASS_HISTOGRAM), num_samples)
    metrics = {
        "model": "gan",
        "arch": config["settings"]["arch"],
        "data": data.source,
        "samples": int(num_samples),
        "test_images": int(len(real)),
        "seed": seed,
        # D's final verdicts: near 0.5 means G's samples fool it as often as not.
        "discriminator_accuracy_on_test_images": float(np.mean(real_logits > 0)),
        "discriminator_accuracy_on_samples": float(np.mean(generated_logits < 0)),
        "mean_d_of_test_images": float(np.mean(tf.sigmoid(real_logits))),
        "mean_d_of_samples": float(np.mean(tf.sigmoid(generated_logits))),
        # What a digit classifier trained on the same source's training split makes of the samples.
        "classifier_test_accuracy": classifier_info["test_accuracy"],
        "classifier_epochs": classifier_info["epochs"],
        "fid_feature_space": FID_FEATURE_SPACE,
        FID_KEY: quality[FID_KEY],
        "fid_floor_real_train_vs_test": reference.floor,
        "fid_ratio_to_floor": quality[FID_KEY] / reference.floor,
        # The floor is one draw of training digits; over FLOOR_DRAWS draws (the first that one) it spreads so.
        "fid_floor_draws": list(reference.floor_draws),
        **{f"fid_floor_{name}": value for name, value in spread(reference.floor_draws).items() if name != "n"},
        "fid_generated_images": reference.compared,
        "fid_real_train_images": reference.compared,
        "fid_test_images": len(reference.test_features),
        **{name: value for name, value in quality.items() if name != FID_KEY},
        # Copies of training digits would pass every measure above: the distance to the nearest training digit.
        **memorization(to_unit_range(generated), data.train_images.astype(np.float32) / 255,
                       held_out.astype(np.float32) / 255),
    }
    if over_training:
        metrics["over_training"] = quality_over_training(run_dir, config, two_headed_classifier, reference,
                                                         num_samples, seed)
    return metrics
