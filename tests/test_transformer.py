"""The Transformer text generator: causality, the KV cache against recomputation (past the window too),
training (resume, replicas, a lower held-out loss), the export, generation, evaluation and bad input."""

import json
import math

import numpy as np
import pytest

from conftest import (TINY_TRANSFORMER, assert_resume_and_two_replicas_equal_one_run, model_weights, run_in_process,
                      text_tasks_under_mixed_precision_and_xla, train, tree_digest)
from test_bad_input import assert_refused
from training.run_dir import read_history

CONTEXT = 8


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def model(request):
    from models.transformer import build_transformer_lm

    # Dropout is on in the model, off in inference: the samplers must read it as model(ids) does.
    return build_transformer_lm(vocab_size=30, context=CONTEXT, d_model=16, heads=2, layers=2, dropout=0.1,
                                tied=request.param)


def test_no_logit_depends_on_a_later_character(model):
    ids = np.random.default_rng(1).integers(0, 30, size=(2, CONTEXT)).astype(np.int32)
    changed = ids.copy()
    changed[:, 5] = (ids[:, 5] + 1) % 30
    before, after = np.asarray(model(ids)), np.asarray(model(changed))
    np.testing.assert_array_equal(before[:, :5], after[:, :5])  # positions before 5 cannot see it
    assert (np.abs(before[:, 5:] - after[:, 5:]).max(axis=-1) > 0).all()  # from 5 on, every position's moves


def test_the_sliding_rule_keeps_between_half_and_all_of_the_context():
    from models.transformer import window_length

    lengths = [window_length(total, CONTEXT) for total in range(1, 30)]
    assert lengths[:CONTEXT] == list(range(1, CONTEXT + 1))  # all of a text up to the context
    # Then a fresh window of the last 4, growing by one per character back to 8, and again.
    assert lengths[CONTEXT:CONTEXT + 11] == [4, 5, 6, 7, 8, 4, 5, 6, 7, 8, 4]
    import tensorflow as tf

    assert [int(window_length(tf.constant(total), CONTEXT)) for total in range(1, 30)] == lengths


