"""The decoder-only Transformer text generator (the GPT shape): every character attends to the ones before it.

    ids (batch, time) -> token embedding + position embedding
        -> [ x + Attention(LayerNorm(x));  x + MLP(LayerNorm(x)) ] x layers      (pre-LayerNorm blocks)
        -> LayerNorm -> logits (batch, time, vocab), tied to the token embedding or a Dense layer of their own

Each block's attention is the tutorial's formula, per head, over the positions up to and including t:

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d) + causal mask) V,   Q = x W_Q, K = x W_K, V = x W_V

keras.layers.MultiHeadAttention computes it in training (its causal mask hides later positions). Generation
(TransformerSampler) keeps each layer's K and V for the positions already read (the KV cache), reaching the
same layer's projections through its public query_dense / key_dense / value_dense / output_dense.
"""

import math

import keras
import tensorflow as tf

from models import sampling

PACKAGE = "aigc_transformer"  # the registered name of this file's layers, so that safe-mode loading finds them
MLP_RATIO = 4  # the MLP's hidden width over d_model, as in GPT
LAYER_NORM_EPSILON = 1e-5


@keras.saving.register_keras_serializable(package=PACKAGE)
class PositionEmbedding(keras.layers.Layer):
    """x + P[start:start + time]: a learned vector for each position 0 .. context - 1, added to the characters'."""

    def __init__(self, context, **kwargs):
        super().__init__(**kwargs)
        self.context = context

    def build(self, input_shape):
        self.positions = self.add_weight(shape=(self.context, input_shape[-1]), name="positions",
                                         initializer=keras.initializers.RandomNormal(stddev=0.02))

    def call(self, x, start=0):
        time = keras.ops.shape(x)[1]
        table = keras.ops.slice(self.positions, (start, 0), (time, self.positions.shape[1]))
        return x + keras.ops.cast(table, x.dtype)

    def get_config(self):
        return {**super().get_config(), "context": self.context}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TiedEmbedding(keras.layers.Embedding):
    """An Embedding E whose table also reads a vector back as logits over the vocabulary: reverse=True gives
    x E^T in float32 (exact softmax under mixed_float16), so the input and output share one table."""

    def call(self, inputs, reverse=False):
        if not reverse:
            return super().call(inputs)
        return keras.ops.matmul(keras.ops.cast(inputs, "float32"),
                                keras.ops.transpose(keras.ops.cast(self.embeddings, "float32")))

    def compute_output_spec(self, inputs, reverse=False):
        if not reverse:
            return super().compute_output_spec(inputs)
        return keras.KerasTensor(inputs.shape[:-1] + (self.input_dim,), dtype="float32")


def build_transformer_lm(vocab_size, context, d_model=128, heads=4, layers=4, dropout=0.0, tied=True):
    """ids (batch, time <= context) int -> next-character logits (batch, time, vocab_size), float32."""
    if d_model % heads:
        raise ValueError(f"d_model {d_model} does not divide into {heads} heads")
    ids = keras.Input((None,), dtype="int32", name="ids")
    token_embedding = TiedEmbedding(vocab_size, d_model, name="token_embedding",
                                     embeddings_initializer=keras.initializers.RandomNormal(stddev=0.02))
    x = PositionEmbedding(context, name="position_embedding")(token_embedding(ids))
    for index in range(1, layers + 1):
        # Attention sub-block: each position's query Q = h W_Q is compared with every earlier key K = h W_K;
        # softmax(Q K^T / sqrt(d_model / heads)) weighs their values V = h W_V; the heads' results are joined
        # and projected by W_O. use_causal_mask gives position t no weight on positions after t.
        h = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"block_{index}_attention_norm")(x)
        attended = keras.layers.MultiHeadAttention(heads, d_model // heads, name=f"block_{index}_attention")(
            h, h, use_causal_mask=True)
        if dropout:
            attended = keras.layers.Dropout(dropout, name=f"block_{index}_attention_dropout")(attended)
        x = keras.layers.Add(name=f"block_{index}_attention_residual")([x, attended])
        # MLP sub-block: each position on its own, d_model -> 4 d_model (GELU) -> d_model.
        h = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"block_{index}_mlp_norm")(x)
        h = keras.layers.Dense(MLP_RATIO * d_model, activation="gelu", name=f"block_{index}_mlp_hidden")(h)
        h = keras.layers.Dense(d_model, name=f"block_{index}_mlp_output")(h)
        if dropout:
            h = keras.layers.Dropout(dropout, name=f"block_{index}_mlp_dropout")(h)
        x = keras.layers.Add(name=f"block_{index}_mlp_residual")([x, h])
    x = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="final_norm")(x)
    # float32 logits keep the softmax exact under a mixed_float16 policy.
    logits = (token_embedding(x, reverse=True) if tied
              else keras.layers.Dense(vocab_size, dtype="float32", name="logits")(x))
    model = keras.Model(ids, logits, name="transformer_lm")
    assert model.output_shape == (None, None, vocab_size)
    return model


