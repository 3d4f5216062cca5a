"""The DCGAN trials behind `--arch dcgan`'s design: `python train.py gan --arch dcgan ...` with the pair
replaced by one of the variants below (each half is either the current builder in models/gan.py or the
earlier one, kept here so the trials can be rerun).

    DCGAN_VARIANT=earlier python docs/gan_search/dcgan_variants.py gan --arch dcgan --batch-size 64 ...

    earlier:         G z -> 7x7x128 -> 14x14x64 -> 28x28x1;      D 28x28x1 -> 14x14x64 -> 7x7x128 -> logit
    refined_g:       the current G (a 3x3 convolution after each upsampling, 28x28x32 before the image)
                     with the earlier D
    dense_d:         the earlier G with the current D (a 256-unit dense layer before the logit)
    current:         both current halves: what --arch dcgan builds
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

import keras  # noqa: E402
from keras import layers  # noqa: E402

from models import gan  # noqa: E402


def earlier_generator(noise_dim=100):
    noise = keras.Input((noise_dim,), name="noise")
    x = layers.Dense(7 * 7 * 128, use_bias=False)(noise)
    x = layers.LeakyReLU(gan.LEAKY_SLOPE)(layers.BatchNormalization(synchronized=True)(x))
    x = layers.Reshape((7, 7, 128))(x)
    x = layers.Conv2DTranspose(64, 4, strides=2, padding="same", use_bias=False)(x)
    x = layers.LeakyReLU(gan.LEAKY_SLOPE)(layers.BatchNormalization(synchronized=True)(x))
    images = layers.Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh", dtype="float32")(x)
    return keras.Model(noise, images, name="dcgan_generator")


def earlier_discriminator():
    images = keras.Input(gan.IMAGE_SHAPE, name="images")
    x = layers.LeakyReLU(gan.LEAKY_SLOPE)(layers.Conv2D(64, 4, strides=2, padding="same")(images))
    x = layers.LeakyReLU(gan.LEAKY_SLOPE)(layers.Conv2D(128, 4, strides=2, padding="same")(x))
    logits = layers.Dense(1, dtype="float32")(layers.Flatten()(x))
    return keras.Model(images, logits, name="dcgan_discriminator")


VARIANTS = {
    "earlier": (earlier_generator, earlier_discriminator),
    "refined_g": (gan.build_dcgan_generator, earlier_discriminator),
    "dense_d": (earlier_generator, gan.build_dcgan_discriminator),
    "current": (gan.build_dcgan_generator, gan.build_dcgan_discriminator),
}

if __name__ == "__main__":
    gan.BUILDERS["dcgan"] = VARIANTS[os.environ.get("DCGAN_VARIANT", "current")]
    os.chdir(REPO)
    import train

    sys.exit(train.main(sys.argv[1:]))