def test_the_attention_figure_draws_its_labels_in_a_font_that_has_them(tmp_path, capsys):
    """Chinese labels in a font with CJK glyphs where one is installed; characters no installed font has as "?",
    said in one note, instead of matplotlib's empty boxes and a warning per character."""
    import warnings

    from evaluation.transformer import plot_attention
    from models.transformer import build_transformer_lm
    from training import figures

    font, shown = figures.font_for(["ab", "\\n"], size=5)
    assert shown == ["ab", "\\n"] and font.get_size() == 5
    _, shown = figures.font_for(["a" + chr(0x10FFFD)], size=5)  # a private-use character, in no font
    assert shown == ["a?"] and "note: no installed font has" in capsys.readouterr().out
    prompt = "床前明月光，疑是"
    model = build_transformer_lm(vocab_size=30, context=len(prompt), d_model=8, heads=2, layers=1, dropout=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_attention(model, prompt, np.arange(len(prompt)), tmp_path / "attention.png")
    assert not [warning for warning in caught if "missing from font" in str(warning.message)]
    assert (tmp_path / "attention.png").stat().st_size > 5000


def test_the_kv_cache_gives_the_distribution_of_recomputing_the_rule_s_window(model):
    """Prompts shorter than, as long as and longer than the context, and continuations read through the
    cache one character at a time, far past the window: each next-character distribution equals model(window)."""
    import tensorflow as tf

    from models.transformer import TransformerSampler, WindowRecomputingSampler, window_length

    ids = np.random.default_rng(0).integers(0, 30, size=60).astype(np.int32)
    cached, recomputing = TransformerSampler(model), WindowRecomputingSampler(model)

    def reference(length):  # the full recomputation on the rule's window of the first `length` ids
        return np.asarray(model(ids[np.newaxis, length - window_length(length, CONTEXT):length]))[0, -1]

    for length in (1, 5, CONTEXT, CONTEXT + 1, 13, 21):
        np.testing.assert_allclose(cached.next_char_logits(ids[:length]), reference(length), rtol=1e-5, atol=1e-5)
    for prompt_length in (3, CONTEXT, 11):
        logits, state = cached.start(tf.constant(ids[:prompt_length]), 2)
        for length in range(prompt_length, 50):  # teacher-forced: the cache reads ids[length] next
            np.testing.assert_allclose(logits[1], reference(length), rtol=1e-5, atol=1e-5, err_msg=str(length))
            logits, state = cached.step(tf.constant([ids[length]] * 2), state)
    # Sampled, both samplers draw the same characters from the same seeds, rows and filters.
    for rows, flags in ((None, {}), (3, {"top_k": 5}), (2, {"top_p": 0.8, "temperature": 0.7})):
        np.testing.assert_array_equal(cached.generate(ids[:11], 40, seed=3, rows=rows, **flags),
                                      recomputing.generate(ids[:11], 40, seed=3, rows=rows, **flags))
    # Compiled whole with XLA (generate.py --jit): its own draws, the same for both samplers.
    for rows, flags in ((3, {"top_k": 5}), (2, {"top_p": 0.8, "temperature": 0.7})):
        np.testing.assert_array_equal(cached.generate(ids[:11], 40, seed=3, rows=rows, jit=True, **flags),
                                      recomputing.generate(ids[:11], 40, seed=3, rows=rows, jit=True, **flags))


def test_the_fused_transformer_equals_the_keras_model_forward_and_backward(model):
    """models/fused_transformer.py (train.py's CPU path) against the Keras model on the same weights: logits and
    every gradient, in inference and in training (dropout on: the same draws), eagerly and compiled with XLA."""
    import keras
    import tensorflow as tf

    from models import fused_transformer

    ids = tf.constant(np.random.default_rng(3).integers(0, 30, size=(3, CONTEXT)), tf.int32)
    seed_states = [layer.seed_generator.state for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert seed_states  # the fixture's model has dropout
    start = [state.numpy() for state in seed_states]

    def logits_and_gradients(logits_of, training):
        for state, value in zip(seed_states, start):
            state.assign(value)  # each dropout layer draws again what it drew for the other
        with tf.GradientTape() as tape:
            logits = logits_of(ids, training)
            loss = tf.reduce_sum(tf.sin(logits))  # every logit's gradient differs
        gradients = tape.gradient(loss, model.trainable_variables)
        return logits.numpy(), [tf.convert_to_tensor(gradient).numpy() for gradient in gradients]

    keras_model = lambda ids, training: model(ids, training=training)  # noqa: E731
    fused = lambda ids, training: fused_transformer.text_logits(model, ids, training)  # noqa: E731
    # Compiled, both draw XLA's random numbers, the same for both and other than the plain graph's.
    for compile_ in (lambda function: function, lambda function: tf.function(function, jit_compile=True)):
        for training in (False, True):
            logits, gradients = logits_and_gradients(compile_(keras_model), training)
            fused_logits, fused_gradients = logits_and_gradients(compile_(fused), training)
            np.testing.assert_allclose(fused_logits, logits, rtol=1e-5, atol=1e-5)
            for variable, expected, got in zip(model.trainable_variables, gradients, fused_gradients):
                # Rounding, to the scale of each gradient (K's bias has no effect on the softmax, which a whole
                # row's q.b leaves as it is: both its gradients are rounding).
                np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 + 1e-6 * np.abs(expected).max(),
                                           err_msg=variable.path)
    fused_compiled = tf.function(fused, jit_compile=True)
    dropped, kept = (logits_and_gradients(fused_compiled, training)[0] for training in (True, False))
    assert not np.allclose(dropped, kept)


def test_training_with_the_fused_transformer_equals_training_with_the_keras_model(tiny_transformer_run, tmp_path):
    train(*TINY_TRANSFORMER, "--epochs", 2, "--no-fused-transformer", "--run-dir", tmp_path / "keras")
    plain_weights = model_weights(tmp_path / "keras" / "model.keras")
    for a, b in zip(model_weights(tiny_transformer_run / "model.keras"), plain_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    fused, plain = read_history(tiny_transformer_run), read_history(tmp_path / "keras")
    for column in ("loss", "test_loss"):
        np.testing.assert_allclose([row[column] for row in fused], [row[column] for row in plain], rtol=1e-5)


def test_a_short_training_lowers_held_out_bits_and_the_export_loads_in_safe_mode(tiny_transformer_run):
    import keras

    import models.transformer  # noqa: F401 (registers the model's own layers, as generate.py's import does)

    history = read_history(tiny_transformer_run)
    assert history[-1]["test_bits_per_char"] < math.log2(103) - 1.5, history  # from ~6.7 bits for 103 characters
    assert history[-1]["test_bits_per_char"] < history[0]["test_bits_per_char"]
    assert history[-1]["samples_per_sec"] > 16 * 16  # counted in characters
    config = json.loads((tiny_transformer_run / "config.json").read_text())
    assert config["settings"]["context"] == 16 and config["data"]["source"] == "pydoc"
    model = keras.models.load_model(tiny_transformer_run / "model.keras", safe_mode=True)
    assert model.output_shape == (None, None, 103)
    assert model.get_layer("block_2_attention").num_heads == 2


def test_resume_and_two_replicas_equal_one_uninterrupted_run(tiny_transformer_run, tmp_path):
    assert_resume_and_two_replicas_equal_one_run(TINY_TRANSFORMER, tiny_transformer_run, tmp_path)


def test_generate_and_evaluate(tiny_transformer_run, capsys):
    import evaluate
    import generate

    def generated(*flags):
        result = run_in_process(generate.main, tiny_transformer_run, "--length", 40, *flags, capsys=capsys)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    first = generated("--prompt", "The ", "--seed", 5)
    assert first.startswith("The ") and len(first) == len("The ") + 40 + 1
    assert generated("--prompt", "The ", "--seed", 5) == first and generated("--prompt", "The ", "--seed", 6) != first
    assert generated("--top-k", "1") == generated("--top-p", "1e-6", "--seed", 3)  # both greedy
    long_prompt = "def f(x):\n    return x * 2  # a prompt longer than the context\n"
    assert generated("--prompt", long_prompt).startswith(long_prompt)  # read by the sliding rule
    result = run_in_process(evaluate.main, tiny_transformer_run, capsys=capsys)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tiny_transformer_run / "metrics.json").read_text())
    assert metrics["model"] == "transformer" and metrics["seq_len"] == 16
    assert metrics["held_out_bits_per_char"] == pytest.approx(
        read_history(tiny_transformer_run)[-1]["test_bits_per_char"], rel=1e-5)
    assert (tiny_transformer_run / "figures" / "attention.png").stat().st_size > 5000
    assert "temperature 0.5" in (tiny_transformer_run / "evaluation_samples.txt").read_text(encoding="utf-8")


