"""The text generator's LSTM layers, computed faster on a CPU: the same function, weights and gradients as
keras.layers.LSTM, with the backward pass written out and the batch run as concurrent chains.

What it computes: text_logits(model, ids) is model(ids) for the text generator of models/lstm.py, each LSTM
layer run as lstm_sequence on that layer's own weights (the embedding, dropout and logits stay Keras').
When it is used: by train.py's LSTM task (training/lstm.py: LstmTask.logits) when use_fused_lstm says so: with
--fused-lstm (the default) on a machine without a GPU, where Keras' LSTM runs cuDNN instead. --no-fused-lstm
trains the plain Keras model. Exported models are plain Keras models either way: nothing here is saved.
How it is checked: tests/test_lstm.py compares it with Keras' LSTM on the same weights (outputs and every
gradient, compiled and eager, in one chain and several, an empty and an unknown batch), and a whole training
run with it against one without (test_training_with_the_fused_lstm_equals_training_with_keras_lstm).
Measured in docs/speed.md: 2.1x Keras' LSTM in the same Trainer on the 2-core CPU.
"""

import keras
import tensorflow as tf

from models import lstm as lstm_models

# The batch's rows are independent sequences. lstm_sequence runs them as this many groups ("chains"), each
# with its own loops and matmuls; TensorFlow's executor runs independent ops concurrently, so on a 2-core
# CPU two chains' loops run side by side, and one chain's matmuls fill the gaps of another's loop. Measured
# at train.py's defaults (batch 64, bench/): 4 chains of 16 rows 135k characters/s, 2 chains 125k, 1 chain
# 121k, and 1 chain falls to 80k in this machine's slow spells, where one long loop stays on a slowed core.
SEQUENCE_CHAINS = 4


def use_fused_lstm(requested=True):
    """Whether to train with text_logits: when asked (--fused-lstm) and TensorFlow sees no GPU. lstm_sequence
    was measured on CPUs (bench/); on a GPU, Keras' LSTM runs cuDNN's fused kernel, which is faster still."""
    return bool(requested) and not tf.config.list_logical_devices("GPU")


def text_logits(model, ids, training=False, chains=None):
    """The text generator's logits for ids (batch, time), as model(ids, training) gives them, each LSTM layer
    run as lstm_sequence on its own weights, its rows in `chains` groups (default SEQUENCE_CHAINS); the same
    results up to float rounding."""
    return model.get_layer("logits")(text_features(model, ids, training, chains))


def text_features(model, ids, training=False, chains=None):
    """What the text generator's output layer reads for ids (batch, time): its last LSTM's (or dropout's)
    output, computed as text_logits does."""
    x = ids
    rhyme = lstm_models.rhyme_parts(model)
    rhyme_so_far = rhyme[0](ids) if rhyme is not None else None
    for layer in model.layers[1:-1]:  # the builder's chain: embedding, then LSTM (and dropout) per layer
        if rhyme is not None and layer in rhyme:
            continue  # read beside the embedding and the last LSTM's output
        if isinstance(layer, keras.layers.LSTM):
            _check_fusable(layer)
            cell = layer.cell
            weights = [keras.ops.cast(weight, layer.compute_dtype)
                       for weight in (cell.kernel, cell.recurrent_kernel, cell.bias)]
            x = lstm_sequence(keras.ops.cast(x, layer.compute_dtype), *weights, chains=chains or SEQUENCE_CHAINS)
        else:
            x = layer(x, training=training)
            if rhyme is not None and layer.name == "embedding":
                x = lstm_models.read_in(x, rhyme_so_far)
    if rhyme is not None:
        x = lstm_models.read_out(x, rhyme_so_far, rhyme[1])
    return x


def _check_fusable(layer):
    """lstm_sequence computes the builder's LSTM only: refuses any other activation, dropout or direction."""
    cell = layer.cell
    standard = (cell.activation is keras.activations.tanh and cell.recurrent_activation is keras.activations.sigmoid
                and cell.use_bias and not cell.dropout and not cell.recurrent_dropout and layer.return_sequences
                and not layer.go_backwards and not layer.stateful)
    if not standard:
        raise ValueError(f"{layer.name} is not the builder's standard LSTM; train it with --no-fused-lstm")


