"""The LSTM text generator: vocabulary, windows, stateful generation, training, generate.py and bad input."""

import json
import math

import numpy as np
import pytest

from conftest import (TINY_LSTM, assert_resume_and_two_replicas_equal_one_run, model_weights, offline_env,
                      run_in_process, run_script, text_tasks_under_mixed_precision_and_xla, train, tree_digest)
from test_bad_input import assert_refused
from training.run_dir import read_history

POEM = "床前明月光，疑是地上霜。举头望明月，低头思故乡。\n"
def test_vocabulary_round_trip_chinese_included(tmp_path):
    from datasets.text import CorpusError, Vocabulary
    from training.run_dir import write_atomic

    text = POEM + "Hello, world! ü"
    vocabulary = Vocabulary.from_text(text)
    assert len(vocabulary) == len(set(text))
    ids = vocabulary.encode(text)
    assert ids.dtype == np.int32 and vocabulary.decode(ids) == text
    vocabulary.save(tmp_path / "vocab.json", write_atomic)
    assert "床" in (tmp_path / "vocab.json").read_text(encoding="utf-8")  # stored as characters, not escapes
    loaded = Vocabulary.load(tmp_path / "vocab.json")
    assert loaded == vocabulary and loaded.decode(loaded.encode(POEM)) == POEM
    with pytest.raises(CorpusError, match="'秋' 'Z'"):
        vocabulary.encode("秋Z秋")


def test_inputs_and_targets_are_one_character_apart_and_cover_every_position():
    from datasets import text
    from training.lstm import split_window, training_windows, windows_per_epoch

    data = text.load("pydoc")
    ids, seq_len = data.train_ids, 50
    count = windows_per_epoch(len(ids), seq_len)
    for offset in (0, 7, seq_len - 1):
        inputs, targets = split_window(training_windows(ids, seq_len, offset, count))
        assert inputs.shape == targets.shape == (count, seq_len)
        np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])  # the target of t is the input of t + 1
        np.testing.assert_array_equal(targets.ravel(), ids[offset + 1:offset + 1 + count * seq_len])  # each once
    assert len(data.held_out_ids) == len(text.pydoc_text()) - int(len(text.pydoc_text()) * 0.9)


def test_stateful_generation_equals_recomputing_the_whole_text():
    from models.lstm import TextSampler, build_text_generator

    model = build_text_generator(vocab_size=40, embedding_dim=8, units=24, layers=2)
    ids = np.random.default_rng(0).integers(0, 40, size=57).astype(np.int32)
    sampler = TextSampler(model)
    for length in (1, 10, 57):
        full = np.asarray(model(ids[np.newaxis, :length]))[0, -1]
        np.testing.assert_allclose(sampler.next_char_logits(ids[:length]), full, rtol=1e-5, atol=1e-5)
    # Generating n characters then reading prompt + generated text gives the same state as the sampler had.
    generated = sampler.generate(ids[:5], 12, temperature=1.0, seed=3)
    assert generated.shape == (12,) and generated.min() >= 0 and generated.max() < 40
    np.testing.assert_array_equal(sampler.generate(ids[:5], 12, temperature=1.0, seed=3), generated)


