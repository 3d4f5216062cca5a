"""reproduce.py --quick: the whole pipeline (train, evaluate, generate, figures, tables) end to end, in tiny runs."""

import hashlib
import json
import os

from conftest import REPO, run_script
from test_bad_input import assert_refused

import reproduce


def digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


# The quick run's groups: an image model (the GAN's table, its dcgan row, evaluated over training) and a text
# model (its table, generated text and figures). The other runs are the same train, evaluate, generate and copy
# steps on other flags, which their own tests run; leaving them out cuts the test's time by two thirds.
QUICK_GROUPS = ("dcgan", "transformer")


def test_quick_writes_every_artefact_and_leaves_the_committed_ones_alone(tmp_path):
    committed = {name: digest(os.path.join(REPO, "docs", "figures", name))
                 for name in os.listdir(os.path.join(REPO, "docs", "figures"))}
    readme = digest(os.path.join(REPO, "README.md"))
    result = run_script("reproduce.py", "--quick", "--only", ",".join(QUICK_GROUPS), "--out", tmp_path / "quick",
                        timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]

    out = tmp_path / "quick"
    chosen = {name for name, spec in reproduce.EXPERIMENTS.items()
              if spec["group"] in QUICK_GROUPS and name not in reproduce.QUICK_SKIPS}
    expected_figures = {target for name in chosen for target in reproduce.EXPERIMENTS[name]["figures"].values()}
    assert expected_figures <= set(os.listdir(out / "figures"))
    for name in expected_figures:
        assert (out / "figures" / name).stat().st_size > 1000, name
        assert f"figure: {os.path.relpath(out / 'figures' / name, REPO)}" in result.stdout  # says where it went
    report = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert report["quick"] and set(report["experiments"]) == chosen
    generated = report["experiments"]["transformer_pydoc"]["generated"][0]
    assert generated["text"].startswith('The "with" statement') and len(generated["text"]) > 300
    tables = (out / "results.md").read_text(encoding="utf-8")
    assert "| dcgan |" in tables and "classifier FID" in tables
    assert "`python train.py transformer --corpus pydoc" in tables and "held-out" in tables
    # Nothing committed changed: the quick run writes only under --out.
    assert digest(os.path.join(REPO, "README.md")) == readme
    assert {name: digest(os.path.join(REPO, "docs", "figures", name)) for name in committed} == committed


def test_quick_never_writes_over_the_committed_figures(tmp_path):
    assert_refused(run_script("reproduce.py", "--quick"), "--quick needs --out DIR")
    assert_refused(run_script("reproduce.py", "--quick", "--out", os.path.join(REPO, "docs", "x")), "inside docs/")
    assert_refused(run_script("reproduce.py", "--only", "gan,bogus", "--out", tmp_path), "--only takes groups")
    assert_refused(run_script("reproduce.py", "--jobs", "0", "--out", tmp_path), "--jobs must be 1 or more, got 0")
    assert_refused(run_script("reproduce.py", "--seeds", "0", "--out", tmp_path), "--seeds must be 1 or more, got 0")


