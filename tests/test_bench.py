"""bench/: the FLOP counter against hand counts, and the command's refusals."""

import keras
import pytest
import tensorflow as tf

from bench import flops


def dense_step(layers_units, batch, inputs_dim):
    """A plain MLP's training step (tape, SGD) and its input spec."""
    model = keras.Sequential([keras.Input((inputs_dim,))] + [keras.layers.Dense(units) for units in layers_units])
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)

    def step(inputs):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(inputs)))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    return step, tf.TensorSpec((batch, inputs_dim), tf.float32)


def test_mlp_step_counts_forward_weight_gradients_and_input_gradients_past_the_first_layer():
    batch, widths = 8, [12, 16, 4]
    step, spec = dense_step(widths[1:], batch, widths[0])
    forward = [2 * batch * fan_in * fan_out for fan_in, fan_out in zip(widths, widths[1:])]
    # Every layer: forward and weight gradient; the input gradient of every layer but the first
    # (nothing needs d loss / d inputs).
    assert flops.step_flops(step, spec) == 2 * sum(forward) + sum(forward[1:])


def test_convolutions_count_kernel_multiply_adds_per_output_element():
    images = tf.TensorSpec((2, 28, 28, 3), tf.float32)
    conv = keras.layers.Conv2D(5, 4, strides=2, padding="same")
    conv.build(images.shape)
    assert flops.step_flops(conv, images) == 2 * (2 * 14 * 14 * 5) * (4 * 4 * 3)
    transposed = keras.layers.Conv2DTranspose(3, 4, strides=2, padding="same")
    small = tf.TensorSpec((2, 14, 14, 5), tf.float32)
    transposed.build(small.shape)
    # A transposed convolution is the gradient of the convolution above: the same multiply-adds.
    assert flops.step_flops(transposed, small) == 2 * (2 * 14 * 14 * 5) * (4 * 4 * 3)


def test_lstm_loop_counted_once_per_time_step():
    batch, steps, embedding, units, vocabulary = 4, 6, 8, 16, 11
    model = keras.Sequential([keras.Input((steps,), dtype="int32"), keras.layers.Embedding(vocabulary, embedding),
                              keras.layers.LSTM(units, return_sequences=True), keras.layers.Dense(vocabulary)])

    def step(inputs):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(inputs)))
        return tape.gradient(loss, model.trainable_variables)

    counted = flops.step_flops(step, tf.TensorSpec((batch, steps), tf.int32), loop_iterations=steps)
    # Forward, weight gradients and input gradients of the gates' two matmuls at every step, and of the
    # output layer over every position: 3 x the forward count (the gradient loop also differentiates
    # the initial state, a few percent more at this tiny size).
    forward = 2 * batch * steps * (4 * units * (embedding + units) + units * vocabulary)
    assert 3 * forward <= counted <= 1.05 * 3 * forward
    with pytest.raises(ValueError, match="loop_iterations"):
        flops.step_flops(step, tf.TensorSpec((batch, steps), tf.int32))


def test_attention_einsums_count_every_product_they_sum():
    batch, time, heads, width = 2, 6, 3, 4
    attention = keras.layers.MultiHeadAttention(heads, width, dropout=0.5)  # dropout: the einsum path
    spec = tf.TensorSpec((batch, time, heads * width), tf.float32)
    attention(tf.zeros(spec.shape), tf.zeros(spec.shape))
    counted = flops.step_flops(lambda x: attention(x, x, use_causal_mask=True), spec)
    projections = 4 * 2 * batch * time * (heads * width) ** 2  # Q, K, V and the output projection
    scores_and_weighted_sum = 2 * (2 * batch * heads * time * time * width)  # Q K^T, then weights x V
    assert counted == projections + scores_and_weighted_sum


def test_matmul_peak_is_measured_for_numpy_and_tensorflow():
    peak = flops.matmul_peak(size=256, repeats=2)
    assert peak["peak"] == max(peak["numpy"], peak["tensorflow"]) > 0


@pytest.mark.parametrize("flags, message", [
    (["--out", "bench.txt"], "give a .json file name"),
    (["--epochs", "3"], "unrecognized arguments"),
    (["profile", "gan", "--batch-size", "0"], "--batch-size must be 1 or more"),
    (["profile", "gan", "--resume"], "drop --resume"),
    (["gan_step", "--epochs", "0"], "--epochs must be 1 or more"),
    (["vae_step", "--out", "."], "is a directory"),
    (["lstm_step", "--length", "0"], "--length must be 1 or more"),
    (["transformer_step", "--steps-per-epoch", "0"], "--steps-per-epoch must be 1 or more"),
    (["threads", "gan", "--threads", "0", "-1"], "--threads must be 0 or more"),
    (["threads", "vae", "--rounds", "0"], "--rounds must be 1 or more"),
    (["threads", "dcgan"], "invalid choice"),
    (["threads", "gan", "--train-flags=--arch mlp2"], "--train-flags: argument --arch: invalid choice"),
])
def test_bench_refuses_bad_flags_with_one_line(flags, message, capsys):
    import importlib

    from bench import __main__ as bench_main

    if flags[0] in ("profile", "gan_step", "vae_step", "lstm_step", "transformer_step", "threads"):
        main, flags = importlib.import_module(f"bench.{flags[0]}").main, flags[1:]
    else:
        main = bench_main.main
    with pytest.raises(SystemExit) as exit_info:
        main(flags)
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert stderr.startswith("error:") and message in stderr
    assert len(stderr.strip().splitlines()) == 1
