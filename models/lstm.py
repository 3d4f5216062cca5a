"""The tutorial's character-level text generator: Embedding, LSTM layer(s), softmax over the vocabulary.

    ids (batch, time) -> Embedding -> LSTM x layers (every step's output) -> Dense -> logits (batch, time, vocab)

The logits at position t are the model's guess of the character at t + 1; a softmax makes them
probabilities. On a GPU, Keras runs each LSTM with cuDNN as long as its arguments keep the defaults
cuDNN needs (tanh, sigmoid recurrent activation, no recurrent dropout, unroll=False, use_bias=True);
dropout is therefore applied between layers, never inside them. (On a CPU, train.py computes these
same layers faster with models/fused_lstm.py; the model and its weights are these.)
"""

import keras
import tensorflow as tf

from models import pinyin, sampling


def build_text_generator(vocab_size, embedding_dim=64, units=256, layers=1, dropout=0.0, sounds=None, rhyme=None):
    """ids (batch, time) int -> next-character logits (batch, time, vocab_size), for any length of time.
    With `sounds` (models/pinyin.py's table for the vocabulary), the embedding and the output layer also read
    each character's pinyin finals and tones; with `rhyme` too, (ids of the sentence ends, ids of the line ends),
    the LSTM and, gated, the output layer also read the sounds of the last sentence's last character
    (pinyin.RhymeMemory; read_in, read_out)."""
    if rhyme is not None and sounds is None:
        raise ValueError("the rhyme memory reads the sound table: give `sounds` with `rhyme`")
    ids = keras.Input((None,), dtype="int32", name="ids")
    if sounds is None:
        x = keras.layers.Embedding(vocab_size, embedding_dim, name="embedding")(ids)
    else:
        x = pinyin.SoundEmbedding(vocab_size, embedding_dim, sounds, name="embedding")(ids)
    if rhyme is not None:
        end_ids, reset_ids = rhyme
        memory = pinyin.RhymeMemory(vocab_size, end_ids, reset_ids, sounds, name="rhyme_memory")
        rhyme_so_far = memory(ids)
        x = read_in(x, rhyme_so_far)
    for index in range(layers):
        x = keras.layers.LSTM(units, return_sequences=True, name=f"lstm_{index + 1}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"dropout_{index + 1}")(x)
    if rhyme is not None:
        x = read_out(x, rhyme_so_far, keras.layers.Dense(1, activation="sigmoid", name="rhyme_gate"))
    # float32 logits keep the softmax exact under a mixed_float16 policy.
    if sounds is None:
        logits = keras.layers.Dense(vocab_size, dtype="float32", name="logits")(x)
    else:
        logits = pinyin.SoundLogits(vocab_size, sounds, dtype="float32", name="logits")(x)
    model = keras.Model(ids, logits, name="text_generator")
    assert model.output_shape == (None, None, vocab_size)
    return model


def read_in(x, rhyme):
    """What the first LSTM reads with a rhyme memory: [x_t, r_t], the character's embedding beside the rhyme so far,
    so that the clause can be steered towards an end that rhymes."""
    return keras.ops.concatenate([x, keras.ops.cast(rhyme, x.dtype)], axis=-1)


def read_out(h, rhyme, gate):
    """What the output layer reads with a rhyme memory: [h_t, g_t r_t], the LSTM's output beside the rhyme so far
    r_t scaled by g_t = sigmoid(w . h_t + b) in (0, 1). The output layer's rows for it then add
    g_t r_t . (V_c + M sounds(c)) to the logit of each character c (V its own kernel's rows, M its sound kernel's):
    a learned bonus for sounding like the rhyme, which the LSTM switches on (g_t near 1) where a clause that must
    rhyme ends, and off elsewhere."""
    return keras.ops.concatenate([h, gate(h) * keras.ops.cast(rhyme, h.dtype)], axis=-1)


def rhyme_parts(model):
    """(RhymeMemory, gate Dense) of a text generator built with `rhyme`, or None."""
    names = {layer.name for layer in model.layers}
    return (model.get_layer("rhyme_memory"), model.get_layer("rhyme_gate")) if "rhyme_memory" in names else None


def recurrent_parts(model):
    """(embedding, [LSTM layers], output Dense) of a text generator, for stepping it one character at a time."""
    embedding = model.get_layer("embedding")
    lstms = [layer for layer in model.layers if isinstance(layer, keras.layers.LSTM)]
    return embedding, lstms, model.get_layer("logits")


class TextSampler(sampling.Sampler):
    """Generates text from a trained text generator, one character per step with the LSTM state carried.

    The tutorial's loop feeds the whole text so far to the model for every new character (cost growing
    with the square of the length); here the prompt is read once, and each new character is one step of
    each LSTM cell from the state the previous one left, all inside one compiled function (models/sampling.py).
    """

    def __init__(self, model):
        self.embedding, self.lstms, self.output = recurrent_parts(model)
        self.rhyme = rhyme_parts(model)
        super().__init__(self.output.units)

    def step(self, ids, states):
        """One character for each row: ids (rows,) -> (next-character logits (rows, vocab), new states); the
        states are [h, c] per LSTM, then the rhyme memory's when the model has one."""
        x = self.embedding(ids)
        if self.rhyme is not None:
            memory, gate = self.rhyme
            rhyme, rhyme_state = memory.step(ids, states[-1])
            x = read_in(x, rhyme)
        new_states = []
        for lstm, state in zip(self.lstms, states):
            x, state = lstm.cell(x, state)  # h, [h, c]
            new_states.append(state)
        if self.rhyme is not None:
            x = read_out(x, rhyme, gate)
            new_states.append(rhyme_state)
        return self.output(x), new_states

    def start(self, prompt_ids, rows):
        """Feeds the prompt (at least one id) from a zero state, then copies its state to every row."""
        states = [[tf.zeros((1, lstm.units)), tf.zeros((1, lstm.units))] for lstm in self.lstms]
        if self.rhyme is not None:
            states.append(self.rhyme[0].initial_state(1))
        logits = tf.zeros((1, self.vocab_size))
        for index in tf.range(tf.shape(prompt_ids)[0]):
            logits, states = self.step(prompt_ids[index][tf.newaxis], states)
        repeat = [rows, 1]
        return tf.tile(logits, repeat), [[tf.tile(part, repeat) for part in state] for state in states]
