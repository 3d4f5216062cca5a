"""Sampling text from any of the project's text models, one character at a time, inside one compiled function.

A text model's sampler gives two things (a subclass of Sampler):

    start(prompt_ids, rows)   reads the prompt once -> (logits of the next character (rows, vocab), state)
    step(ids, state)          feeds one character per row (rows,) -> (logits of the one after, new state)

The state is whatever the model carries between characters: the LSTM's (h, c) per layer, a Transformer's
keys and values per layer (its KV cache). Sampler.generate runs the loop around them: each new character
is drawn from softmax(logits / temperature), optionally kept to the top-k most likely characters and to the
nucleus (top-p), and optionally constrained by a per-position bias (0 allows a character, -inf forbids it),
which is how poem forms place their punctuation. Several rows sample at once from the same prompt.

generate(..., jit=True) compiles the whole loop with XLA into one program (generate.py --jit): each step's dozens of
small ops become a few fused kernels, where the plain graph dispatches every op on its own. XLA needs every
shape known, so the length, top-k and number of rows become constants of the program (one compilation, of some
seconds, per new value or prompt length), and its random numbers differ from the plain graph's: the same seed
gives the same text with the same `jit`, another text with the other.
"""

import numpy as np
import tensorflow as tf

NEGATIVE_INFINITY = float("-inf")


def filter_logits(logits, temperature, top_k, top_p):
    """logits (rows, vocab) / temperature, with every character outside the top-k (k > 0) and outside the
    nucleus (the fewest most likely characters whose probabilities reach top_p; p < 1) set to -inf."""
    scaled = logits / temperature
    if top_k > 0:
        # Everything below the k-th largest logit is excluded (ties with it are kept).
        kth_largest = tf.math.top_k(scaled, k=top_k).values[:, -1:]
        scaled = tf.where(scaled < kth_largest, NEGATIVE_INFINITY, scaled)
    if top_p < 1.0:
        # Nucleus sampling (Holtzman et al. 2020): sorted by probability, a character is kept while the
        # mass of the more likely ones before it is still below p, so the most likely one always is.
        sorted_logits = tf.sort(scaled, direction="DESCENDING", axis=-1)
        mass_before = tf.cumsum(tf.nn.softmax(sorted_logits), axis=-1, exclusive=True)
        kept = tf.where(mass_before < top_p, sorted_logits, float("inf"))
        smallest_kept = tf.reduce_min(kept, axis=-1, keepdims=True)
        scaled = tf.where(scaled < smallest_kept, NEGATIVE_INFINITY, scaled)
    return scaled


class Sampler:
    """The sampling loop shared by the text models; a subclass gives `start` and `step` (module docstring)."""

    def __init__(self, vocab_size):
        self.vocab_size = vocab_size
        spec = [tf.TensorSpec((None,), tf.int32),  # prompt ids
                tf.TensorSpec((), tf.int32),  # length
                tf.TensorSpec((), tf.float32),  # temperature
                tf.TensorSpec((), tf.int32),  # top_k (0: off)
                tf.TensorSpec((), tf.float32),  # top_p (1: off)
                tf.TensorSpec((2,), tf.int64),  # seed
                tf.TensorSpec((), tf.int32),  # rows
                tf.TensorSpec((None, vocab_size), tf.float32)]  # bias per generated position
        self._generate = tf.function(self._generate_ids, input_signature=spec)
        self._next_logits = tf.function(lambda prompt_ids: self.start(prompt_ids, 1)[0][0],
                                         input_signature=spec[:1])
        # Traced again for each new length, top-k, rows and input shape, which XLA needs as constants.
        self._generate_compiled = tf.function(self._generate_ids, jit_compile=True)

    def start(self, prompt_ids, rows):
        """Reads prompt_ids (at least one) -> (logits of the next character (rows, vocab), state)."""
        raise NotImplementedError

    def step(self, ids, state):
        """Feeds ids (rows,) -> (logits of the next character (rows, vocab), new state)."""
        raise NotImplementedError

    def _generate_ids(self, prompt_ids, length, temperature, top_k, top_p, seed, rows, bias):
        logits, state = self.start(prompt_ids, rows)
        generated = tf.TensorArray(tf.int32, size=length)
        last_bias = tf.shape(bias)[0] - 1
        for index in tf.range(length):
            # A constraint first, so top-k and top-p choose among the characters it allows.
            constrained = logits + bias[tf.minimum(index, last_bias)]
            scaled = filter_logits(constrained, temperature, top_k, top_p)
            # A counter-based draw keyed by (seed, position): the same seed gives the same text.
            next_ids = tf.random.stateless_categorical(scaled, 1, seed=seed + tf.stack([0, tf.cast(index, seed.dtype)]),
                                                       dtype=tf.int32)[:, 0]
            generated = generated.write(index, next_ids)
            logits, state = self.step(next_ids, state)
        return tf.transpose(generated.stack())  # (rows, length)

    def next_char_logits(self, prompt_ids):
        """The logits of the character after `prompt_ids`, as the sampler computes them: (vocab,) numpy."""
        return self._next_logits(tf.constant(prompt_ids, tf.int32)).numpy()

    def generate(self, prompt_ids, length, temperature=1.0, top_k=0, top_p=1.0, seed=0, rows=None, bias=None,
                 jit=False):
        """`length` new ids after the prompt: (length,) numpy, or (rows, length) when rows is given.

        bias: None, or (positions, vocab) added to the logits of generated position i (the last row for
        every later one); 0 allows a character, -inf forbids it. jit: the loop compiled with XLA (module docstring).
        """
        if length == 0:  # nothing to draw (a compiled loop cannot stack zero rows of unknown width)
            return np.zeros((0,) if rows is None else (rows, 0), np.int32)
        bias = np.zeros((1, self.vocab_size), np.float32) if bias is None else np.asarray(bias, np.float32)
        top_k, count = min(top_k, self.vocab_size), 1 if rows is None else rows
        if not jit:  # length, top-k and rows as tensors: one graph for them all
            length, top_k, count = (tf.constant(value, tf.int32) for value in (length, top_k, count))
        run = self._generate_compiled if jit else self._generate
        # XLA's stateless draws take 32-bit keys: the seed's 32 bits as a signed int32 (seeds are below 2**32).
        key = tf.constant(np.array([seed, 0], np.uint32).view(np.int32)) if jit else tf.constant([seed, 0], tf.int64)
        ids = run(tf.constant(prompt_ids, tf.int32), length, tf.constant(temperature, tf.float32), top_k,
                  tf.constant(top_p, tf.float32), key, count, tf.constant(bias))
        ids = ids.numpy()
        return ids[0] if rows is None else ids