def test_the_verse_table_puts_each_text_model_beside_the_real_poems():
    """Given numbers: a column per Tang run that has verse measures (in VERSE_RUNS' order), the real poems' and
    the targets beside them, the constrained shares from the run's --form/--acrostic commands."""
    def tang_result(model, form_valid, rhyme, bits, seconds):
        real = {"form_valid_share": 1.0, "rhyme_share_of_valid": 0.792, "novel_clause_share": 0.912,
                "distinct_share": 1.0}
        model_measures = {"form_valid_share": form_valid, "rhyme_share_of_valid": rhyme, "novel_clause_share": 1.0,
                          "distinct_share": 1.0}
        return {"command": f"python train.py {model} --corpus tang", "training_seconds": seconds, "epochs": 4,
                "metrics": {"held_out_bits_per_char": bits,
                            "verse": {"poems": 500, "temperature": 1.0, "unigram_entropy_bits": 9.387,
                                      "real_held_out": real, "model": model_measures}},
                "generated": [{"command": "python generate.py RUN_DIR --poems 5", "form_valid_share": 0.6},
                              {"command": "python generate.py RUN_DIR --acrostic 春夏秋冬", "form_valid_share": 1.0}]}

    both = reproduce.verse_table({"transformer_tang": tang_result("transformer", 0.982, 0.053, 7.422, 580),
                                  "lstm_tang": tang_result("lstm", 0.964, 0.056, 6.593, 500)})
    lines = both.splitlines()
    assert lines[0] == "| 500 poems at temperature 1.0 | LSTM | Transformer | real held-out poems | target |"
    assert "`python train.py lstm --corpus tang` (500 s of training)" in lines[2]
    assert "| 96.4% | 98.2% | 100.0% | >= 95% |" in lines[3]
    assert "| 100.0% | 100.0% |  | 100% |" in lines[4]  # the acrostic's share; --poems is no constraint
    assert "| 5.6% | 5.3% | 79.2% | >= 80% of the real share: 63.4% |" in lines[5]
    assert "| 6.593 | 7.422 | unigram entropy 9.387 | <= 7.887 |" in lines[-1]
    alone = reproduce.verse_table({"lstm_tang": tang_result("lstm", 0.964, 0.056, 6.593, 500)})
    assert alone.splitlines()[0] == "| 500 poems at temperature 1.0 | LSTM | real held-out poems | target |"


def test_seeds_give_each_measure_its_mean_spread_and_the_rows_their_seed_count():
    """--seeds N on given numbers: combine_seeds keeps seed 0's run and adds the spread of every measure; the
    tables write mean ± std [min, max] and say how many seeds each row had. One seed: the result as it was."""
    def vae_result(seed, elbo, nll, seconds):
        return {"command": f"python train.py vae --latent-dim 20 --seed {seed}", "epochs": 50, "data": "mnist-5k",
                "training_seconds": seconds, "command_seconds": seconds + 5, "samples_per_sec_last_epoch": 9000.0,
                "metrics": {"model": "vae", "seed": seed, "binarize": False, "test_neg_elbo": elbo,
                            "test_reconstruction": elbo - 20, "test_kl": 20.0, "test_nll_importance_weighted": nll,
                            "train_neg_elbo": elbo - 10}, "generated": []}

    runs = [vae_result(0, 108.0, 104.0, 12.0), vae_result(1, 110.0, 105.0, 14.0), vae_result(2, 112.0, 109.0, 13.0)]
    assert reproduce.combine_seeds(runs[:1]) == runs[0]
    combined = reproduce.combine_seeds(runs)
    assert combined["command"] == runs[0]["command"] and combined["seeds"] == 3
    assert [run["seed"] for run in combined["per_seed"]] == [0, 1, 2]
    assert combined["spread"]["metrics/test_neg_elbo"] == {"n": 3, "mean": 110.0, "std": 2.0, "min": 108.0,
                                                           "max": 112.0}
    assert combined["spread"]["training_seconds"]["mean"] == 13.0 and "metrics/seed" not in combined["spread"]

    table = reproduce.vae_table({"vae_z20": combined, "vae_z2": vae_result(0, 157.0, 154.0, 13.0)})
    z20, z2 = table.splitlines()[2:]
    assert "(3 seeds, 0 to 2: mean ± std [min, max])" in z20 and "110.00 ± 2.00 [108.00, 112.00]" in z20
    assert "106.00 ± 2.65 [104.00, 109.00] (Bernoulli NLL on grey levels)" in z20 and "13 s ± 1 s [12 s, 14 s]" in z20
    assert "(seed 0 only)" in z2 and "| 157.00 |" in z2
    # A table of one-seed rows keeps the shape it had before --seeds.
    assert "seed" not in reproduce.vae_table({"vae_z2": vae_result(0, 157.0, 154.0, 13.0)})