def test_the_fused_lstm_equals_keras_lstm_forward_and_backward():
    """models/fused_lstm.py (train.py's CPU path) against keras.layers.LSTM on the same weights: two stacked
    layers, a non-zero bias, outputs and the gradients of every weight and of the input."""
    import keras
    import tensorflow as tf

    from models.fused_lstm import text_logits
    from models.lstm import build_text_generator

    keras.utils.set_random_seed(4)
    model = build_text_generator(vocab_size=11, embedding_dim=5, units=7, layers=2)
    for weight in model.trainable_weights:
        weight.assign(tf.random.normal(weight.shape, stddev=0.5))
    ids = tf.constant(np.random.default_rng(1).integers(0, 11, size=(3, 23)), tf.int32)
    upstream = tf.random.normal((3, 23, 11))

    def logits_and_gradients(fused, chains=None):
        with tf.GradientTape() as tape:
            logits = text_logits(model, ids, chains=chains) if fused else model(ids)
            loss = tf.reduce_sum(logits * upstream)
        return logits, tape.gradient(loss, model.trainable_weights)

    keras_logits, keras_gradients = tf.function(logits_and_gradients)(False)
    # Compiled, as train.py runs it, with its rows in one group and in groups of one row; eager.
    for run, chains in ((tf.function(logits_and_gradients), 1), (tf.function(logits_and_gradients), 4),
                        (logits_and_gradients, None)):
        fused_logits, fused_gradients = run(True, chains)
        np.testing.assert_allclose(fused_logits, keras_logits, rtol=1e-5, atol=1e-5)
        for weight, fused, expected in zip(model.trainable_weights, fused_gradients, keras_gradients):
            fused, expected = tf.convert_to_tensor(fused), tf.convert_to_tensor(expected)  # the embedding's: sparse
            scale = float(tf.reduce_max(tf.abs(expected)))
            assert scale > 0.1, weight.path
            np.testing.assert_allclose(fused, expected, rtol=1e-5, atol=1e-5 * scale, err_msg=weight.path)
    # A replica's empty batch (the last held-out batch split over replicas) has a static size of 0.
    empty = tf.function(lambda: text_logits(model, ids[:0]))()
    assert empty.shape == (0, 23, 11)
    # With the batch unknown when traced (the held-out pass), the groups are uneven, or empty for fewer rows.
    unknown_batch = tf.function(lambda ids: text_logits(model, ids, chains=2),
                                input_signature=[tf.TensorSpec((None, 23), tf.int32)])
    for rows in (3, 1):
        np.testing.assert_allclose(unknown_batch(ids[:rows]), keras_logits[:rows], rtol=1e-5, atol=1e-5)


def test_training_with_the_fused_lstm_equals_training_with_keras_lstm(tiny_lstm_run, tmp_path):
    train(*TINY_LSTM, "--epochs", 2, "--no-fused-lstm", "--run-dir", tmp_path / "keras")
    for a, b in zip(model_weights(tiny_lstm_run / "model.keras"), model_weights(tmp_path / "keras" / "model.keras")):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    fused, keras_lstm = read_history(tiny_lstm_run), read_history(tmp_path / "keras")
    for column in ("loss", "test_loss"):
        np.testing.assert_allclose([row[column] for row in fused], [row[column] for row in keras_lstm], rtol=1e-5)


def test_a_short_training_lowers_held_out_bits_per_char(tiny_lstm_run):
    history = read_history(tiny_lstm_run)
    start = math.log2(103)  # an untrained model spreads its bets over the 103 characters of pydoc
    assert history[-1]["test_bits_per_char"] < start - 1.0, history
    assert history[-1]["test_bits_per_char"] < history[0]["test_bits_per_char"]
    assert history[-1]["test_loss"] == pytest.approx(history[-1]["test_bits_per_char"] * math.log(2))
    # Throughput is counted in characters: batch 16 x 20 characters per step.
    assert history[-1]["samples_per_sec"] > 16 * 20
    vocab = json.loads((tiny_lstm_run / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab["chars"]) == 103 and (tiny_lstm_run / "model.keras").is_file()


def test_seeded_generation_is_repeatable(tiny_lstm_run, capsys):
    import generate as generate_script

    def generate(*flags):
        result = run_in_process(generate_script.main, tiny_lstm_run, "--prompt", "The ", "--length", 80, *flags,
                                capsys=capsys)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    first = run_script("generate.py", tiny_lstm_run, "--prompt", "The ", "--length", 80, "--seed", 5)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.startswith("The ") and len(first.stdout) == len("The ") + 80 + 1
    assert generate("--seed", 5) == first.stdout  # the same text in another process
    assert generate("--seed", 6) != first.stdout
    assert generate("--seed", 5, "--top-k", 1) == generate("--seed", 9, "--top-k", 1)  # top-1 is greedy
    assert generate("--seed", 5, "--top-p", "1e-6") == generate("--seed", 5, "--top-k", 1)  # so is a tiny nucleus


def test_evaluate_writes_bits_per_char_samples_and_curves(tiny_lstm_run):
    result = run_script("evaluate.py", tiny_lstm_run)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tiny_lstm_run / "metrics.json").read_text())
    assert metrics["model"] == "lstm" and metrics["corpus"] == "pydoc"
    # The same measure as the held-out pass after the last epoch.
    assert metrics["held_out_bits_per_char"] == pytest.approx(read_history(tiny_lstm_run)[-1]["test_bits_per_char"],
                                                              rel=1e-5)
    assert metrics["held_out_perplexity"] == pytest.approx(2 ** metrics["held_out_bits_per_char"])
    samples = (tiny_lstm_run / "evaluation_samples.txt").read_text(encoding="utf-8")
    assert all(f"temperature {t}" in samples for t in (0.2, 0.5, 1.0))
    assert (tiny_lstm_run / "figures" / "losses.png").stat().st_size > 1000


