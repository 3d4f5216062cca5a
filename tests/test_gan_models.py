"""The GAN builders: the tutorial's exact MLP, the DCGAN variant, shapes and value ranges."""

import numpy as np
import pytest

from models import gan


def dense_params(sizes):
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))


def test_mlp_pair_is_the_tutorials():
    generator, discriminator = gan.build_generator(100), gan.build_discriminator()
    assert generator.output_shape == (None, 28, 28, 1)
    assert discriminator.output_shape == (None, 1)
    # Generator Dense 100-128-256-512-1024-784, discriminator Dense 784-1024-512-256-128-1.
    assert generator.count_params() == dense_params([100, 128, 256, 512, 1024, 784]) == 1_506_448
    assert discriminator.count_params() == dense_params([784, 1024, 512, 256, 128, 1]) == 1_492_993
    leaky = [layer for layer in generator.layers if layer.__class__.__name__ == "LeakyReLU"]
    assert len(leaky) == 4 and all(abs(layer.negative_slope - 0.2) < 1e-7 for layer in leaky)


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_generator_range_and_discriminator_shape(arch):
    generator, discriminator = gan.build_pair(arch, noise_dim=16)
    noise = np.random.default_rng(0).normal(size=(8, 16)).astype("float32") * 10
    images = np.asarray(generator(noise, training=False))
    assert images.shape == (8, 28, 28, 1)
    assert images.min() >= -1.0 and images.max() <= 1.0  # tanh output
    assert np.asarray(discriminator(images)).shape == (8, 1)


def test_dcgan_shapes_follow_the_design():
    generator, discriminator = gan.build_dcgan_generator(100), gan.build_dcgan_discriminator()
    shapes = [tuple(layer.output.shape[1:]) for layer in generator.layers]
    assert (7, 7, 128) in shapes and (14, 14, 64) in shapes and (28, 28, 32) in shapes
    shapes = [tuple(layer.output.shape[1:]) for layer in discriminator.layers]
    assert (14, 14, 64) in shapes and (7, 7, 128) in shapes and (256,) in shapes


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_generator_with_a_code_reads_it_from_z_and_loads_alone(arch, tmp_path):
    import keras

    generator, discriminator = gan.build_pair(arch, noise_dim=16, code_classes=4)
    assert generator.input_shape == (None, 16)  # G still takes z alone
    # G's first layer sees [z, c], c the one-hot argmax of z's first 4 entries
    concatenate = next(layer for layer in generator.layers if isinstance(layer, keras.layers.Concatenate))
    noise = np.random.default_rng(1).normal(size=(8, 16)).astype("float32")
    seen = np.asarray(keras.Model(generator.inputs, concatenate.output)(noise))
    np.testing.assert_array_equal(seen, np.concatenate([noise, np.eye(4)[noise[:, :4].argmax(axis=1)]], axis=1))
    path = str(tmp_path / "generator.keras")
    generator.save(path)
    other_noise = np.random.default_rng(2).normal(size=(8, 16)).astype("float32")
    np.testing.assert_allclose(keras.models.load_model(path)(other_noise, training=False),  # no custom objects
                               generator(other_noise, training=False), atol=1e-6)
    judge = gan.with_code_head(discriminator, 4)
    logits, code_logits = judge(generator(noise))
    assert logits.shape == (8, 1) and code_logits.shape == (8, 4)
    np.testing.assert_allclose(logits, discriminator(generator(noise)), atol=1e-6)  # Q shares D's body
