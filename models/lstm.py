"""The tutorial's character-level text generator: Embedding, LSTM layer(s), softmax over the vocabulary.

    ids (batch, time) -> Embedding -> LSTM x layers (every step's output) -> Dense -> logits (batch, time, vocab)

The logits at position t are the model's guess of the character at t + 1; a softmax makes them
probabilities. On a GPU, Keras runs each LSTM with cuDNN as long as its arguments keep the defaults
cuDNN needs (tanh, sigmoid recurrent activation, no recurrent dropout, unroll=False, use_bias=True);
dropout is therefore applied between layers, never inside them.
"""

import keras


def build_text_generator(vocab_size, embedding_dim=64, units=256, layers=1, dropout=0.0):
    """ids (batch, time) int -> next-character logits (batch, time, vocab_size), for any length of time."""
    ids = keras.Input((None,), dtype="int32", name="ids")
    x = keras.layers.Embedding(vocab_size, embedding_dim, name="embedding")(ids)
    for index in range(layers):
        x = keras.layers.LSTM(units, return_sequences=True, name=f"lstm_{index + 1}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"dropout_{index + 1}")(x)
    # float32 logits keep the softmax exact under a mixed_float16 policy.
    logits = keras.layers.Dense(vocab_size, dtype="float32", name="logits")(x)
    model = keras.Model(ids, logits, name="text_generator")
    assert model.output_shape == (None, None, vocab_size)
    return model


def recurrent_parts(model):
    """(embedding, [LSTM layers], output Dense) of a text generator, for stepping it one character at a time."""
    embedding = model.get_layer("embedding")
    lstms = [layer for layer in model.layers if isinstance(layer, keras.layers.LSTM)]
    return embedding, lstms, model.get_layer("logits")


class TextSampler:
    """Generates text from a trained text generator, one character per step with the LSTM state carried.

    The tutorial's loop feeds the whole text so far to the model for every new character (cost growing
    with the square of the length); here the prompt is read once, and each new character is one step of
    each LSTM cell from the state the previous one left, all inside one compiled function.
    """

    def __init__(self, model):
        import tensorflow as tf

        self.tf = tf
        self.embedding, self.lstms, self.output = recurrent_parts(model)
        self.vocab_size = self.output.units
        spec = [tf.TensorSpec((None,), tf.int32), tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.float32),
                tf.TensorSpec((), tf.int32), tf.TensorSpec((2,), tf.int64)]
        self._generate = tf.function(self._generate_ids, input_signature=spec)
        self._read = tf.function(self._read_prompt, input_signature=spec[:1])

    def _step(self, ids, states):
        """One character for each row: ids (batch,) -> (next-character logits (batch, vocab), new states)."""
        x = self.embedding(ids)
        new_states = []
        for lstm, state in zip(self.lstms, states):
            x, state = lstm.cell(x, state)  # h, [h, c]
            new_states.append(state)
        return self.output(x), new_states

    def _read_prompt(self, prompt_ids):
        """Feeds the prompt (at least one id) from a zero state; returns (logits after its last char, states)."""
        tf = self.tf
        states = [[tf.zeros((1, lstm.units)), tf.zeros((1, lstm.units))] for lstm in self.lstms]
        logits = tf.zeros((1, self.vocab_size))
        for index in tf.range(tf.shape(prompt_ids)[0]):
            logits, states = self._step(prompt_ids[index][tf.newaxis], states)
        return logits, states

    def _generate_ids(self, prompt_ids, length, temperature, top_k, seed):
        tf = self.tf
        logits, states = self._read_prompt(prompt_ids)
        generated = tf.TensorArray(tf.int32, size=length)
        for index in tf.range(length):
            scaled = logits / temperature
            if top_k > 0:
                # Keep the k most likely characters: everything below the k-th largest logit is excluded.
                kth_largest = tf.math.top_k(scaled, k=top_k).values[:, -1:]
                scaled = tf.where(scaled < kth_largest, tf.constant(-float("inf")), scaled)
            # A counter-based draw keyed by (seed, position): the same seed gives the same text.
            next_id = tf.random.stateless_categorical(scaled, 1, seed=seed + tf.stack([0, tf.cast(index, tf.int64)]),
                                                      dtype=tf.int32)[:, 0]
            generated = generated.write(index, next_id[0])
            logits, states = self._step(next_id, states)
        return generated.stack()

    def next_char_logits(self, prompt_ids):
        """The logits of the character after `prompt_ids`, computed statefully: (vocab,) numpy."""
        return self._read(self.tf.constant(prompt_ids, self.tf.int32))[0][0].numpy()

    def generate(self, prompt_ids, length, temperature=1.0, top_k=0, seed=0):
        """`length` new ids after the prompt, sampled from softmax(logits / temperature), top-k if k > 0."""
        tf = self.tf
        ids = self._generate(tf.constant(prompt_ids, tf.int32), tf.constant(length, tf.int32),
                             tf.constant(temperature, tf.float32), tf.constant(min(top_k, self.vocab_size), tf.int32),
                             tf.constant([seed, 0], tf.int64))
        return ids.numpy()
