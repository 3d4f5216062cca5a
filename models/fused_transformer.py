"""The Transformer's training pass computed faster on a CPU: the same function, weights and gradients as the
Keras model of models/transformer.py, with fewer and larger ops.

What it computes: text_logits(model, ids, training) is model(ids, training) for build_transformer_lm's model,
and text_features what its output layer reads (the final LayerNorm's output), on that model's own weights.
How it differs from Keras' layers, measured on the 2-core CPU (docs/text.md, "Speed: the bench"):
- every position-wise projection (Q, K, V, the heads' output, the MLP's two layers) is one 2-D matmul over
  the batch's (batch x time) rows; Keras' EinsumDense runs a batched matmul whose weight gradient is a batched
  product summed over the batch afterwards;
- LayerNorm's gradient is written out (the three-term formula below) instead of autodiff's chain of a dozen
  passes through the moments;
- GELU and the attention's masked softmax, forward and backward, are compiled with XLA, one pass over the
  tensor each way (autodiff of erfc makes six); the matmuls stay with TensorFlow's own kernels, which are
  faster on a CPU than XLA's.
When it is used: by train.py's Transformer task (training/transformer.py) when use_fused_transformer says
so: with --fused-transformer (the default) on a machine without a GPU. --no-fused-transformer trains the
plain Keras model. Exported models are the plain Keras model either way: nothing here is saved.
How it is checked: tests/test_transformer.py compares it with the Keras model on the same weights (logits and
every gradient, with and without dropout, in the plain graph and compiled), and a short training run with it
against one without.
"""

import math

import tensorflow as tf

from models import transformer as transformer_models

SQRT_HALF = 1 / math.sqrt(2)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


def use_fused_transformer(requested=True):
    """Whether to train with text_logits: when asked (--fused-transformer) and TensorFlow sees no GPU, where
    it was measured; on a GPU the Keras model's kernels (and XLA there) are the better-tuned path."""
    return bool(requested) and not tf.config.list_logical_devices("GPU")


def text_logits(model, ids, training=False):
    """model(ids, training) for the Transformer of build_transformer_lm, computed as this module says."""
    return transformer_models.logits_of(model, text_features(model, ids, training))


def text_features(model, ids, training=False):
    """The final LayerNorm's output (batch, time, d_model) for ids (batch, time): what the output layer reads."""
    batch, time = tf.shape(ids)[0], tf.shape(ids)[1]
    x = model.get_layer("position_embedding")(model.get_layer("token_embedding")(ids))
    dtype = x.dtype
    rows = lambda tensor: tf.reshape(tensor, (-1, tensor.shape[-1]))  # noqa: E731 - (batch, time, n) -> (batch x time, n)
    in_sequences = lambda tensor: tf.reshape(tensor, (batch, time, tensor.shape[-1]))  # noqa: E731 - and back
    causal = tf.linalg.band_part(tf.ones((time, time), tf.bool), -1, 0)  # position t sees s <= t
    x = rows(x)
    for block in transformer_models.blocks_of(model):
        attention = block.attention
        heads, key_dim = attention.num_heads, attention.key_dim
        h = layer_norm(x, block.attention_norm)

        def heads_of(dense):
            """h W + b for one of Q, K, V -> (batch, heads, time, key_dim)."""
            projected = _affine(h, dense.kernel, dense.bias)
            return tf.transpose(tf.reshape(projected, (batch, time, heads, key_dim)), (0, 2, 1, 3))

        # softmax(Q K^T / sqrt(d), masked) V, each head's (time x time) weights in float32.
        queries, keys, values = (heads_of(dense) for dense in (attention.query_dense, attention.key_dense,
                                                                attention.value_dense))
        weights = attention_weights(tf.matmul(queries, keys, transpose_b=True), causal,
                                    1.0 / math.sqrt(float(key_dim)))
        joined = tf.reshape(tf.transpose(tf.matmul(tf.cast(weights, dtype), values), (0, 2, 1, 3)),
                            (-1, heads * key_dim))
        attended = _affine(joined, attention.output_dense.kernel, attention.output_dense.bias)
        x = x + _dropout(block.attention_dropout, attended, in_sequences, training)
        h = layer_norm(x, block.mlp_norm)
        h = gelu(_affine(h, block.mlp_hidden.kernel, block.mlp_hidden.bias))
        h = _affine(h, block.mlp_output.kernel, block.mlp_output.bias)
        x = x + _dropout(block.mlp_dropout, h, in_sequences, training)
    return in_sequences(layer_norm(x, model.get_layer("final_norm")))


