"""An MNIST digit classifier that judges generated digits, and the sample-quality measures made with it.

The classifier is a small CNN trained on the training split of the run's own data source and cached
under outputs/classifiers/<source>-v<VERSION>.keras (with its held-out test accuracy beside it), so
judging a run never needs the network and never sees the test split during training.

The measures borrow the formulas of the Inception-based ones but use this MNIST classifier instead of
Inception, as is usual for MNIST: its numbers compare runs of this project with each other, not with
published FID or Inception Score values.

- frechet_distance: FID's formula on the classifier's penultimate features ("classifier FID")
- classifier_score: the Inception Score's formula on the classifier's class probabilities
- effective_classes and confident_fraction: how many digits the samples cover, and how recognisably
"""

import os
import sys
import time
import warnings

import keras
import numpy as np
import scipy.linalg
import scipy.special

from datasets import mnist
from training import commands, distribute
from training import run_dir as run_files
from training.gan import to_model_range  # the classifier reads images as the GAN makes them, in [-1, 1]

CACHE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "outputs", "classifiers")
# Part of the cache's key: raise it whenever build_classifier or the training recipe changes, so a
# cached classifier of another recipe is never loaded.
VERSION = 2
CONFIDENT = 0.9  # a sample counts as a recognisable digit when the top class has probability >= 0.9
EPOCHS = {"mnist-5k": 20, "mnist": 5}  # about 1,260 and 4,700 steps of batch 64
# For quick checks (the tests set it): train for this many epochs instead, cached under a name of its own so it
# never stands in for the recipe's classifier. Its measures are not comparable with the recipe's.
EPOCHS_ENV = "DIGIT_CLASSIFIER_EPOCHS"
BATCH_SIZE = 64
LEARNING_RATE = 1e-3  # Adam's, decayed to 0 on a cosine over the run
SEED = 0
FEATURES = "features"  # the penultimate layer, whose outputs the Fréchet distance compares
FEATURE_UNITS = 128
PREDICT_BATCH = 500


def _conv_block(x, filters):
    """3x3 convolution, batch norm, ReLU, 2x2 max pooling: halves the side."""
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    # momentum 0.9: with 63 steps an epoch on the 5k sample, 0.99 leaves the running statistics behind.
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    return keras.layers.MaxPooling2D()(x)


def build_classifier():
    """Images (batch, 28, 28, 1) in [-1, 1] -> logits (batch, 10); layer "features" gives (batch, 128).

    Small random shifts and rotations of the training digits (active only in training) stand in for
    more data: on the 4,000 digits of the 5k sample they are worth about 1% of test accuracy.
    """
    images = keras.Input(mnist.IMAGE_SHAPE, name="images")
    x = keras.layers.RandomRotation(0.05, fill_mode="constant", fill_value=-1.0)(images)  # +-18 degrees
    x = keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", fill_value=-1.0)(x)  # +-2.8 pixels
    x = _conv_block(x, 32)  # 14 x 14
    x = _conv_block(x, 64)  # 7 x 7
    x = _conv_block(x, 128)  # 3 x 3
    assert x.shape[1:] == (3, 3, 128)
    x = keras.layers.Dropout(0.2)(keras.layers.Flatten()(x))
    x = keras.layers.Dense(FEATURE_UNITS, use_bias=False)(x)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    features = keras.layers.ReLU(name=FEATURES)(x)
    logits = keras.layers.Dense(mnist.NUM_CLASSES)(keras.layers.Dropout(0.4)(features))
    return keras.Model(images, logits, name="digit_classifier")


def epochs_for(source):
    """The recipe's epochs for `source`, or DIGIT_CLASSIFIER_EPOCHS' when that is set."""
    override = os.environ.get(EPOCHS_ENV)
    if not override:
        return EPOCHS[source]
    if not override.isdigit() or int(override) < 1:
        commands.fail(f"{EPOCHS_ENV} must be a whole number of epochs, 1 or more, got {override!r}")
    return int(override)


def cache_stem(source, cache_dir=CACHE_DIR):
    """The cached classifier's path without its suffix: <source>-v<VERSION>, plus -<N>epochs when not the recipe's."""
    epochs = epochs_for(source)
    return os.path.join(cache_dir, f"{source}-v{VERSION}" + ("" if epochs == EPOCHS[source] else f"-{epochs}epochs"))


def train_classifier(data, epochs=None):
    """Returns (classifier, info) trained on `data`'s training split, the same weights for the same data.

    epochs: default the recipe's (EPOCHS). info: the source, VERSION, epochs, training seconds and the accuracy
    on the held-out test split.
    """
    epochs = epochs or EPOCHS[data.source]
    distribute.make_deterministic(SEED)  # seeds weights, shuffles and augmentation; deterministic ops
    classifier = build_classifier()
    steps = epochs * -(-len(data.train_images) // BATCH_SIZE)
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps))
    classifier.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])
    started = time.perf_counter()
    classifier.fit(to_model_range(data.train_images), data.train_labels, epochs=epochs,
                   batch_size=BATCH_SIZE, verbose=0)
    seconds = time.perf_counter() - started
    _, test_accuracy = classifier.evaluate(to_model_range(data.test_images), data.test_labels,
                                           batch_size=PREDICT_BATCH, verbose=0)
    return classifier, {"source": data.source, "version": VERSION, "epochs": epochs,
                        "training_seconds": round(seconds, 1), "test_accuracy": float(test_accuracy)}