def test_chinese_text_trains_and_generates(tmp_path, capsys):
    import generate

    corpus = tmp_path / "poems.txt"
    corpus.write_text(POEM * 60, encoding="utf-8")
    run_dir = tmp_path / "run"
    train("lstm", "--corpus", corpus, "--units", "16", "--embedding-dim", "8", "--seq-len", "12",
          "--batch-size", "8", "--epochs", "1", "--quiet", "--run-dir", run_dir)
    result = run_in_process(generate.main, run_dir, "--prompt", "明月", "--length", 20, capsys=capsys)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("明月") and set(result.stdout.strip()) <= set(POEM)


def test_the_bundled_tang_poems_train_offline(tmp_path, capsys):
    import generate

    run_dir = tmp_path / "tang"
    result = train("lstm", "--corpus", "tang", "--units", "16", "--embedding-dim", "8", "--seq-len", "24",
                   "--batch-size", "16", "--steps-per-epoch", "5", "--epochs", "1", "--quiet", "--run-dir", run_dir,
                   env=offline_env(tmp_path))
    assert "data: 36,918 Tang poems" in result.stdout
    vocabulary = json.loads((run_dir / "vocab.json").read_text(encoding="utf-8"))["chars"]
    assert len(vocabulary) == 6668 and "月" in vocabulary
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    assert config["data"]["one_per_line"] and config["settings"]["recipe"] == "tang"
    assert config["settings"]["pinyin"] and config["settings_from"]["pinyin"] == "recipe"  # models/pinyin.py's layers
    assert config["settings"]["rhyme"] and config["settings_from"]["rhyme"] == "recipe"
    generated = run_in_process(generate.main, run_dir, "--prompt", "床前明月光", "--length", 30, capsys=capsys)
    assert generated.returncode == 0, generated.stderr[-2000:]
    assert generated.stdout.startswith("床前明月光") and set(generated.stdout.strip()) <= set(vocabulary)


def test_resume_and_two_replicas_equal_one_uninterrupted_run(tiny_lstm_run, tmp_path):
    """tiny_lstm_run is the uninterrupted 2-epoch run; TINY_LSTM's clip norm clips every step."""
    assert_resume_and_two_replicas_equal_one_run(TINY_LSTM, tiny_lstm_run, tmp_path)


