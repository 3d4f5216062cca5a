"""The text generator that reads each character's sound (models/pinyin.py, train.py lstm --pinyin)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import fused_lstm, pinyin
from models import lstm as lstm_models

CHARS = ["\n", "，", "。", "光", "乡", "霜", "行", "月", "x"]


def column(sound):
    return pinyin.SOUNDS.index(sound)


def test_the_sound_table_marks_every_reading_s_final_and_tone():
    table = pinyin.sound_table(CHARS)
    assert table.shape == (len(CHARS), len(pinyin.SOUNDS)) and set(np.unique(table)) <= {0.0, 1.0}
    assert not table[:3].any() and not table[-1].any()  # the line end, punctuation, a Latin letter: no sound
    assert table[CHARS.index("光"), [column("uang"), column("tone 1")]].all()
    assert table[CHARS.index("乡"), [column("iang"), column("tone 1")]].all()
    assert table[CHARS.index("月"), [column("ve"), column("tone 4")]].all()
    # 行 is xíng and háng: both readings' finals.
    assert table[CHARS.index("行"), [column("ing"), column("ang"), column("tone 2")]].all()
    assert table[CHARS.index("霜")].sum() == 2  # shuāng: one reading
    assert table[CHARS.index("光"), column("tone 4")] == 1  # guāng and guàng


@pytest.fixture(scope="module")
def sounded_model():
    keras.utils.set_random_seed(0)
    model = lstm_models.build_text_generator(len(CHARS), embedding_dim=8, units=16, sounds=pinyin.sound_table(CHARS))
    # The sound kernel starts at 0 (the model starts as the plain one would); give it values to be seen.
    model.get_layer("logits").sound_kernel.assign(np.random.default_rng(0).normal(size=(16, len(pinyin.SOUNDS))))
    return model


def test_a_sound_s_output_vector_is_shared_by_every_character_that_has_it(sounded_model):
    """logit(c) = h . (W_c + sum of R[s] over c's sounds) + b_c: moving R['tone 1'] moves the logits of 光 and 乡
    (both tone 1) by the same h . delta, and not that of 月 (tone 4)."""
    output = sounded_model.get_layer("logits")
    features = tf.random.stateless_normal((5, 16), seed=(1, 2))
    before = output(features).numpy()
    delta = np.zeros((16, len(pinyin.SOUNDS)), np.float32)
    delta[:, column("tone 1")] = np.random.default_rng(1).normal(size=16)
    output.sound_kernel.assign_add(delta)
    moved = output(features).numpy() - before
    output.sound_kernel.assign_sub(delta)
    expected = features.numpy() @ delta[:, column("tone 1")]
    np.testing.assert_allclose(moved[:, CHARS.index("光")], expected, atol=1e-4)
    np.testing.assert_allclose(moved[:, CHARS.index("乡")], expected, atol=1e-4)
    np.testing.assert_allclose(moved[:, CHARS.index("月")], 0.0, atol=1e-5)
    # What the sampled softmax gathers (the layer's kernel) is the same function.
    np.testing.assert_allclose(before, features.numpy() @ output.kernel.numpy() + output.bias.numpy(), atol=1e-4)


def test_fused_training_stateful_generation_and_safe_mode_loading_compute_the_same_model(sounded_model, tmp_path):
    ids = np.array([[0, 3, 4, 1, 5, 6, 7, 2], [0, 7, 7, 3, 1, 4, 2, 0]], np.int32)
    logits = sounded_model(ids).numpy()
    np.testing.assert_allclose(fused_lstm.text_logits(sounded_model, tf.constant(ids)).numpy(), logits, atol=1e-4)
    sampler = lstm_models.TextSampler(sounded_model)
    np.testing.assert_allclose(sampler.next_char_logits(ids[0]), logits[0, -1], atol=1e-4)
    path = str(tmp_path / "model.keras")
    sounded_model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded(ids).numpy(), logits, atol=1e-6)
    np.testing.assert_array_equal(loaded.get_layer("embedding").sounds.numpy(), pinyin.sound_table(CHARS))
    assert not loaded.get_layer("logits").sounds.trainable


def test_the_embedding_adds_a_learned_vector_per_sound(sounded_model):
    """x = E[id] + sounds[id] S: 光 and 乡 share tone 1's vector, each has its final's."""
    embedding = sounded_model.get_layer("embedding")
    vectors = embedding(tf.constant([[3, 4]])).numpy()[0]
    own = embedding.embeddings.numpy()[[3, 4]]
    sounds = pinyin.sound_table(CHARS)[[3, 4]] @ embedding.sound_embeddings.numpy()
    np.testing.assert_allclose(vectors, own + sounds, atol=1e-6)


def test_a_table_of_another_vocabulary_is_refused():
    with pytest.raises(ValueError, match="the sound table is"):
        pinyin.SoundLogits(4, pinyin.sound_table(CHARS))


RHYME = ([CHARS.index("。")], [CHARS.index("\n")])  # (sentence ends, line ends) of CHARS


def test_the_rhyme_memory_holds_the_sound_before_the_latest_sentence_end():
    """At each position, the sounds of the character before the latest 。 so far; zeros before any and after a line
    end; a clause ending in ， leaves it as it was."""
    table = pinyin.sound_table(CHARS)
    memory = pinyin.RhymeMemory(len(CHARS), *RHYME, sounds=table)
    #           \n  光  ，  乡  。  月  ，  霜  。  \n  行  。
    ids = np.array([[0, 3, 1, 4, 2, 7, 1, 5, 2, 0, 6, 2]], np.int32)
    held = memory(tf.constant(ids)).numpy()[0]
    expected = [None, None, None, None, "乡", "乡", "乡", "乡", "霜", None, None, "行"]
    for position, char in enumerate(expected):
        np.testing.assert_array_equal(held[position], 0.0 if char is None else table[CHARS.index(char)], str(position))
    # One character at a time, as generation reads it, the same.
    state = memory.initial_state(1)
    for position, index in enumerate(ids[0]):
        stepped, state = memory.step(tf.constant([index]), state)
        np.testing.assert_array_equal(stepped.numpy()[0], held[position], str(position))


@pytest.fixture(scope="module")
def rhyming_model():
    keras.utils.set_random_seed(0)
    model = lstm_models.build_text_generator(len(CHARS), embedding_dim=8, units=16, sounds=pinyin.sound_table(CHARS),
                                             rhyme=RHYME)
    width = 16 + len(pinyin.SOUNDS)  # [h, g r]
    model.get_layer("logits").sound_kernel.assign(np.random.default_rng(0).normal(size=(width, len(pinyin.SOUNDS))))
    return model


def test_the_rhyme_memory_s_model_computes_the_same_when_fused_stepped_and_loaded(rhyming_model, tmp_path):
    ids = np.array([[0, 3, 1, 4, 2, 7, 1, 5, 2, 0, 6], [0, 7, 7, 3, 1, 4, 2, 6, 1, 3, 3]], np.int32)
    logits = rhyming_model(ids).numpy()
    np.testing.assert_allclose(fused_lstm.text_logits(rhyming_model, tf.constant(ids)).numpy(), logits, atol=1e-4)
    sampler = lstm_models.TextSampler(rhyming_model)
    for row, row_logits in zip(ids, logits):  # the stateful step, the memory's state carried
        np.testing.assert_allclose(sampler.next_char_logits(row), row_logits[-1], atol=1e-4)
    # Greedy generation, plain graph and XLA, gives the same text: the memory's state goes through both loops.
    greedy = sampler.generate(ids[0], 12, temperature=1e-4, seed=3)
    np.testing.assert_array_equal(sampler.generate(ids[0], 12, temperature=1e-4, seed=3, jit=True), greedy)
    path = str(tmp_path / "model.keras")
    rhyming_model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded(ids).numpy(), logits, atol=1e-6)
    assert loaded.get_layer("rhyme_memory").end_ids == RHYME[0]


def test_the_rhyme_moves_only_the_logits_of_characters_that_sound_like_it(rhyming_model):
    """The memory reaches the logits through g r^T M sounds(c): after 。 ending in 乡 (iang), changing M's iang row
    moves the logits of characters with a final iang only."""
    output = rhyming_model.get_layer("logits")
    ids = tf.constant([[0, 3, 1, 4, 2, 7]])
    before = rhyming_model(ids).numpy()[0, -1]
    delta = np.zeros(output.sound_kernel.shape, np.float32)
    delta[16 + column("iang"), column("iang")] = 3.0
    output.sound_kernel.assign_add(delta)
    moved = rhyming_model(ids).numpy()[0, -1] - before
    output.sound_kernel.assign_sub(delta)
    has_iang = pinyin.sound_table(CHARS)[:, column("iang")] > 0
    assert (moved[has_iang] > 0).all() and np.allclose(moved[~has_iang], 0.0, atol=1e-5)
