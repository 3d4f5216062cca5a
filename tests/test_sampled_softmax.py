"""The sampled softmax loss (training/sampled_softmax.py): its draw, and its gradient against the full softmax's.

Training with it is tested where the tiny Transformer trains (TINY_TRANSFORMER uses it): a short training lowers
the full softmax's held-out bits, a resumed run equals an uninterrupted one and 2 replicas equal 1.
"""

import numpy as np
import pytest

V, WIDTH = 200, 8
DRAWS = 400  # draws averaged: their spread is a few % of the gradient's size


@pytest.fixture(scope="module")
def problem():
    """A Zipf-like training text over V characters, an output layer, and hidden vectors with their targets."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    train_ids = rng.zipf(1.3, 20000) % V
    kernel = tf.constant(rng.normal(size=(V, WIDTH)) * 0.5, tf.float32)
    # The bias of a model that has learnt how often each character occurs (as one does in its first steps).
    bias = tf.constant(np.log(np.bincount(train_ids, minlength=V) + 1.0), tf.float32)
    hidden = tf.constant(rng.normal(size=(4, 6, WIDTH)), tf.float32)
    targets = tf.constant(rng.integers(0, V, (4, 6)))
    return train_ids, kernel, bias, hidden, targets


def gradient_of_hidden(loss, hidden):
    """d sum(loss(hidden)) / d hidden, flattened."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(hidden)
        total = tf.reduce_sum(loss(hidden))
    return tf.reshape(tape.gradient(total, hidden), [-1])


def test_the_draw_is_keyed_by_seed_and_step_and_follows_the_training_text(problem):
    from training.sampled_softmax import SampledSoftmax

    train_ids = problem[0]
    softmax = SampledSoftmax(train_ids, V, 64, seed=3)
    first = softmax.draw(7).numpy()
    assert first.shape == (64,) and 0 <= first.min() and first.max() < V
    np.testing.assert_array_equal(first, SampledSoftmax(train_ids, V, 64, seed=3).draw(7).numpy())
    assert not np.array_equal(first, softmax.draw(8).numpy())
    assert not np.array_equal(first, SampledSoftmax(train_ids, V, 64, seed=4).draw(7).numpy())
    # Over many steps, the most frequent character of the text is drawn most.
    drawn = np.concatenate([softmax.draw(step).numpy() for step in range(100)])
    assert np.bincount(drawn, minlength=V).argmax() == np.bincount(train_ids, minlength=V).argmax()


def test_the_loss_is_tensorflows_sampled_softmax_loss_and_compiles_with_xla(problem):
    """The written-out loss equals tf.nn.sampled_softmax_loss given the same draw and expected counts (accidental
    hits removed), and compiles with XLA (--jit), which TensorFlow's cannot."""
    import tensorflow as tf

    from training.sampled_softmax import SampledSoftmax

    train_ids, kernel, bias, hidden, targets = problem
    softmax = SampledSoftmax(train_ids, V, 150, seed=1)  # 150 draws of 200: targets are drawn, hits happen
    drawn = softmax.draw(5)
    labels = tf.reshape(tf.cast(targets, tf.int64), (-1, 1))
    # TensorFlow's kernel removes one draw of a target drawn twice, ours every draw of it: compared where a
    # target is drawn at most once, some of them once (an accidental hit, removed by both).
    times_drawn = np.sum(labels.numpy() == drawn.numpy()[np.newaxis], axis=1)
    compared = times_drawn <= 1
    assert np.any(times_drawn == 1) and compared.sum() > 15
    proposal = tf.exp(softmax.log_proposal)
    expected = (150 * tf.gather(proposal, labels), 150 * tf.gather(proposal, drawn))
    tensorflows = tf.nn.sampled_softmax_loss(kernel, bias, labels, tf.reshape(hidden, (-1, WIDTH)), 150, V,
                                             sampled_values=(tf.cast(drawn, tf.int64), *expected))
    ours = softmax.loss(hidden, targets, kernel, bias, 5)
    np.testing.assert_allclose(tf.reshape(ours, [-1]).numpy()[compared], tensorflows.numpy()[compared], rtol=1e-5)
    # Compiled, the same loss of the same draw; the draw compiles too (XLA's own numbers: valid character ids).
    compiled = tf.function(lambda: softmax.loss_against(hidden, targets, kernel, bias, drawn), jit_compile=True)
    np.testing.assert_allclose(compiled().numpy(), ours.numpy(), rtol=1e-5, atol=1e-5)
    compiled_draw = tf.function(softmax.draw, jit_compile=True)(tf.constant(5)).numpy()
    assert compiled_draw.shape == (150,) and 0 <= compiled_draw.min() and compiled_draw.max() < V


def test_the_sampled_gradient_points_where_the_full_softmax_gradient_does(problem):
    """Averaged over draws, the gradient of the sampled loss nears the full cross-entropy's as N grows; without
    its log-expected-count correction it would not (about 20% off whatever N)."""
    import tensorflow as tf

    from training.sampled_softmax import SampledSoftmax

    train_ids, kernel, bias, hidden, targets = problem
    full = gradient_of_hidden(lambda h: tf.nn.sparse_softmax_cross_entropy_with_logits(
        targets, tf.einsum("btw,vw->btv", h, kernel) + bias), hidden).numpy()
    errors = {}
    for num_sampled in (5, 50, 150):
        softmax = SampledSoftmax(train_ids, V, num_sampled, seed=1)
        sampled = tf.function(lambda step: gradient_of_hidden(  # noqa: B023 (called inside this iteration)
            lambda h: softmax.loss(h, targets, kernel, bias, step), hidden))
        mean = np.mean([sampled(tf.constant(step)).numpy() for step in range(DRAWS)], axis=0)
        errors[num_sampled] = np.linalg.norm(mean - full) / np.linalg.norm(full)
    assert errors[150] < errors[50] < errors[5], errors
    assert errors[50] < 0.1 and errors[150] < 0.05, errors


def test_a_draw_as_large_as_the_vocabulary_is_refused(problem):
    from training.sampled_softmax import SampledSoftmax

    with pytest.raises(ValueError, match="--sampled-softmax 200 must be from 1 to the vocabulary's size less one"):
        SampledSoftmax(problem[0], V, V, seed=0)
