"""Differentiable augmentation for a GAN on little data (DiffAugment; Zhao et al. 2020, "Differentiable
Augmentation for Data-Efficient GAN Training"), for images (batch, 28, 28, 1) in [-1, 1].

The discriminator only ever sees augmented images, real and generated alike, in both players' steps:
it cannot memorise the 4,000 training digits pixel for pixel, and since every operation is
differentiable the generator's gradient passes through the augmentation to it. The two policies of
the paper used for small data:

    translation: shift by up to 1/8 of the side (3 pixels) in each direction, the border filled with
                 the background (-1)
    cutout:      blank a square of half the side (14 x 14) at a random centre (it may hang over the edge)

Every draw is an integer made in the input pipeline, keyed by (seed, global step), like the GAN's noise:
a resumed run, and any number of replicas, augment exactly as one uninterrupted process.
"""

import tensorflow as tf

SIDE = 28
MAX_SHIFT = SIDE // 8  # 3 pixels
CUTOUT = SIDE // 2  # a 14 x 14 square
BACKGROUND = -1.0
# The draws of one use: shift down, shift right, cutout centre row, cutout centre column.
PARAMETERS = 4
# Three independent uses per step: real images in D's step, generated ones in D's step, generated in G's.
REAL_FOR_D, GENERATED_FOR_D, GENERATED_FOR_G = 0, 1, 2
USES = 3


def draw_parameters(batch_size, seed, step):
    """(batch, USES, PARAMETERS) int32 draws keyed by (seed, step): shifts in [-3, 3], centres in [0, 28)."""
    key = tf.random.experimental.stateless_fold_in(tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)]), 1)
    shift_key, centre_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    shifts = tf.random.stateless_uniform((batch_size, USES, 2), shift_key, minval=-MAX_SHIFT, maxval=MAX_SHIFT + 1,
                                         dtype=tf.int32)
    centres = tf.random.stateless_uniform((batch_size, USES, 2), centre_key, minval=0, maxval=SIDE, dtype=tf.int32)
    return tf.concat([shifts, centres], axis=-1)


def translate(images, shift_down, shift_right):
    """Each image moved by its own whole-pixel shift, the uncovered border set to the background.

    As matrix products with one-hot shift matrices, (S_down @ image @ S_right^T), which are
    differentiable in the image; a row of S whose source lies outside the image is all zero.
    """
    positions = tf.range(SIDE)[tf.newaxis, :]
    rows = tf.one_hot(positions - tf.cast(shift_down, tf.int32)[:, tf.newaxis], SIDE, dtype=images.dtype)
    columns = tf.one_hot(positions - tf.cast(shift_right, tf.int32)[:, tf.newaxis], SIDE, dtype=images.dtype)
    # Shift (image - background), whose uncovered zeros become the background again.
    moved = rows @ (images[..., 0] - BACKGROUND) @ tf.transpose(columns, [0, 2, 1])
    return (moved + BACKGROUND)[..., tf.newaxis]


def cutout(images, centre_row, centre_column):
    """Each image with a CUTOUT x CUTOUT square around its own centre set to the background."""
    positions = tf.range(SIDE)[tf.newaxis, :]

    def inside(centre):  # positions centre - 7 ... centre + 6: CUTOUT of them
        offset = positions - tf.cast(centre, tf.int32)[:, tf.newaxis]
        return tf.logical_and(offset >= -(CUTOUT // 2), offset < CUTOUT - CUTOUT // 2)

    inside_rows, inside_columns = inside(centre_row), inside(centre_column)
    square = tf.logical_and(inside_rows[:, :, tf.newaxis], inside_columns[:, tf.newaxis, :])[..., tf.newaxis]
    return tf.where(square, tf.constant(BACKGROUND, images.dtype), images)


def augment(images, parameters):
    """images (batch, 28, 28, 1) in [-1, 1], parameters (batch, PARAMETERS) from draw_parameters[:, use]:
    translation, then cutout."""
    shift_down, shift_right, centre_row, centre_column = tf.unstack(tf.cast(parameters, tf.int32), axis=-1)
    return cutout(translate(images, shift_down, shift_right), centre_row, centre_column)
