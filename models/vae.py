"""The tutorial's MNIST VAE: an encoder q(z|x), the reparameterised sample z, and a decoder p(x|z).

Images are (batch, 28, 28, 1) with pixels in [0, 1]. The encoder maps an image to the mean and
log-variance of a diagonal Gaussian over the latent z; the decoder maps z to one Bernoulli logit per
pixel, log p / (1 - p). An MLP pair (the default) and a convolutional pair (`arch="conv"`).
"""

import keras
from keras import layers

IMAGE_SHAPE = (28, 28, 1)
IMAGE_PIXELS = 28 * 28
MLP_UNITS = (512, 512)  # hidden layers of the encoder; the decoder mirrors them
ACTIVATION = "gelu"
CONV_FILTERS = (32, 64)  # stride-2 convolutions: 28x28 -> 14x14 -> 7x7


@keras.saving.register_keras_serializable(package="aigc")
class Sampling(keras.layers.Layer):
    """The reparameterisation trick: z = mu + sigma * eps with eps ~ N(0, I) and sigma = exp(log_var / 2).

    z is a differentiable function of (mu, log_var), so gradients reach the encoder through the sample.
    Pass `noise` (eps) to own the randomness (training keys it by step); without it eps is drawn here.
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, mean, log_var, noise=None):
        if noise is None:
            noise = keras.random.normal(keras.ops.shape(mean), seed=self.seed_generator)
        return mean + keras.ops.exp(0.5 * log_var) * noise


def hidden_layer(x, width, activation, batch_norm):
    """Dense -> (BatchNormalization) -> activation. Batch normalisation is what lets the MLP reach a good
    ELBO on 4,000 digits in 50 epochs (see README); the Dense bias is then redundant with BN's offset."""
    if not batch_norm:
        return layers.Dense(width, activation=activation)(x)
    x = layers.Dense(width, use_bias=False)(x)
    # synchronized=True: statistics over the global batch, so N replicas train as one.
    x = layers.BatchNormalization(synchronized=True)(x)
    return layers.Activation(activation)(x)


def build_encoder(latent_dim=2, arch="mlp", units=MLP_UNITS, activation=ACTIVATION, batch_norm=True):
    """q(z|x): images (batch, 28, 28, 1) in [0, 1] -> [mean, log_var], each (batch, latent_dim)."""
    images = keras.Input(IMAGE_SHAPE, name="images")
    if arch == "mlp":
        x = layers.Flatten()(images)
        for width in units:
            x = hidden_layer(x, width, activation, batch_norm)
    elif arch == "conv":
        x = images
        for filters in CONV_FILTERS:
            x = layers.Conv2D(filters, 3, strides=2, padding="same", activation=activation)(x)
        x = layers.Flatten()(x)
        x = hidden_layer(x, units[-1], activation, batch_norm)
    else:
        raise ValueError(f"unknown VAE arch {arch!r}; choose mlp or conv")
    # float32 heads keep the posterior exact under a mixed_float16 policy.
    mean = layers.Dense(latent_dim, name="mean", dtype="float32")(x)
    log_var = layers.Dense(latent_dim, name="log_var", dtype="float32")(x)
    encoder = keras.Model(images, [mean, log_var], name=f"{arch}_encoder")
    assert encoder.output_shape == [(None, latent_dim), (None, latent_dim)]
    return encoder


def build_decoder(latent_dim=2, arch="mlp", units=MLP_UNITS, activation=ACTIVATION, batch_norm=True):
    """p(x|z): latents (batch, latent_dim) -> Bernoulli logits (batch, 28, 28, 1); sigmoid gives pixel means."""
    latents = keras.Input((latent_dim,), name="latents")
    if arch == "mlp":
        x = latents
        for width in reversed(units):
            x = hidden_layer(x, width, activation, batch_norm)
        x = layers.Dense(IMAGE_PIXELS, dtype="float32")(x)
        logits = layers.Reshape(IMAGE_SHAPE, dtype="float32")(x)
    elif arch == "conv":
        side = IMAGE_SHAPE[0] // 2 ** len(CONV_FILTERS)
        x = hidden_layer(latents, units[-1], activation, batch_norm)
        x = layers.Dense(side * side * CONV_FILTERS[-1], activation=activation)(x)
        x = layers.Reshape((side, side, CONV_FILTERS[-1]))(x)
        for filters in reversed(CONV_FILTERS):
            x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", activation=activation)(x)
        logits = layers.Conv2DTranspose(1, 3, padding="same", dtype="float32")(x)
    else:
        raise ValueError(f"unknown VAE arch {arch!r}; choose mlp or conv")
    decoder = keras.Model(latents, logits, name=f"{arch}_decoder")
    assert decoder.output_shape == (None,) + IMAGE_SHAPE
    return decoder


ARCHS = ("mlp", "conv")


def build_pair(arch="mlp", latent_dim=2, units=MLP_UNITS, activation=ACTIVATION, batch_norm=True):
    """(encoder, decoder) of the given architecture."""
    return (build_encoder(latent_dim, arch, units, activation, batch_norm),
            build_decoder(latent_dim, arch, units, activation, batch_norm))
