"""Sampled softmax (Jean et al. 2015, "On Using Very Large Target Vocabulary"): a training loss for a text model
whose vocabulary is large, as the 6,668 characters of the Tang poems are.

The full loss scores every position against every character: -log softmax(h W + b)[target], a (positions x
vocabulary) matrix product and softmax each step, most of the step's time when the vocabulary is large and the
model small (docs/text.md measures it). The sampled loss scores each position against its target and one shared
draw S of `num_sampled` characters from a proposal Q (the training text's character frequencies): the
logits of the target and of S, each less log(expected count of that character in S), in a softmax of
num_sampled + 1 (what tf.nn.sampled_softmax_loss computes). Its gradient is an estimate of the full
one, cheap as num_sampled is small; the model is unchanged, and is measured (held out, generated from) with its
full softmax.

The draw is stateless, keyed by (seed, optimizer step): one set for every position of the global batch on every
replica, so 2 replicas draw what 1 does, and a resumed run draws what an uninterrupted one did.
"""

import numpy as np
import tensorflow as tf


class SampledSoftmax:
    """The sampled softmax loss of a text model whose output layer is logits = h kernel^T + bias."""

    def __init__(self, train_ids, vocab_size, num_sampled, seed):
        if not 1 <= num_sampled < vocab_size:
            raise ValueError(f"--sampled-softmax {num_sampled} must be from 1 to the vocabulary's size less one "
                             f"({vocab_size - 1}), or 0 for the full softmax")
        # Q(c): c's share of the training text (each character counted once more, so none has Q = 0). The
        # frequent characters, the ones a position's softmax must push down most often, are drawn most. (Measured
        # on the Tang poems: word2vec's flattening, count ** 0.75, gave 0.15 bits more after an epoch.)
        counts = np.bincount(np.asarray(train_ids), minlength=vocab_size).astype(np.float64) + 1.0
        proposal = counts / counts.sum()
        self.num_sampled = num_sampled
        self.vocab_size = vocab_size
        self.seed = seed
        self.log_proposal = tf.constant(np.log(proposal), tf.float32)  # (vocab,)

    def draw(self, step):
        """(num_sampled,) character ids drawn from Q with replacement, keyed by (seed, step). (Under XLA, --jit,
        TensorFlow draws other numbers from the same key: a compiled run draws its own, as repeatably.)"""
        key = tf.stack([tf.constant(self.seed % 2**31, tf.int32), tf.cast(step, tf.int32)])
        return tf.random.stateless_categorical(self.log_proposal[tf.newaxis], self.num_sampled, key,
                                               dtype=tf.int32)[0]

    def loss(self, hidden, targets, kernel, bias, step):
        """Per-position sampled loss in nats, (batch, time), of hidden (batch, time, width) against targets
        (batch, time); kernel (vocab, width) and bias (vocab,) are the output layer's: logits = h kernel^T + bias.

        tf.nn.sampled_softmax_loss computes this (tests/test_sampled_softmax.py checks they agree); it is written
        out here because that function's removal of accidental hits has no XLA kernel, and --jit compiles the step.
        """
        return self.loss_against(hidden, targets, kernel, bias, self.draw(step))

    def loss_against(self, hidden, targets, kernel, bias, sampled):
        """loss() against the drawn characters `sampled` (num_sampled,)."""
        width = tf.shape(hidden)[-1]
        h = tf.reshape(tf.cast(hidden, tf.float32), (-1, width))  # (positions, width)
        labels = tf.reshape(tf.cast(targets, tf.int32), (-1,))
        kernel, bias = tf.cast(kernel, tf.float32), tf.cast(bias, tf.float32)
        # Each logit less log(expected count in the draw): with replacement, num_sampled * Q(c) for character c.
        corrected_bias = bias - (tf.math.log(float(self.num_sampled)) + self.log_proposal)
        target_logits = tf.reduce_sum(h * tf.gather(kernel, labels), axis=-1) + tf.gather(corrected_bias, labels)
        drawn_logits = tf.matmul(h, tf.gather(kernel, sampled), transpose_b=True) + tf.gather(corrected_bias, sampled)
        # A drawn character that is the position's own target is no competitor of it (an "accidental hit"): its
        # logit goes to the lowest float, every time it was drawn (TensorFlow's function does it to one of them).
        hits = tf.equal(labels[:, tf.newaxis], sampled[tf.newaxis, :])
        drawn_logits = tf.where(hits, tf.float32.min, drawn_logits)
        # -log softmax over (target, drawn characters), the target first.
        logits = tf.concat([target_logits[:, tf.newaxis], drawn_logits], axis=1)
        per_position = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.zeros_like(labels), logits)
        return tf.reshape(per_position, tf.shape(targets))