def lstm_sequence(x, kernel, recurrent_kernel, bias, chains=SEQUENCE_CHAINS):
    """Every step's output h of one LSTM layer over x (batch, time, features), from a zero state, with
    Keras' weights and gate order (i, f, g, o): the same function as keras.layers.LSTM, faster on a CPU.

    The rows are split into `chains` groups (as equal as possible), each run by _chain_sequence; the
    weight gradients of the groups add up, as a batch's do.
    """
    # Tensors, not variables, go in: the gradient reaches each variable through its read.
    weights = [tf.convert_to_tensor(weight) for weight in (kernel, recurrent_kernel, bias)]
    batch = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]
    if isinstance(batch, int):
        chains = max(1, min(chains, batch))  # no empty group when the batch is known and small
    if chains == 1:
        return _chain_sequence(x, *weights)
    sizes = [(batch + index) // chains for index in range(chains)]  # they add up to batch
    return tf.concat([_chain_sequence(rows, *weights) for rows in tf.split(x, sizes, axis=0)], axis=0)


def _chain_sequence(x, kernel, recurrent_kernel, bias):
    """lstm_sequence on one group of rows.

    Keras' loop runs the cell one step at a time and lets TensorFlow differentiate it, so its backward
    pass repeats at every step two small matmuls for the weight gradients, and every small op of every
    step is dispatched on its own. Here, as cuDNN does on a GPU, the matmuls that do not depend on the
    previous step are taken out of the loops and done for all steps at once by TensorFlow's matmul: x W + b
    before the forward loop; after the backward loop, the gradients of W, U and x. What must stay
    sequential (h U and the gate arithmetic, with b's gradient summed along) runs in two loops compiled
    with XLA, which fuses each step's element-wise ops into a few kernels.
    """

    @tf.custom_gradient
    def sequence(x, kernel, recurrent_kernel, bias):
        units = recurrent_kernel.shape[0]
        steps, batch = tf.shape(x)[1], tf.shape(x)[0]
        # Time-major rows; static sizes in every reshape, so a replica's empty batch (the last held-out
        # batch split over replicas) reshapes too.
        x_by_step = tf.reshape(tf.transpose(x, [1, 0, 2]), [steps * batch, kernel.shape[0]])
        # The part of each gate's input that comes from x_t, for all steps in one matmul: x_t W + b.
        x_parts = tf.reshape(tf.matmul(x_by_step, kernel) + bias, [steps, batch, 4 * units])
        # The loops' own gradients are never taken (this function is their gradient); stop_gradient says so
        # to an eager tape, which would otherwise record them and fail on their XLA loop state.
        hs, cs, kept = _forward_loop(tf.stop_gradient(x_parts), tf.stop_gradient(recurrent_kernel))

        def gradient(d_hs):
            d_zs, d_bias = _backward_loop(tf.transpose(d_hs, [1, 0, 2]), kept, recurrent_kernel)
            # z_t = x_t W + h_{t-1} U + b for every t: the gradients of W, U and x, over all steps at once.
            # h_{-1} is 0, so U's sums start at t = 1.
            d_z = tf.reshape(d_zs, [steps * batch, 4 * units])
            d_recurrent_kernel = tf.matmul(tf.reshape(hs[:-1], [(steps - 1) * batch, units]),
                                           tf.reshape(d_zs[1:], [(steps - 1) * batch, 4 * units]), transpose_a=True)
            d_x = tf.transpose(tf.reshape(tf.matmul(d_z, kernel, transpose_b=True), [steps, batch, kernel.shape[0]]),
                               [1, 0, 2])
            return d_x, tf.matmul(x_by_step, d_z, transpose_a=True), d_recurrent_kernel, d_bias

        return tf.transpose(hs, [1, 0, 2]), gradient

    return sequence(x, kernel, recurrent_kernel, bias)


@tf.function(jit_compile=True)
def _forward_loop(x_parts, recurrent_kernel):
    """(h_t, c_t) for every t from x_parts[t] = x_t W + b, time-major, and what the backward pass needs:
    the activated gates, tanh(c_t) and c_{t-1}, each stacked over t."""
    zeros = tf.zeros_like(x_parts[0, :, :recurrent_kernel.shape[0]])

    def step(previous, x_part):
        h, c_previous = previous[0], previous[1]
        # The tutorial's cell: i, f, o = sigmoid(z), g = tanh(z) of z = x_t W + h_{t-1} U + b;
        # c_t = f * c_{t-1} + i * g; h_t = o * tanh(c_t).
        i, f, g, o = tf.split(x_part + tf.matmul(h, recurrent_kernel), 4, axis=1)
        i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
        c = f * c_previous + i * g
        tanh_c = tf.tanh(c)
        return o * tanh_c, c, (i, f, g, o, tanh_c, c_previous)

    return tf.scan(step, x_parts, initializer=(zeros, zeros, (zeros,) * 6))


@tf.function(jit_compile=True)
def _backward_loop(d_hs, kept, recurrent_kernel):
    """(dL/dz_t for every t, dL/db), last step first: d_hs[t] is dL/dh_t through the layer's output."""
    recurrent_kernel_t = tf.transpose(recurrent_kernel)
    zeros = tf.zeros_like(d_hs[0])

    def step(later, inputs):
        # d_h_later, d_c_later: dL/dh_t and dL/dc_t through step t + 1.
        d_h_later, d_c_later, _, d_bias = later
        d_h_out, (i, f, g, o, tanh_c, c_previous) = inputs
        d_h = d_h_out + d_h_later
        d_c = d_c_later + d_h * o * (1 - tanh_c * tanh_c)
        # Through sigmoid' = s (1 - s) and tanh' = 1 - tanh^2, to z's four parts (i, f, g, o).
        d_z = tf.concat([d_c * g * i * (1 - i), d_c * c_previous * f * (1 - f), d_c * i * (1 - g * g),
                         d_h * tanh_c * o * (1 - o)], axis=1)
        return tf.matmul(d_z, recurrent_kernel_t), d_c * f, d_z, d_bias + tf.reduce_sum(d_z, axis=0)

    d_z0 = tf.concat([zeros] * 4, axis=1)
    d_bias0 = tf.zeros([4 * recurrent_kernel.shape[0]], d_hs.dtype)
    _, _, d_zs, d_biases = tf.scan(step, (d_hs, kept), initializer=(zeros, zeros, d_z0, d_bias0), reverse=True)
    return d_zs, d_biases[0]  # the sum reached at t = 0
