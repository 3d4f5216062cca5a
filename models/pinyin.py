"""How each character sounds, for a text model that has to rhyme: its pinyin finals (韵母) and tones beside its id.

A character-level model sees 春 and 人 as two unrelated ids: that they rhyme (both end in -en) it can learn only
from the poems where such pairs stand at rhyming ends, one pair at a time, over some 6,000 characters. Told each
character's sound (pypinyin, every reading it lists), a model can carry "the rhyme so far" in a few numbers and
raise every character of that final at once. `--pinyin` (train.py lstm) swaps the text generator's embedding
and output layer for these two, which add a learned vector per sound to what they compute:

    in:   x_t      = E[id_t] + sum over the sounds s of id_t of  S[s]             (SoundEmbedding)
    out:  logit(c) = h_t . (W_c + sum over the sounds s of c of  R[s]) + b_c      (SoundLogits)

`sounds` is the fixed (vocab, len(SOUNDS)) 0/1 table of which character has which sound, saved with the model
as a non-trainable weight, so generate.py needs neither pypinyin nor the vocabulary to run it.

`--rhyme` adds RhymeMemory (below): the sounds of the character before the latest sentence end, the rhyme an even
clause must match, which the LSTM reads beside each character and the output layer reads through a gate.
"""

import keras
import numpy as np
from pypinyin import Style, pinyin

# Mandarin's finals as pypinyin's strict finals spell them (ü as v), then the four tones and the neutral one (5).
FINALS = ("a", "o", "e", "ê", "er", "i", "u", "v", "ai", "ei", "ao", "ou", "an", "en", "ang", "eng", "ong",
          "ia", "ie", "iao", "iou", "ian", "in", "iang", "ing", "iong", "ua", "uo", "uai", "uei", "uan", "uen",
          "uang", "ueng", "ve", "van", "vn")
TONES = ("1", "2", "3", "4", "5")
SOUNDS = FINALS + tuple("tone " + tone for tone in TONES)


def finals_of(char):
    """The finals of every reading pypinyin knows for `char` (a set; empty for punctuation and the unknown)."""
    readings = pinyin(char, style=Style.FINALS, heteronym=True, errors="ignore")
    return set(readings[0]) if readings else set()


def tones_of(char):
    """The tones (1-4, 5 for the neutral tone) of every reading pypinyin knows for `char`."""
    readings = pinyin(char, style=Style.FINALS_TONE3, heteronym=True, errors="ignore", neutral_tone_with_five=True)
    return {reading[-1] for reading in (readings[0] if readings else ()) if reading[-1:] in TONES}


def sound_table(chars):
    """(len(chars), len(SOUNDS)) float32: 1 where the character has that final or tone in one of its readings."""
    column = {sound: index for index, sound in enumerate(SOUNDS)}
    table = np.zeros((len(chars), len(SOUNDS)), np.float32)
    for row, char in enumerate(chars):
        for sound in finals_of(char) | {"tone " + tone for tone in tones_of(char)}:
            if sound in column:
                table[row, column[sound]] = 1.0
    return table


class _SoundLayer(keras.layers.Layer):
    """Holds the (vocab, sounds) table as a non-trainable weight: given when built for training, loaded after."""

    def __init__(self, vocab_size, sounds=None, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self._initial_sounds = None if sounds is None else np.asarray(sounds, np.float32)
        if self._initial_sounds is not None and self._initial_sounds.shape != (vocab_size, len(SOUNDS)):
            raise ValueError(f"the sound table is {self._initial_sounds.shape}, not ({vocab_size}, {len(SOUNDS)})")

    def _add_sounds(self):
        initial = self._initial_sounds
        self.sounds = self.add_weight(
            name="sounds", shape=(self.vocab_size, len(SOUNDS)), trainable=False,
            initializer="zeros" if initial is None else (lambda shape, dtype=None: keras.ops.cast(initial, dtype)))

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size}


@keras.saving.register_keras_serializable(package="aigc")
class SoundEmbedding(_SoundLayer):
    """ids (batch, time) -> E[id] + sounds[id] S: an Embedding plus a learned vector for each of the id's sounds."""

    def __init__(self, vocab_size, output_dim, sounds=None, **kwargs):
        super().__init__(vocab_size, sounds, **kwargs)
        self.output_dim = output_dim

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(name="embeddings", shape=(self.vocab_size, self.output_dim),
                                          initializer="uniform")  # keras.layers.Embedding's initializer
        self.sound_embeddings = self.add_weight(name="sound_embeddings", shape=(len(SOUNDS), self.output_dim),
                                                initializer="uniform")
        self._add_sounds()

    def call(self, ids):
        ids = keras.ops.cast(ids, "int32")
        return (keras.ops.take(self.embeddings, ids, axis=0)
                + keras.ops.matmul(keras.ops.take(self.sounds, ids, axis=0), self.sound_embeddings))

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim}