def _load_cached(stem):
    """The cached (classifier, info) at `stem`, or None when there is none or it cannot be loaded."""
    if not (os.path.isfile(stem + ".keras") and os.path.isfile(stem + ".json")):
        return None
    try:
        return keras.models.load_model(stem + ".keras", safe_mode=True), run_files.read_json(stem + ".json")
    except Exception as exc:  # noqa: BLE001 - a damaged cache is only a cache: train the classifier again
        print(f"warning: the cached classifier {stem}.keras cannot be loaded ({commands.one_line(exc)}); "
              "training it again", file=sys.stderr)
        return None


def load_or_train(data, cache_dir=CACHE_DIR):
    """Returns (classifier, info) for `data`'s source (see train_classifier), training and caching it at first.

    Evaluations started together (the tests' two processes, reproduce.py --jobs 2) train it once: the
    first takes the cache's lock and trains, the others wait for it and then load what it saved.
    """
    epochs, stem = epochs_for(data.source), cache_stem(data.source, cache_dir)
    cached = _load_cached(stem)
    if cached is not None:
        return cached
    os.makedirs(cache_dir, exist_ok=True)
    with run_files.exclusive(stem + ".lock"):  # without file locks (Windows) each process may train it
        cached = _load_cached(stem)  # another process may have trained it while this one waited
        if cached is not None:
            return cached
        print(f"training the digit classifier on {data.source}'s training split ({epochs} epochs; "
              f"once, cached in {cache_dir})")
        classifier, info = train_classifier(data, epochs)
        with run_files.atomic_path(stem + ".keras") as partial:
            classifier.save(partial)
        run_files.write_json(stem + ".json", info)  # written last: its presence means the model is complete
    return classifier, info


def with_features(classifier):
    """The classifier with two outputs: images -> (logits (batch, 10), penultimate features (batch, 128))."""
    return keras.Model(classifier.inputs, [classifier.outputs[0], classifier.get_layer(FEATURES).output])


def predict(two_headed_classifier, images):
    """(probabilities (n, 10), features (n, 128)), float64, of images (n, 28, 28, 1) in [-1, 1].

    `two_headed_classifier` is with_features(classifier), made once: each new model traces anew.
    """
    logits, features = two_headed_classifier.predict(np.asarray(images), batch_size=PREDICT_BATCH, verbose=0)
    return scipy.special.softmax(logits.astype(np.float64), axis=1), features.astype(np.float64)


def effective_classes(histogram):
    """exp(entropy) of a class histogram (shares summing to 1): 10 when every digit is equally common,
    1 when every sample is the same digit (mode collapse)."""
    return float(np.exp(scipy.special.entr(np.asarray(histogram, dtype=np.float64)).sum()))


def classifier_score(probabilities):
    """The Inception Score's formula with the digit classifier: exp(E_x KL(p(y|x) || p(y))).

    probabilities (n, 10) are p(y|x) per sample and p(y) is their mean. 10 when the samples are
    confidently classified and spread evenly over the 10 digits, 1 when they are all one digit (or
    when every sample is equally unsure).
    """
    marginal = probabilities.mean(axis=0, keepdims=True)
    kl_per_sample = scipy.special.rel_entr(probabilities, marginal).sum(axis=1)  # p log(p / p(y)), 0 log 0 = 0
    return float(np.exp(kl_per_sample.mean()))


def frechet_distance(features_a, features_b):
    """The Fréchet distance between Gaussians fitted to two sets of features (n_a, d) and (n_b, d):

        ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))

    FID's formula (Heusel et al. 2017); here on the digit classifier's features, not Inception's.
    """
    mu_a, mu_b = features_a.mean(axis=0), features_b.mean(axis=0)
    sigma_a, sigma_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
    with warnings.catch_warnings():
        # As the reference FID code does: a singular product (a collapsed generator whose samples all have
        # the same features, fewer samples than dimensions) gets a tiny ridge added to both covariances.
        warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
        try:
            covariance_root = scipy.linalg.sqrtm(sigma_a @ sigma_b)
            singular = not np.isfinite(covariance_root).all()
        except scipy.linalg.LinAlgWarning:
            singular = True
        if singular:
            warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
            ridge = np.eye(len(sigma_a)) * 1e-6
            covariance_root = scipy.linalg.sqrtm((sigma_a + ridge) @ (sigma_b + ridge))
    if np.iscomplexobj(covariance_root):
        # The exact root of a product of two covariances has real eigenvalues; rounding leaves tiny
        # imaginary parts, which are dropped. A large one means the covariances are not what they should be.
        largest = np.max(np.abs(np.diagonal(covariance_root).imag))
        if largest > 1e-3:
            raise ValueError(f"the covariance product's square root has an imaginary part of {largest:.3g}")
        covariance_root = covariance_root.real
    mean_term = np.sum((mu_a - mu_b) ** 2)
    return float(mean_term + np.trace(sigma_a) + np.trace(sigma_b) - 2 * np.trace(covariance_root))


def judge(probabilities):
    """Class measures of samples from their p(y|x) (n, 10): confident fraction, effective classes,
    classifier score and the histogram of predicted classes."""
    histogram = np.bincount(probabilities.argmax(axis=1), minlength=mnist.NUM_CLASSES) / len(probabilities)
    return {
        "confident_fraction": float(np.mean(probabilities.max(axis=1) >= CONFIDENT)),
        "effective_classes": effective_classes(histogram),
        "classifier_score": classifier_score(probabilities),
        "class_histogram": [round(float(share), 4) for share in histogram],
    }