def test_bad_input_is_refused_with_one_line(tiny_transformer_run, tmp_path, capsys):
    import generate
    import train as train_script

    before = tree_digest(tiny_transformer_run)
    refusals = [(["--d-model", "16", "--heads", "3"], "--heads 3 does not divide --d-model 16"),
                (["--context", "1"], "--context must be 2 or more, got 1"),
                (["--warmup-steps", "-1"], "--warmup-steps must be 0 or more"),
                (["--dropout", "1"], "--dropout must be in [0, 1)"),
                (["--units", "8"], "unrecognized arguments: --units"),
                (["--context", "400000"], "fewer than one training sequence of --context 400000")]
    for flags, message in refusals:
        result = run_in_process(train_script.main, *TINY_TRANSFORMER, *flags, "--run-dir", tmp_path / "x",
                                capsys=capsys)
        assert_refused(result, message)
    assert not (tmp_path / "x").exists()
    for flags, message in [(["--prompt", "明月"], "--prompt has characters not in the run's vocabulary"),
                           (["--n", "4"], "--n is for gan and vae runs"),
                           (["--top-p", "0"], "--top-p must be in (0, 1]")]:
        assert_refused(run_in_process(generate.main, tiny_transformer_run, *flags, capsys=capsys), message)
    assert tree_digest(tiny_transformer_run) == before


def test_mixed_precision_and_xla_steps_run_and_stay_finite():
    from training.transformer import TransformerTask

    for task in text_tasks_under_mixed_precision_and_xla(TransformerTask, TINY_TRANSFORMER + ["--clip-norm", "0.5"]):
        # The KV cache under the policy too: float16 keys and values, float32 softmax and logits.
        ids = task.train_ids[:12]
        np.testing.assert_allclose(task.make_sampler(task.model).next_char_logits(ids),
                                   np.asarray(task.model(ids[np.newaxis]))[0, -1], rtol=2e-2, atol=2e-2)