@keras.saving.register_keras_serializable(package="aigc")
class SoundLogits(_SoundLayer):
    """features (..., width) -> logits (..., vocab) = features kernel + bias, where each character's column of
    the kernel is its own W_c plus the learned R[s] of each of its sounds (module docstring)."""

    def __init__(self, vocab_size, sounds=None, **kwargs):
        super().__init__(vocab_size, sounds, **kwargs)
        self.units = vocab_size  # as keras.layers.Dense(vocab_size) says its width

    def build(self, input_shape):
        width = input_shape[-1]
        self.own_kernel = self.add_weight(name="kernel", shape=(width, self.vocab_size), initializer="glorot_uniform")
        self.sound_kernel = self.add_weight(name="sound_kernel", shape=(width, len(SOUNDS)), initializer="zeros")
        self.bias = self.add_weight(name="bias", shape=(self.vocab_size,), initializer="zeros")
        self._add_sounds()

    @property
    def kernel(self):
        """(width, vocab): W + R sounds^T, the kernel a Dense layer would hold (the sampled softmax gathers it)."""
        return self.own_kernel + keras.ops.matmul(self.sound_kernel, keras.ops.transpose(self.sounds))

    def call(self, features):
        return keras.ops.matmul(features, self.kernel) + self.bias

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.vocab_size)


# Where a sentence ends in Chinese text; in regular verse the even clauses end here, and their last characters rhyme.
SENTENCE_ENDS = ("。", "？", "！")


@keras.saving.register_keras_serializable(package="aigc")
class RhymeMemory(_SoundLayer):
    """ids (batch, time) -> (batch, time, len(SOUNDS)): at each position, the sounds of the character that stood
    before the latest sentence end (SENTENCE_ENDS) so far, the rhyme the next even clause must match; zeros before
    any, and again after a line end (a new poem). `--rhyme` (train.py lstm) gives it to the LSTM and the output layer
    (models/lstm.py: read_in, read_out)."""

    # An LSTM can carry a sound over the eight or more characters of a clause only as well as its training has
    # taught it; this hands the model the rhyme to match, and leaves it to learn when and how to match it.

    def __init__(self, vocab_size, end_ids=(), reset_ids=(), sounds=None, **kwargs):
        super().__init__(vocab_size, sounds, **kwargs)
        self.end_ids = [int(index) for index in end_ids]
        self.reset_ids = [int(index) for index in reset_ids]

    def build(self, input_shape=None):
        self._add_sounds()

    def _is_one_of(self, ids, members):
        if not members:
            return keras.ops.zeros_like(ids, "bool")
        return keras.ops.any(keras.ops.expand_dims(ids, -1) == keras.ops.convert_to_tensor(members, "int32"), axis=-1)

    def call(self, ids):
        ids = keras.ops.cast(ids, "int32")
        sounds = keras.ops.take(self.sounds, ids, axis=0)  # (batch, time, sounds)
        before = keras.ops.pad(sounds[:, :-1], [[0, 0], [1, 0], [0, 0]])  # the sounds of the character before each
        is_end, is_reset = self._is_one_of(ids, self.end_ids), self._is_one_of(ids, self.reset_ids)
        # What each position leaves in the memory: a sentence end the sounds before it, a line end zeros (nothing,
        # for any other character). The memory at t is what the latest such position j <= t left there.
        left = keras.ops.where(keras.ops.expand_dims(is_end, -1), before, keras.ops.zeros_like(before))
        time = keras.ops.arange(keras.ops.shape(ids)[1])
        earlier = keras.ops.expand_dims(time, 1) >= keras.ops.expand_dims(time, 0)  # (t, j): j <= t
        leaves = keras.ops.expand_dims(is_end | is_reset, 1) & earlier  # (batch, t, j)
        latest = keras.ops.max(keras.ops.where(leaves, time, -1), axis=-1)  # (batch, t); -1: none yet
        memory = keras.ops.take_along_axis(left, keras.ops.expand_dims(keras.ops.maximum(latest, 0), -1), axis=1)
        return keras.ops.where(keras.ops.expand_dims(latest >= 0, -1), memory, keras.ops.zeros_like(memory))

    def initial_state(self, rows):
        """(memory, sounds of the last character) before any character: zeros, (rows, len(SOUNDS)) each."""
        return [keras.ops.zeros((rows, len(SOUNDS)), self.compute_dtype)] * 2

    def step(self, ids, state):
        """ids (rows,), a character a row -> (the memory after it (rows, sounds), new state): call(), one step."""
        memory, last_sounds = state
        ids = keras.ops.cast(ids, "int32")
        is_end = keras.ops.expand_dims(self._is_one_of(ids, self.end_ids), -1)
        is_reset = keras.ops.expand_dims(self._is_one_of(ids, self.reset_ids), -1)
        memory = keras.ops.where(is_end, last_sounds, keras.ops.where(is_reset, keras.ops.zeros_like(memory), memory))
        return memory, [memory, keras.ops.cast(keras.ops.take(self.sounds, ids, axis=0), memory.dtype)]

    def compute_output_shape(self, input_shape):
        return (*input_shape, len(SOUNDS))

    def get_config(self):
        return {**super().get_config(), "end_ids": self.end_ids, "reset_ids": self.reset_ids}