def _affine(x, kernel, bias):
    """x W + b for x (rows, n) in its dtype, W a Dense's (n, m) or an EinsumDense's kernel with its n inputs
    and m outputs spread over more axes ((n, heads, key_dim) or (heads, key_dim, n_out)), read as (n, m)."""
    kernel = tf.cast(tf.reshape(kernel, (x.shape[-1], -1)), x.dtype)
    return tf.nn.bias_add(tf.matmul(x, kernel), tf.cast(tf.reshape(bias, (-1,)), x.dtype))


def _dropout(layer, x, in_sequences, training):
    """The model's own Dropout layer (None: the model has none) on x as (batch, time, d): the same draws as in
    model()."""
    if layer is None:
        return x
    return tf.reshape(layer(in_sequences(x), training=training), tf.shape(x))


def layer_norm(x, layer):
    """layer(x) (keras.layers.LayerNormalization over the last axis), in float32 as Keras computes it."""
    gamma, beta = (tf.cast(weight, tf.float32) for weight in (layer.gamma, layer.beta))
    return tf.cast(_layer_norm(tf.cast(x, tf.float32), gamma, beta, layer.epsilon), x.dtype)


def _layer_norm(x, gamma, beta, epsilon):
    @tf.custom_gradient
    def normalized(x, gamma, beta):
        centred = x - tf.reduce_mean(x, -1, keepdims=True)
        inverse_std = tf.math.rsqrt(tf.reduce_mean(tf.square(centred), -1, keepdims=True) + epsilon)
        x_hat = centred * inverse_std

        def gradient(dy):
            # y = gamma x_hat + beta, x_hat = (x - mean) / std: dx = (g - mean(g) - x_hat mean(g x_hat)) / std,
            # g = dy gamma, the means over the normalized axis.
            g = dy * gamma
            dx = inverse_std * (g - tf.reduce_mean(g, -1, keepdims=True)
                                - x_hat * tf.reduce_mean(g * x_hat, -1, keepdims=True))
            return dx, tf.reduce_sum(dy * x_hat, 0), tf.reduce_sum(dy, 0)

        return x_hat * gamma + beta, gradient

    return normalized(x, gamma, beta)


# GELU(x) = x Phi(x), Phi the standard normal CDF = erfc(-x / sqrt(2)) / 2, as keras.activations.gelu computes
# it; its derivative is Phi(x) + x phi(x), phi the normal density.
@tf.function(jit_compile=True)
def _gelu_forward(x):
    return x * (0.5 * tf.math.erfc(x * -SQRT_HALF))


@tf.function(jit_compile=True)
def _gelu_backward(x, dy):
    cdf = 0.5 * tf.math.erfc(x * -SQRT_HALF)
    return dy * (cdf + x * (INV_SQRT_2PI * tf.exp(-0.5 * tf.square(x))))


@tf.custom_gradient
def gelu(x):
    """keras.activations.gelu(x) (exact, not the tanh approximation), one compiled pass each way."""
    return _gelu_forward(x), lambda dy: _gelu_backward(x, dy)


# The attention's weights as Keras computes them (ops.dot_product_attention with is_causal): the scores in
# float32, scaled by 1 / sqrt(d), the masked ones replaced by a large negative number, the softmax in float32.
MASKED_SCORE = -0.7 * 3.38953e38


@tf.function(jit_compile=True)
def _attention_weights_forward(scores, allowed, scale):
    scores = tf.where(allowed, tf.cast(scores, tf.float32) * scale, MASKED_SCORE)
    return tf.nn.softmax(scores, axis=-1)


@tf.function(jit_compile=True)
def _attention_weights_backward(weights, dy, allowed, scale):
    # p = softmax(z): dz = p (dp - sum_s dp p), zero where masked (p is 0 there), times the scale.
    dy = tf.cast(dy, tf.float32)
    dz = weights * (dy - tf.reduce_sum(dy * weights, -1, keepdims=True))
    return tf.where(allowed, dz * scale, 0.0)


def attention_weights(scores, allowed, scale):
    """softmax(scores * scale, masked where not allowed) over the last axis, in float32: one compiled pass each
    way. scores (batch, heads, t, s) in the compute dtype, allowed (t, s) bool."""

    @tf.custom_gradient
    def weights_of(scores):
        weights = _attention_weights_forward(scores, allowed, scale)
        return weights, lambda dy: tf.cast(_attention_weights_backward(weights, dy, allowed, scale), scores.dtype)

    return weights_of(scores)