class Block:
    """One block's layers, found by name in a model build_transformer_lm made."""

    def __init__(self, model, index):
        layer = lambda part: model.get_layer(f"block_{index}_{part}")  # noqa: E731
        self.attention_norm, self.attention = layer("attention_norm"), layer("attention")
        self.mlp_norm, self.mlp_hidden, self.mlp_output = layer("mlp_norm"), layer("mlp_hidden"), layer("mlp_output")
        # Built only with dropout > 0; inference skips them either way.
        names = {each.name for each in model.layers}
        self.attention_dropout, self.mlp_dropout = (
            layer(part) if f"block_{index}_{part}" in names else None
            for part in ("attention_dropout", "mlp_dropout"))
        self.heads, self.key_dim = self.attention.num_heads, self.attention.key_dim

    def mlp(self, x):
        """x + MLP(LayerNorm(x))."""
        return x + self.mlp_output(self.mlp_hidden(self.mlp_norm(x)))


def blocks_of(model):
    return [Block(model, index) for index in range(1, _count_blocks(model) + 1)]


def _count_blocks(model):
    return sum(1 for layer in model.layers if isinstance(layer, keras.layers.MultiHeadAttention))


def context_of(model):
    return model.get_layer("position_embedding").context


def attend(queries, keys, values, allowed):
    """softmax(Q K^T / sqrt(d) where allowed, else -inf) V, per head, in float32.

    queries (rows, t, heads, d), keys and values (rows, s, heads, d), allowed (t, s) or broadcastable bool ->
    (outputs (rows, t, heads, d) in the queries' dtype, weights (rows, heads, t, s)).
    """
    dtype = queries.dtype
    queries, keys, values = (tf.cast(tensor, tf.float32) for tensor in (queries, keys, values))
    scores = tf.einsum("rthd,rshd->rhts", queries, keys) / math.sqrt(queries.shape[-1])  # Q K^T / sqrt(d)
    weights = tf.nn.softmax(tf.where(allowed, scores, float("-inf")), axis=-1)  # each row sums to 1 over allowed s
    return tf.cast(tf.einsum("rhts,rshd->rthd", weights, values), dtype), weights  # weights x V


def read_window(model, ids, start=0):
    """The model over ids (rows, time) from position `start`, step by step as it computes: (logits of the last
    position (rows, vocab), [(K, V) per layer, each (rows, time, heads, d)], [attention weights per layer,
    (rows, heads, time, time)]). The same function as model(ids), with each layer's keys and values kept."""
    time = tf.shape(ids)[1]
    causal = tf.linalg.band_part(tf.ones((time, time), tf.bool), -1, 0)  # position t sees s <= t
    x = model.get_layer("position_embedding")(model.get_layer("token_embedding")(ids), start=start)
    caches, weights = [], []
    for block in blocks_of(model):
        h = block.attention_norm(x)
        keys, values = block.attention.key_dense(h), block.attention.value_dense(h)
        outputs, layer_weights = attend(block.attention.query_dense(h), keys, values, causal)
        x = block.mlp(x + block.attention.output_dense(outputs))
        caches.append((keys, values))
        weights.append(layer_weights)
    return output_logits(model, x[:, -1]), caches, weights


def output_logits(model, x):
    """Final LayerNorm and the logits of x (rows, d_model) -> (rows, vocab) float32."""
    return logits_of(model, model.get_layer("final_norm")(x))


def logits_of(model, features):
    """The output layer on the final LayerNorm's output (..., d_model) -> (..., vocab) float32."""
    if any(layer.name == "logits" for layer in model.layers):
        return model.get_layer("logits")(features)
    return model.get_layer("token_embedding")(features, reverse=True)


def window_length(total, context):
    """How many of the last `total` characters the model reads to predict the next one (the sliding rule).

    Up to `context` it reads them all. A learned position table has no slot past context - 1, so when the
    window is full it starts afresh from the last keep = context // 2 characters (positions 0 .. keep - 1)
    and grows again to context: past the context every prediction sees between keep and context characters.
    """
    keep = context // 2
    if isinstance(total, int) and total <= context:
        return total
    past = keep + (total - context - 1) % (context - keep + 1)
    return tf.where(total <= context, total, past) if not isinstance(total, int) else past