def bad_corpora(folder):
    (folder / "empty.txt").write_bytes(b"")
    (folder / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1") * 50)
    (folder / "short.txt").write_text("too short", encoding="utf-8")
    return {"missing": (folder / "missing.txt", "no such file"), "empty": (folder / "empty.txt", "is empty"),
            "not utf-8": (folder / "latin1.txt", "is not UTF-8 text"),
            "short": (folder / "short.txt", "fewer than one training sequence")}


def test_bad_corpora_and_flags_are_refused(tiny_lstm_run, tmp_path, capsys):
    import generate
    import train as train_script

    def refused(main, *args):
        return run_in_process(main, *args, capsys=capsys)

    before = tree_digest(tiny_lstm_run)
    for name, (path, expected) in bad_corpora(tmp_path).items():
        assert_refused(refused(train_script.main, "lstm", "--corpus", path, "--run-dir", tmp_path / name), expected)
    assert_refused(refused(train_script.main, "lstm", "--seq-len", "0"), "--seq-len must be 1 or more")
    assert_refused(refused(train_script.main, "lstm", "--clip-norm", "-1"), "--clip-norm must be 0 or more")
    assert_refused(refused(train_script.main, "lstm", "--sampled-softmax", "-1"), "--sampled-softmax must be 0 or more")
    assert_refused(refused(train_script.main, *TINY_LSTM, "--sampled-softmax", "100000", "--run-dir", tmp_path / "s"),
                   "--sampled-softmax 100000 must be from 1 to the vocabulary's size less one")
    assert_refused(refused(train_script.main, "lstm", "--data", "mnist"), "unrecognized arguments: --data")
    assert_refused(refused(train_script.main, *TINY_LSTM, "--pinyin", "--run-dir", tmp_path / "p"),
                   "--pinyin: none of the corpus' 103 characters has a pinyin reading")
    assert not (tmp_path / "p").exists()
    assert_refused(refused(train_script.main, *TINY_LSTM, "--rhyme", "--run-dir", tmp_path / "r"),
                   "--rhyme reads the characters' sounds: use it with --pinyin")
    unstopped = tmp_path / "unstopped.txt"  # Chinese, but no sentence ends a rhyme could follow
    unstopped.write_text("春眠不觉晓，处处闻啼鸟，夜来风雨声，花落知多少，" * 100, encoding="utf-8")
    assert_refused(refused(train_script.main, "lstm", "--corpus", unstopped, "--seq-len", "20", "--batch-size", "4",
                           "--pinyin", "--rhyme", "--run-dir", tmp_path / "u"),
                   "--rhyme: the corpus has none of the sentence ends 。 ？ ！")
    assert not (tmp_path / "u").exists()
    assert_refused(refused(train_script.main, "transformer", "--pinyin"), "unrecognized arguments: --pinyin")
    assert_refused(refused(train_script.main, "transformer", "--rhyme"), "unrecognized arguments: --rhyme")
    assert_refused(refused(generate.main, tiny_lstm_run, "--temperature", "0"), "--temperature must be above 0")
    assert_refused(refused(generate.main, tiny_lstm_run, "--length", "-1"),
                   "--length must be in [0, 1,000,000], got -1")
    assert_refused(refused(generate.main, tiny_lstm_run, "--top-k", "0"), "--top-k must be 1 or more")
    assert_refused(refused(generate.main, tiny_lstm_run, "--top-p", "0"), "--top-p must be in (0, 1], got 0.0")
    assert_refused(refused(generate.main, tiny_lstm_run, "--top-p", "1.5"), "--top-p must be in (0, 1]")
    assert_refused(refused(generate.main, tiny_lstm_run, "--prompt", "明月"), "'明' '月'")
    assert_refused(refused(generate.main, tiny_lstm_run, "--n", "4"), "--n is for gan and vae runs")
    assert_refused(refused(generate.main, tmp_path), "holds no run")
    assert tree_digest(tiny_lstm_run) == before


def test_offline_the_default_corpus_falls_back_to_pydoc_and_shakespeare_says_what_to_do(tmp_path):
    env = offline_env(tmp_path)
    tiny = [flag for flag in TINY_LSTM if flag not in ("--corpus", "pydoc")]
    result = train(*tiny, "--epochs", 1, "--steps-per-epoch", 2, "--run-dir", tmp_path / "auto", env=env)
    assert "using --corpus pydoc instead" in result.stdout
    assert json.loads((tmp_path / "auto" / "config.json").read_text())["data"]["source"] == "pydoc"
    assert_refused(run_script("train.py", *tiny, "--corpus", "shakespeare", "--run-dir", tmp_path / "s", env=env),
                   "tiny Shakespeare is not cached and could not be downloaded", "use --corpus pydoc")


def test_an_empty_share_of_the_last_held_out_batch_adds_nothing():
    """Two replicas split a last held-out batch of one window as 1 + 0: the empty share must trace (Keras'
    LSTM cannot be traced on a static batch of 0) and add 0 to every sum, fused LSTM or Keras'."""
    import tensorflow as tf

    from datasets import text
    from training.cli import parse_args
    from training.lstm import LstmTask

    data = text.load("pydoc")
    for fused in ("--fused-lstm", "--no-fused-lstm"):
        task = LstmTask(vars(parse_args(TINY_LSTM + [fused])), data, tf.distribute.get_strategy())
        ids, targets, weights = next(iter(task.held_out_dataset()))
        empty = tf.function(task.held_out_step)((ids[:0], targets[:0], weights[:0]))
        assert {name: float(value) for name, value in empty.items()} == {"loss": 0, "bits_per_char": 0, "count": 0}
        one = tf.function(task.held_out_step)((ids[:1], targets[:1], weights[:1]))
        assert float(one["count"]) == ids.shape[1] and float(one["loss"]) > 0


def test_mixed_precision_and_xla_steps_run_and_stay_finite():
    """The GPU paths on the CPU, in-process: mixed_float16 with loss scaling (float32 logits, clipping
    measured on unscaled gradients), and the step compiled with XLA (--jit); on the Tang poems with their
    recipe's --pinyin layers and sampled softmax (TINY_LSTM's typed sizes win over the recipe's)."""
    from training.lstm import LstmTask

    flags = TINY_LSTM + ["--clip-norm", "0.5", "--corpus", "tang"]
    assert len(list(text_tasks_under_mixed_precision_and_xla(LstmTask, flags))) == 2
