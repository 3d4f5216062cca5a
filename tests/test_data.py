"""MNIST sources and the keyed input pipeline."""

import hashlib

import numpy as np
import pytest
import tensorflow as tf

from datasets import mnist, pipeline


@pytest.fixture(scope="module")
def mnist_5k():
    return mnist.load("mnist-5k")


def test_5k_sample_is_real_balanced_and_split(mnist_5k):
    assert mnist_5k.source == "mnist-5k"
    assert mnist_5k.train_images.shape == (4000, 28, 28, 1)
    assert mnist_5k.test_images.shape == (1000, 28, 28, 1)
    assert mnist_5k.train_images.dtype == np.uint8 and mnist_5k.train_images.max() == 255
    assert np.bincount(mnist_5k.train_labels).tolist() == [400] * 10
    assert np.bincount(mnist_5k.test_labels).tolist() == [100] * 10
    train_hashes = {hashlib.sha1(image.tobytes()).hexdigest() for image in mnist_5k.train_images}
    test_hashes = {hashlib.sha1(image.tobytes()).hexdigest() for image in mnist_5k.test_images}
    assert not train_hashes & test_hashes  # the held-out split is never trained on


def test_unknown_source_is_refused():
    with pytest.raises(ValueError, match="unknown data source"):
        mnist.load("imagenet")


def first_batches(examples, seed, epoch, steps=3):
    batches = pipeline.epoch_batches(examples, 100, 10, seed, epoch, steps)
    return [(int(step), batch.numpy()) for step, batch in batches]


def test_shuffle_is_keyed_by_seed_and_epoch():
    examples = pipeline.cached_examples(np.arange(100, dtype=np.int64), lambda x: x)
    again = first_batches(examples, seed=1, epoch=4)
    assert [step for step, _ in again] == [12, 13, 14]  # global steps continue across epochs
    for (_, a), (_, b) in zip(first_batches(examples, seed=1, epoch=4), again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first_batches(examples, 1, 4)[0][1], first_batches(examples, 1, 5)[0][1])
    assert not np.array_equal(first_batches(examples, 1, 4)[0][1], first_batches(examples, 2, 4)[0][1])


def test_keyed_noise_rows_do_not_depend_on_how_the_batch_is_split():
    whole = pipeline.keyed_normal((8, 2, 5), seed=7, step=11).numpy()
    np.testing.assert_array_equal(whole, pipeline.keyed_normal((8, 2, 5), 7, tf.constant(11, tf.int64)).numpy())
    assert not np.array_equal(whole, pipeline.keyed_normal((8, 2, 5), 7, 12).numpy())
    assert abs(whole.mean()) < 0.5 and 0.5 < whole.std() < 1.5
