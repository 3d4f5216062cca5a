"""tf.data input pipelines whose randomness is owned: keyed by (seed, epoch) and (seed, step).

A resumed run therefore reads exactly the batches an uninterrupted one would, and N replicas
see the same global batches as one replica (tf.distribute splits each global batch by rows).
"""

import numpy as np
import tensorflow as tf


def epoch_seed(seed, epoch):
    """A 31-bit shuffle seed derived from (seed, epoch) alone."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] >> 1)


def cached_examples(array, to_model_range):
    """A cached dataset of the examples in `array`, each mapped by `to_model_range` once."""
    dataset = tf.data.Dataset.from_tensor_slices(array)
    return dataset.map(to_model_range, num_parallel_calls=tf.data.AUTOTUNE).cache()


def steps_per_epoch(num_examples, global_batch_size, limit=None):
    """Full global batches per epoch (the remainder is dropped; the shuffle varies it), capped at `limit`."""
    steps = num_examples // global_batch_size
    return min(steps, limit) if limit else steps


def epoch_batches(examples, num_examples, global_batch_size, seed, epoch, steps):
    """Yields (global_step, batch) for one epoch: shuffled by (seed, epoch), `steps` full batches.

    global_step = epoch * steps + index in the epoch, the key for each step's own randomness.
    """
    dataset = examples.shuffle(num_examples, seed=epoch_seed(seed, epoch), reshuffle_each_iteration=False)
    dataset = dataset.batch(global_batch_size, drop_remainder=True).take(steps).enumerate(start=epoch * steps)
    return shard_by_data(dataset)


def shard_by_data(dataset):
    """Several workers: each reads the same global batches and keeps its rows of each (DATA sharding),
    so the global batch, and every example's noise key, are those of a single process."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _key(seed, step):
    return tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])


def keyed_normal(shape, seed, step):
    """N(0, 1) noise from a counter-based generator keyed by (seed, step); row i is global example i."""
    return tf.random.stateless_normal(shape, seed=_key(seed, step))


BERNOULLI_STREAM = 1  # folded into keyed_bernoulli's keys: its bits are not keyed_normal's of the same key


def keyed_bernoulli(probabilities, seed, step):
    """0/1 samples x ~ Bernoulli(p), one for each entry p of `probabilities`, keyed by (seed, step).

    x = [u < p] with u ~ U[0, 1) from the key folded with BERNOULLI_STREAM, so the same (seed, step) also
    keying a batch's eps (keyed_normal) gives independent draws; row i is global example i, as there.
    """
    key = tf.random.experimental.stateless_fold_in(_key(seed, step), BERNOULLI_STREAM)
    uniform = tf.random.stateless_uniform(tf.shape(probabilities), seed=key)
    return tf.cast(uniform < probabilities, probabilities.dtype)
