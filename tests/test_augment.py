"""DiffAugment's operations: exact shifts and squares, keyed draws, gradients that reach the images."""

import numpy as np
import tensorflow as tf

from training import augment


def shifted(image, down, right):
    """The expected translation, by hand: numpy indexing with the background outside."""
    out = np.full_like(image, augment.BACKGROUND)
    side = image.shape[0]
    for row in range(side):
        for column in range(side):
            source_row, source_column = row - down, column - right
            if 0 <= source_row < side and 0 <= source_column < side:
                out[row, column] = image[source_row, source_column]
    return out


def test_translation_moves_each_image_by_its_own_shift():
    images = np.random.default_rng(0).uniform(-1, 1, (5, 28, 28, 1)).astype(np.float32)
    downs, rights = np.array([0, 3, -3, 1, -2]), np.array([0, -3, 2, 3, -1])
    moved = augment.translate(tf.constant(images), tf.constant(downs), tf.constant(rights)).numpy()
    for index in range(5):
        np.testing.assert_allclose(moved[index], shifted(images[index], downs[index], rights[index]), atol=1e-6)


def test_cutout_blanks_a_half_side_square_clipped_at_the_edges():
    images = np.ones((3, 28, 28, 1), np.float32)
    out = augment.cutout(tf.constant(images), tf.constant([14, 0, 27]), tf.constant([14, 0, 5])).numpy()
    blanked = (out == augment.BACKGROUND).sum(axis=(1, 2, 3))
    assert list(blanked) == [14 * 14, 7 * 7, 8 * 12]  # rows 7-20; rows and columns 0-6; rows 20-27 x columns 0-11
    assert out[0, 7:21, 7:21].max() == augment.BACKGROUND and out[0, 6, 14, 0] == 1


def test_draws_are_keyed_by_seed_and_step_and_in_range():
    first = augment.draw_parameters(64, 3, 10).numpy()
    assert first.shape == (64, augment.USES, augment.PARAMETERS)
    np.testing.assert_array_equal(first, augment.draw_parameters(64, 3, 10).numpy())
    assert not np.array_equal(first, augment.draw_parameters(64, 3, 11).numpy())
    assert not np.array_equal(first, augment.draw_parameters(64, 4, 10).numpy())
    shifts, centres = first[..., :2], first[..., 2:]
    assert shifts.min() == -augment.MAX_SHIFT and shifts.max() == augment.MAX_SHIFT
    assert centres.min() >= 0 and centres.max() < 28


def test_gradients_pass_through_to_the_uncovered_pixels():
    images = tf.Variable(np.zeros((1, 28, 28, 1), np.float32))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(augment.augment(images, tf.constant([[2, 0, 14, 14]])))
    gradient = tape.gradient(total, images).numpy()[0, ..., 0]
    # Rows 26-27 move out of the image, and the cutout hides what lands on rows/columns 7-20.
    visible = np.ones((28, 28))
    visible[26:] = 0
    visible[5:19, 7:21] = 0  # source rows of the blanked rows 7-20 after a shift of 2 down
    np.testing.assert_array_equal(gradient, visible)
