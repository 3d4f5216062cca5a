"""Evaluating a trained GAN: new samples, and how well its own discriminator tells them from held-out digits."""

import os

import keras
import numpy as np
import tensorflow as tf

from evaluation import classifier as digit_classifier
from training import figures
from training import run_dir as run_files
from training.gan import GRID_SAMPLES, to_model_range, to_unit_range


def evaluate(run_dir, config, data, num_samples, seed):
    """Returns a metrics dict and writes figures/evaluation_samples.png."""
    # safe_mode (the default) refuses to deserialise Python lambdas: loading never runs the file's code.
    generator = keras.models.load_model(os.path.join(run_dir, "generator.keras"), safe_mode=True)
    discriminator = keras.models.load_model(os.path.join(run_dir, "discriminator.keras"), safe_mode=True)
    noise_dim = generator.input_shape[-1]
    noise = tf.random.stateless_normal((num_samples, noise_dim), seed=(seed, 0))
    generated = generator(noise, training=False).numpy()
    real = to_model_range(data.test_images[:num_samples])
    real_logits = discriminator(real, training=False).numpy()[:, 0]
    generated_logits = discriminator(generated, training=False).numpy()[:, 0]
    classifier, classifier_accuracy = digit_classifier.load_or_train(data)
    figures.save_grid(to_unit_range(generated[:GRID_SAMPLES]),
                      os.path.join(run_dir, run_files.FIGURES, "evaluation_samples.png"))
    return {
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
        "classifier_test_accuracy": classifier_accuracy,
        **digit_classifier.judge(classifier, generated),
    }
