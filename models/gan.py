"""The tutorial's MNIST GAN: an MLP generator and discriminator, and a small convolutional (DCGAN) pair.

Images are (batch, 28, 28, 1) in [-1, 1]; the generator maps noise z ~ N(0, I) to an image and
the discriminator maps an image to one logit, log D(x) / (1 - D(x)), positive meaning "real".
With an InfoGAN code (code_classes > 0) the generator also sees a categorical code read from z, and
with_code_head adds the head on the discriminator that reads the code back from an image.
"""

import keras
from keras import layers

IMAGE_SHAPE = (28, 28, 1)
IMAGE_PIXELS = 28 * 28
LEAKY_SLOPE = 0.2
MLP_GENERATOR_UNITS = (128, 256, 512, 1024)
MLP_DISCRIMINATOR_UNITS = (1024, 512, 256, 128)
DCGAN_DISCRIMINATOR_UNITS = 256


def _generator_input(noise_dim, code_classes):
    """(the noise input, what G's first layer sees): z, or [z, c] with an InfoGAN code of code_classes.

    InfoGAN's categorical code c (Chen et al. 2016) is read from the noise: c = one_hot(argmax(z[:, :K])).
    The argmax of K independent N(0, 1) entries is uniform over the K values, so c ~ Cat(K) as InfoGAN
    draws it, and G still takes z alone: sampling, export and evaluation are unchanged (Keras records
    the ops in the model, so keras.models.load_model still loads it alone). Because c jumps from one
    value to the next where z crosses a boundary, G can jump from one digit to another there instead
    of drawing blends of both.
    """
    noise = keras.Input((noise_dim,), name="noise")
    if not code_classes:
        return noise, noise
    code = keras.ops.one_hot(categorical_code(noise, code_classes), code_classes)
    return noise, layers.Concatenate()([noise, code])


def categorical_code(noise, code_classes):
    """InfoGAN's code c of each row of z, as an index: argmax(z[:, :code_classes]). The generator sees it
    one-hot; training.gan's code loss asks the code head to read it back."""
    return keras.ops.argmax(noise[:, :code_classes], axis=-1)


def build_generator(noise_dim=100, code_classes=0):
    """The tutorial's MLP generator: z (batch, noise_dim) -> images (batch, 28, 28, 1) in [-1, 1] (tanh)."""
    noise, x = _generator_input(noise_dim, code_classes)
    for units in MLP_GENERATOR_UNITS:
        x = layers.Dense(units)(x)
        x = layers.LeakyReLU(LEAKY_SLOPE)(x)
    # float32 output layers keep the images and logits exact under a mixed_float16 policy.
    x = layers.Dense(IMAGE_PIXELS, activation="tanh", dtype="float32")(x)
    images = layers.Reshape(IMAGE_SHAPE, dtype="float32")(x)
    generator = keras.Model(noise, images, name="generator")
    assert generator.output_shape == (None,) + IMAGE_SHAPE
    return generator


def build_discriminator():
    """The tutorial's MLP discriminator: images (batch, 28, 28, 1) in [-1, 1] -> logits (batch, 1)."""
    images = keras.Input(IMAGE_SHAPE, name="images")
    x = layers.Flatten()(images)
    for units in MLP_DISCRIMINATOR_UNITS:
        x = layers.Dense(units)(x)
        x = layers.LeakyReLU(LEAKY_SLOPE)(x)
    logits = layers.Dense(1, dtype="float32")(x)  # a logit, not a probability: the loss applies the sigmoid
    discriminator = keras.Model(images, logits, name="discriminator")
    assert discriminator.output_shape == (None, 1)
    return discriminator


def _batch_norm_leaky(x):
    # synchronized=True: batch statistics over the global batch, so N replicas train as one.
    x = layers.BatchNormalization(synchronized=True)(x)
    return layers.LeakyReLU(LEAKY_SLOPE)(x)


def build_dcgan_generator(noise_dim=100, code_classes=0):
    """A small DCGAN generator: z -> 7x7x128 -> 14x14x64 (twice) -> 28x28x32 -> images (batch, 28, 28, 1)
    in [-1, 1]. Each 4x4 stride-2 transposed convolution doubles the resolution; the 3x3 convolution after
    each one refines what it drew at that resolution (without them the strokes came out blurred and
    malformed: docs/gan_search/)."""
    noise, x = _generator_input(noise_dim, code_classes)
    x = _batch_norm_leaky(layers.Dense(7 * 7 * 128, use_bias=False)(x))
    x = layers.Reshape((7, 7, 128))(x)
    x = _batch_norm_leaky(layers.Conv2DTranspose(64, 4, strides=2, padding="same", use_bias=False)(x))
    x = _batch_norm_leaky(layers.Conv2D(64, 3, padding="same", use_bias=False)(x))
    assert x.shape[1:] == (14, 14, 64)
    x = _batch_norm_leaky(layers.Conv2DTranspose(32, 4, strides=2, padding="same", use_bias=False)(x))
    assert x.shape[1:] == (28, 28, 32)
    images = layers.Conv2D(1, 3, padding="same", activation="tanh", dtype="float32")(x)
    generator = keras.Model(noise, images, name="dcgan_generator")
    assert generator.output_shape == (None,) + IMAGE_SHAPE
    return generator


def build_dcgan_discriminator():
    """A small DCGAN discriminator: images (batch, 28, 28, 1) in [-1, 1] -> 14x14x64 -> 7x7x128 -> 256
    -> logits (batch, 1). The dense layer before the logit lets it combine the 7x7 features non-linearly
    (with a single linear read-out its verdicts guided the generator less well: docs/gan_search/)."""
    images = keras.Input(IMAGE_SHAPE, name="images")
    x = layers.Conv2D(64, 4, strides=2, padding="same")(images)
    x = layers.LeakyReLU(LEAKY_SLOPE)(x)
    x = layers.Conv2D(128, 4, strides=2, padding="same")(x)
    x = layers.LeakyReLU(LEAKY_SLOPE)(x)
    assert x.shape[1:] == (7, 7, 128)
    x = layers.Flatten()(x)
    x = layers.Dense(DCGAN_DISCRIMINATOR_UNITS)(x)
    x = layers.LeakyReLU(LEAKY_SLOPE)(x)
    logits = layers.Dense(1, dtype="float32")(x)
    discriminator = keras.Model(images, logits, name="dcgan_discriminator")
    assert discriminator.output_shape == (None, 1)
    return discriminator


BUILDERS = {
    "mlp": (build_generator, build_discriminator),
    "dcgan": (build_dcgan_generator, build_dcgan_discriminator),
}


def build_pair(arch="mlp", noise_dim=100, code_classes=0):
    """Returns (generator, discriminator) for `arch` ("mlp", the tutorial's, or "dcgan")."""
    build_g, build_d = BUILDERS[arch]
    return build_g(noise_dim, code_classes), build_d()


def with_code_head(discriminator, code_classes):
    """InfoGAN's Q: images -> (D's logits, code logits (batch, code_classes)). The code head is one Dense
    layer on D's last hidden layer, so Q shares D's body and costs almost nothing; D itself is unchanged."""
    hidden = discriminator.layers[-2].output
    code_logits = layers.Dense(code_classes, dtype="float32", name="code_logits")(hidden)
    return keras.Model(discriminator.inputs, [discriminator.outputs[0], code_logits],
                       name=discriminator.name + "_with_code_head")