class WindowRecomputingSampler(sampling.Sampler):
    """The plain way: for every new character, the whole window of the sliding rule (window_length) read
    again by model(window); the reference the cached sampler must equal, and the bench's baseline.

    State: the window's ids (rows, context), left-aligned, and how many of them are filled.
    """

    def __init__(self, model):
        self.model = model
        self.context = context_of(model)
        self.keep = self.context // 2
        super().__init__(model.output_shape[-1])

    def _start_window(self, prompt_ids, rows):
        """The prompt's last window_length(prompt) ids -> (those ids (1, filled), padded and tiled to rows, filled)."""
        total = tf.shape(prompt_ids)[0]
        filled = window_length(total, self.context)
        window = prompt_ids[total - filled:][tf.newaxis]
        padded = tf.pad(window, [[0, 0], [0, self.context - filled]])
        return window, tf.tile(padded, [rows, 1]), filled

    def _slide(self, window, filled, ids):
        """Appends ids (rows,) to the window, first restarting it from its last keep - 1 ids when it is full."""
        full = filled >= self.context
        restarted = tf.pad(window[:, self.context - self.keep + 1:], [[0, 0], [0, self.context - self.keep + 1]])
        window, filled = tf.where(full, restarted, window), tf.where(full, self.keep - 1, filled)
        at_filled = tf.range(self.context) == filled
        return tf.where(at_filled, ids[:, tf.newaxis], window), filled + 1

    def start(self, prompt_ids, rows):
        window, padded, filled = self._start_window(prompt_ids, rows)
        logits = self.model(window, training=False)[:, -1]
        return tf.tile(logits, [rows, 1]), (padded, filled)

    def step(self, ids, state):
        window, filled = self._slide(*state, ids)
        # The whole window of `context` slots, read at its last filled position: the slots after it are padding,
        # which no earlier position attends to (causal), so this equals model(window[:, :filled]) in a fixed
        # shape, as XLA needs (generate(jit=True)).
        logits = self.model(window, training=False)
        return tf.gather(logits, filled - 1, axis=1), (window, filled)


class TransformerSampler(WindowRecomputingSampler):
    """Generates with a KV cache: the prompt is read once, then each new character is one position's work.

    Each layer keeps K and V of the window's positions in fixed tensors of `context` slots (rows, context,
    heads, d). A new character's query attends to the filled slots only, and its own key and value fill the
    next slot. When the window is full, the sliding rule (window_length) re-reads its last keep characters
    as a fresh window, refilling the caches from slot 0: one batched read every context - keep + 1 characters.
    """

    def __init__(self, model):
        super().__init__(model)
        self.blocks = blocks_of(model)
        self.token_embedding = model.get_layer("token_embedding")
        self.position_embedding = model.get_layer("position_embedding")

    def _caches_of(self, window, rows):
        """read_window over window (1 or rows, filled) -> (logits (rows, vocab), caches padded to context slots)."""
        logits, caches, _ = read_window(self.model, window)
        slots = [[0, 0], [0, self.context - tf.shape(window)[1]], [0, 0], [0, 0]]
        repeat = [rows // tf.shape(window)[0], 1, 1, 1]
        return (tf.tile(logits, repeat[:2]),
                [tuple(tf.tile(tf.pad(tensor, slots), repeat) for tensor in cache) for cache in caches])

    def start(self, prompt_ids, rows):
        window, padded, filled = self._start_window(prompt_ids, rows)
        logits, caches = self._caches_of(window, rows)
        return logits, (padded, filled, caches)

    def step(self, ids, state):
        window, filled, caches = state
        restart = filled >= self.context
        window, filled = self._slide(window, filled, ids)
        logits, caches = tf.cond(restart, lambda: self._caches_of(window[:, :self.keep], tf.shape(ids)[0]),
                                 lambda: self._one_position(ids, filled - 1, caches))
        return logits, (window, filled, caches)

    def _one_position(self, ids, position, caches):
        """Reads ids (rows,) at `position` of the window -> (logits (rows, vocab), caches with that slot filled)."""
        slot = (tf.range(self.context) == position)[tf.newaxis, :, tf.newaxis, tf.newaxis]
        allowed = (tf.range(self.context) <= position)[tf.newaxis]  # the query sees slots 0 .. position
        x = self.position_embedding(self.token_embedding(ids[:, tf.newaxis]), start=position)  # (rows, 1, d)
        new_caches = []
        for block, (keys, values) in zip(self.blocks, caches):
            h = _with_a_zero_row(block.attention_norm(x))  # (rows + 1, 1, d): see _with_a_zero_row
            # This position's key and value go into its slot; its query attends to every filled slot.
            keys = tf.where(slot, block.attention.key_dense(h)[:-1], keys)
            values = tf.where(slot, block.attention.value_dense(h)[:-1], values)
            outputs, _ = attend(block.attention.query_dense(h)[:-1], keys, values, allowed)
            x = block.mlp(x + block.attention.output_dense(outputs))
            new_caches.append((keys, values))
        return output_logits(self.model, x[:, 0]), new_caches


def _with_a_zero_row(h):
    """h (rows, 1, d_model) with a row of zeros appended, which the projections' results drop again.

    The same function, faster: for a single row, XLA on a CPU compiles each matrix-vector product into a loop that
    recomputes the LayerNorm before it for every output element; with two rows it stays a matrix product. On the
    default model that takes generation with the cache from 0.35 to 0.20 ms a character (docs/text.md).
    """
    return tf.pad(h, [[0, 1], [0, 0], [0, 0]])
