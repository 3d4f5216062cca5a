"""Chinese regular verse: one poem a line, poem-shaped and acrostic generation, the poems' measures."""

import json

import numpy as np
import pytest

from conftest import run_in_process, train, tree_digest
from test_bad_input import assert_refused

QUATRAIN = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"  # 霜 shuang, 乡 xiang: one rhyme (江阳)


@pytest.fixture(scope="module")
def quatrains(tmp_path_factory):
    """300 五言绝句 of the bundled corpus, one a line, as a file."""
    from datasets.text import tang_text

    poems = [poem for poem in tang_text().splitlines() if len(poem) == 24][:300]
    path = tmp_path_factory.mktemp("verse") / "quatrains.txt"
    path.write_text("\n".join(poems) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def quatrain_run(quatrains, tmp_path_factory):
    """A short real training on the 300 quatrains (about 15 s)."""
    run_dir = tmp_path_factory.mktemp("verse") / "run"
    train("lstm", "--corpus", quatrains, "--one-per-line", "--units", 64, "--embedding-dim", 16, "--seq-len", 25,
          "--batch-size", 16, "--epochs", 40, "--learning-rate", 0.02, "--quiet", "--run-dir", run_dir)
    return run_dir


def test_the_loader_splits_by_whole_poems(quatrains):
    from datasets import text

    lines = quatrains.read_text(encoding="utf-8").splitlines()
    data = text.load(str(quatrains), one_per_line=True)
    train_poems, held_out = data.documents("train"), data.documents("held_out")
    assert len(held_out) == 30 and sorted(train_poems + held_out) == sorted(lines)  # whole poems, each once
    line_end = data.vocabulary.ids["\n"]
    for ids in (data.train_ids, data.held_out_ids):  # each poem between line ends
        assert ids[0] == ids[-1] == line_end
    assert text.load(str(quatrains), one_per_line=True).documents() == held_out  # a fixed shuffle
    summary = data.summary()
    assert summary["one_per_line"] and (summary["train_documents"], summary["held_out_documents"]) == (270, 30)
    tang = text.load("tang").summary()
    assert (tang["train_documents"], tang["held_out_documents"], tang["vocabulary_size"]) == (33227, 3691, 6668)


def test_training_windows_start_at_line_starts_and_held_out_counts_every_character_once():
    from datasets.text import Vocabulary
    from training.lstm import document_window_starts, held_out_examples, packed_window_starts, windows_at

    vocabulary = Vocabulary.from_text("\nabcdefg")
    ids = vocabulary.encode("\nabc\nabcdefg\nd\n")
    line_end = vocabulary.ids["\n"]
    starts, ends = document_window_starts(ids, 4, line_end)
    # abc: one window; abcdefg (8 targets with its line end): two; d: one.
    np.testing.assert_array_equal(starts, [0, 4, 8, 12])
    np.testing.assert_array_equal(ends, [4, 12, 12, 14])
    np.testing.assert_array_equal(packed_window_starts(ids, 4, line_end), starts)  # no two documents fit in 4
    # Packed: "a\nb\n" fills the first window, which ends inside "c\n"; the next starts at its line end.
    np.testing.assert_array_equal(packed_window_starts(vocabulary.encode("\na\nb\nc\n"), 4, line_end), [0, 4])
    assert vocabulary.decode(windows_at(ids, starts, 4)[0]) == "\nabc\n"
    windows, weights = held_out_examples(ids, 4, line_end)
    assert weights.sum() == len(ids) - 1  # every character after the first is a target once
    np.testing.assert_array_equal(weights[0], [1, 1, 1, 1])
    np.testing.assert_array_equal(weights[3], [1, 1, 0, 0])  # "d\n", then the wrapped text weighs 0


def sampler_and_vocabulary(text):
    from datasets.text import Vocabulary
    from models.lstm import TextSampler, build_text_generator

    vocabulary = Vocabulary.from_text(text)
    return TextSampler(build_text_generator(len(vocabulary), 8, 16)), vocabulary


def test_constrained_decoding_always_yields_the_asked_form_and_acrostic():
    from evaluation.verse import clauses, is_form_valid
    from models.poems import FORMS, sample_poems

    sampler, vocabulary = sampler_and_vocabulary("\n" + QUATRAIN + "春夏秋冬风花雪月？")
    for form, (chars, count) in FORMS.items():
        for seed in range(3):
            poems = sample_poems(sampler, vocabulary, 40, form=form, temperature=1.5, seed=seed)
            assert all(is_form_valid(poem) for poem in poems), poems
            assert {tuple(map(len, clauses(poem))) for poem in poems} == {(chars,) * count}
            assert all(poem.endswith("。") and "？" not in poem for poem in poems)  # punctuation by position
    poems = sample_poems(sampler, vocabulary, 40, acrostic="春夏秋冬", top_k=5, seed=1)
    assert all(is_form_valid(poem) and [part[0] for part in clauses(poem)] == list("春夏秋冬") for poem in poems)
    assert all(len(clauses(poem)[0]) == 7 for poem in poems)  # an acrostic's default form: 7x4
    poems = sample_poems(sampler, vocabulary, 20, form="5x8", acrostic="风花雪", seed=2)
    assert all([part[0] for part in clauses(poem)[:3]] == list("风花雪") and len(clauses(poem)) == 8 for poem in poems)
    again = sample_poems(sampler, vocabulary, 20, form="5x8", acrostic="风花雪", seed=2)
    assert again == poems and sample_poems(sampler, vocabulary, 20, form="5x8", acrostic="风花雪", seed=3) != poems


def test_the_measures_of_hand_made_poems():
    from evaluation.verse import is_form_valid, measure, rhymes, unigram_entropy_bits

    unrhymed = "床前明月光，疑是地上天。举头望明月，低头思故乡。"  # 天 tian and 乡 xiang do not rhyme
    broken = "床前明月光，疑是地上霜。举头望明月。"  # three clauses
    uneven = "床前明月光，疑是地上霜霜。举头望明月，低头思故乡。"
    assert is_form_valid(QUATRAIN) and rhymes(QUATRAIN) and is_form_valid(unrhymed) and not rhymes(unrhymed)
    assert not is_form_valid(broken) and not is_form_valid(uneven) and not is_form_valid(QUATRAIN + "x")
    training_text = "\n" + QUATRAIN + "\n"
    copied = measure([QUATRAIN, QUATRAIN], training_text)
    assert copied["form_valid_share"] == 1 and copied["rhyme_share_of_valid"] == 1
    assert copied["novel_clause_share"] == 0 and copied["distinct_share"] == 0.5 and copied["clauses"] == 8
    mixed = measure([unrhymed, broken, "秋风吹白发，落日照青山。江上孤舟远，天涯一雁还。"], training_text)
    assert mixed["form_valid_share"] == pytest.approx(2 / 3) and mixed["rhyme_share_of_valid"] == 0.5  # 山, 还: an
    # Of 4 + 3 + 4 clauses, the new ones: 疑是地上天 and all 4 of the last poem.
    assert mixed["novel_clause_share"] == pytest.approx(5 / 11) and mixed["distinct_share"] == 1
    assert unigram_entropy_bits(np.array([0, 1, 2, 3])) == 2 and unigram_entropy_bits(np.array([5, 5])) == 0


def test_a_short_training_raises_the_form_valid_share(quatrain_run, capsys):
    import keras

    import generate
    from evaluation.verse import is_form_valid
    from models.lstm import TextSampler, build_text_generator
    from models.poems import sample_poems
    from training.lstm import load_run_vocabulary

    vocabulary = load_run_vocabulary(quatrain_run)
    trained = TextSampler(keras.models.load_model(quatrain_run / "model.keras"))
    untrained = TextSampler(build_text_generator(len(vocabulary), 16, 64))

    def valid_share(sampler):
        return np.mean([is_form_valid(poem) for poem in sample_poems(sampler, vocabulary, 200, temperature=0.5)])

    assert valid_share(untrained) == 0 and valid_share(trained) > 0.1
    result = run_in_process(generate.main, quatrain_run, "--acrostic", "春花", "--form", "5x4", "--poems", 3,
                            capsys=capsys)
    assert result.returncode == 0, result.stderr
    poems = result.stdout.splitlines()
    assert len(poems) == 3 and all(poem[0] == "春" and poem[6] == "花" and is_form_valid(poem) for poem in poems)


def test_evaluate_measures_the_poems_beside_real_ones(quatrain_run):
    from conftest import run_script

    result = run_script("evaluate.py", quatrain_run, "--poems", 50)
    assert result.returncode == 0, result.stderr[-2000:]
    verse = json.loads((quatrain_run / "metrics.json").read_text())["verse"]
    assert verse["poems"] == 50 and verse["model"]["poems"] == 50 and verse["real_held_out"]["poems"] == 30
    assert verse["real_held_out"]["form_valid_share"] == 1  # every poem of the corpus is a 五言绝句
    assert 8 < verse["unigram_entropy_bits"] < 11 and "real held-out" in result.stdout
    assert len((quatrain_run / "evaluation_poems.txt").read_text(encoding="utf-8").splitlines()) == 50


def test_bad_poem_requests_are_refused(quatrain_run, tiny_lstm_run, capsys):
    import evaluate
    import generate
    import train as train_script

    def refused(main, *args):
        return run_in_process(main, *args, capsys=capsys)

    before = tree_digest(quatrain_run)
    assert_refused(refused(generate.main, quatrain_run, "--acrostic", "春夏秋冬风", "--form", "7x4"),
                   "has 5 characters and --form 7x4 only 4 clauses")
    assert_refused(refused(generate.main, quatrain_run, "--acrostic", "春夏秋冬风花雪月天"), "the longest form")
    assert_refused(refused(generate.main, quatrain_run, "--acrostic", "龘"), "vocabulary has no '龘'")
    assert_refused(refused(generate.main, quatrain_run, "--acrostic", "a"), "vocabulary has no 'a'")
    assert_refused(refused(generate.main, quatrain_run, "--poems", 0), "--poems must be in [1, 10,000], got 0")
    assert_refused(refused(generate.main, quatrain_run, "--poems", 2, "--prompt", "春"), "--prompt continues a text")
    assert_refused(refused(generate.main, quatrain_run, "--form", "6x4"), "invalid choice: '6x4'")
    assert_refused(refused(generate.main, quatrain_run, "--poems", 2, "--length", 0), "--length caps each poem's")
    assert_refused(refused(evaluate.main, quatrain_run, "--poems", 0), "--poems must be in [1, 10,000], got 0")
    assert tree_digest(quatrain_run) == before
    pydoc_run = tree_digest(tiny_lstm_run)
    assert_refused(refused(generate.main, tiny_lstm_run, "--form", "5x4"), "--form is for runs on one poem")
    assert_refused(refused(generate.main, tiny_lstm_run, "--poems", 3), "--poems is for runs on one poem")
    assert_refused(refused(evaluate.main, tiny_lstm_run, "--poems", 3), "--poems measures runs on one poem a line")
    assert_refused(refused(train_script.main, "lstm", "--corpus", "pydoc", "--one-per-line"),
                   "--one-per-line is for --corpus PATH")
    assert tree_digest(tiny_lstm_run) == pydoc_run


def test_the_tang_recipe_is_the_default_and_a_typed_flag_wins():
    from training.cli import RECIPES, parse_args

    recipe = RECIPES[("lstm", "tang")]
    settings = vars(parse_args(["lstm", "--corpus", "tang"]))
    assert settings["one_per_line"] and settings["recipe"] == "tang"
    assert all(settings[name] == value for name, value in recipe.items())
    assert settings["lr_decay_epochs"] == recipe["epochs"]
    typed = vars(parse_args(["lstm", "--corpus", "tang", "--units", "32"]))
    assert typed["units"] == 32 and typed["seq_len"] == recipe["seq_len"]
    assert vars(parse_args(["lstm", "--corpus", "pydoc"]))["recipe"] is None


def test_every_poem_mode_works_for_the_transformer(quatrains, tmp_path, capsys):
    """The poem modes are built on models/sampling.py, so a Transformer run (its KV-cache sampler, a window
    shorter than a poem so the window slides) writes poems of the asked form and acrostic, and evaluate.py
    measures them."""
    import generate
    from conftest import run_script
    from evaluation.verse import is_form_valid

    run_dir = tmp_path / "transformer"
    train("transformer", "--corpus", quatrains, "--one-per-line", "--context", 16, "--d-model", 16, "--heads", 2,
          "--layers", 1, "--batch-size", 16, "--epochs", 2, "--steps-per-epoch", 5, "--quiet", "--run-dir", run_dir)
    for flags in (["--form", "5x8", "--poems", 4], ["--acrostic", "春夏秋冬", "--form", "5x4", "--poems", 3]):
        result = run_in_process(generate.main, run_dir, *flags, "--seed", 3, capsys=capsys)
        assert result.returncode == 0, result.stderr
        poems = result.stdout.splitlines()
        assert len(poems) == flags[-1] and all(is_form_valid(poem) for poem in poems), poems
    assert all("".join(poem[start] for start in (0, 6, 12, 18)) == "春夏秋冬" for poem in poems)  # each clause's head
    free = run_in_process(generate.main, run_dir, "--poems", 5, capsys=capsys)
    assert free.returncode == 0 and len(free.stdout.splitlines()) == 5
    result = run_script("evaluate.py", run_dir, "--poems", 20)
    assert result.returncode == 0, result.stderr[-2000:]
    verse = json.loads((run_dir / "metrics.json").read_text())["verse"]
    assert verse["model"]["poems"] == 20 and (run_dir / "figures" / "attention.png").is_file()
