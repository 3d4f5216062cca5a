"""An MNIST digit classifier that judges generated digits: which class each sample looks like, and how surely.

It is a small CNN trained on the training split of the run's own data source and cached under
outputs/classifiers/<source>.keras (with its held-out test accuracy beside it), so judging a run
never needs the network and never sees the test split during training.
"""

import os

import keras
import numpy as np

from datasets import mnist
from training import run_dir as run_files
from training.gan import to_model_range  # the classifier reads images as the GAN makes them, in [-1, 1]

CACHE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "outputs", "classifiers")
CONFIDENT = 0.9  # a sample counts as a recognisable digit when the top class has probability >= 0.9
EPOCHS = {"mnist-5k": 15, "mnist": 4}


def build_classifier():
    """Images (batch, 28, 28, 1) in [-1, 1] -> logits over the 10 digits."""
    return keras.Sequential([
        keras.Input(mnist.IMAGE_SHAPE),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(mnist.NUM_CLASSES),
    ], name="digit_classifier")


def load_or_train(data, cache_dir=CACHE_DIR):
    """Returns (classifier, test_accuracy) for `data`'s source, training and caching it the first time."""
    path = os.path.join(cache_dir, f"{data.source}.keras")
    info_path = os.path.join(cache_dir, f"{data.source}.json")
    if os.path.isfile(path) and os.path.isfile(info_path):
        return keras.models.load_model(path, safe_mode=True), run_files.read_json(info_path)["test_accuracy"]
    keras.utils.set_random_seed(0)
    classifier = build_classifier()
    classifier.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])
    classifier.fit(to_model_range(data.train_images), data.train_labels, epochs=EPOCHS[data.source],
                   batch_size=64, verbose=0)
    _, test_accuracy = classifier.evaluate(to_model_range(data.test_images), data.test_labels, verbose=0)
    os.makedirs(cache_dir, exist_ok=True)
    with run_files.atomic_path(path) as partial:
        classifier.save(partial)
    run_files.write_json(info_path, {"source": data.source, "test_accuracy": float(test_accuracy),
                                     "epochs": EPOCHS[data.source]})
    return classifier, float(test_accuracy)


def judge(classifier, images):
    """Class measures of images in [-1, 1]: confident fraction, class histogram, effective classes.

    effective classes = exp(entropy of the predicted-class histogram): 10 when every digit is
    equally common, 1 when every sample is the same digit (mode collapse).
    """
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(classifier(images, training=False)))
    histogram = np.bincount(probabilities.argmax(axis=1), minlength=mnist.NUM_CLASSES) / len(images)
    present = histogram[histogram > 0]
    return {
        "confident_fraction": float(np.mean(probabilities.max(axis=1) >= CONFIDENT)),
        "effective_classes": float(np.exp(-np.sum(present * np.log(present)))),
        "class_histogram": [round(float(share), 4) for share in histogram],
    }
