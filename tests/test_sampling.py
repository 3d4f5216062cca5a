"""The sampling loop shared by the text models (models/sampling.py): top-k, nucleus, constraints, rows."""

import numpy as np
import pytest


def test_top_k_and_nucleus_keep_exactly_the_most_likely_characters():
    import tensorflow as tf

    from models.sampling import filter_logits

    probabilities = np.array([[0.5, 0.05, 0.3, 0.15]], np.float32)
    logits = tf.math.log(probabilities)
    kept = lambda **kwargs: np.isfinite(filter_logits(logits, 1.0, **kwargs).numpy())[0].tolist()  # noqa: E731
    assert kept(top_k=2, top_p=1.0) == [True, False, True, False]
    # Nucleus: 0.5 alone does not reach 0.6; 0.5 + 0.3 does, so two characters are kept.
    assert kept(top_k=0, top_p=0.6) == [True, False, True, False]
    assert kept(top_k=0, top_p=0.5) == [True, False, False, False]  # the mass before 0.3 is already 0.5
    assert kept(top_k=0, top_p=0.01) == [True, False, False, False]  # the most likely always stays
    assert kept(top_k=0, top_p=0.96) == [True, True, True, True]
    assert kept(top_k=3, top_p=0.6) == [True, False, True, False]  # both filters apply
    # Temperature divides before filtering, and keeps the order.
    np.testing.assert_allclose(filter_logits(logits, 2.0, 0, 1.0).numpy(), logits.numpy() / 2, rtol=1e-6)


@pytest.fixture(scope="module")
def sampler():
    from models.lstm import TextSampler, build_text_generator

    return TextSampler(build_text_generator(vocab_size=12, embedding_dim=4, units=8))


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
def test_a_bias_constrains_every_position_and_rows_sample_independently(sampler, jit):
    """In the plain graph and compiled whole with XLA (generate.py --jit)."""
    allowed = [[1, 2], [5], [7, 8, 9]]  # position 0, 1, then every later position
    bias = np.full((3, 12), -np.inf, np.float32)
    for position, ids in enumerate(allowed):
        bias[position, ids] = 0.0
    ids = sampler.generate([0, 3], 20, temperature=1.5, seed=4, rows=64, bias=bias, jit=jit)
    assert ids.shape == (64, 20)
    assert set(ids[:, 0]) <= {1, 2} and set(ids[:, 1]) == {5} and set(ids[:, 2:].ravel()) <= {7, 8, 9}
    assert len({tuple(row) for row in ids}) > 32  # rows are separate draws, not copies
    np.testing.assert_array_equal(sampler.generate([0, 3], 20, temperature=1.5, seed=4, rows=64, bias=bias, jit=jit),
                                  ids)
    # One row is the first row of many: the draws are keyed by (seed, position), row by row.
    np.testing.assert_array_equal(sampler.generate([0, 3], 20, temperature=1.5, seed=4, bias=bias, jit=jit), ids[0])


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
def test_top_p_one_and_zero_length(sampler, jit):
    plain = sampler.generate([1], 15, seed=2, jit=jit)
    np.testing.assert_array_equal(sampler.generate([1], 15, seed=2, top_p=1.0, top_k=0, jit=jit), plain)
    greedy = sampler.generate([1], 15, seed=2, top_k=1, jit=jit)
    np.testing.assert_array_equal(sampler.generate([1], 15, seed=9, top_p=1e-6, jit=jit), greedy)  # both: the argmax
    np.testing.assert_array_equal(sampler.generate([1], 15, seed=2, top_k=1, jit=not jit), greedy)  # XLA's too
    assert sampler.generate([1], 0).shape == (0,) and sampler.generate([1], 0, rows=3).shape == (3, 0)
