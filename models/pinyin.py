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
