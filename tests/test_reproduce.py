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


def test_quick_writes_every_artefact_and_leaves_the_committed_ones_alone(tmp_path):
    committed = {name: digest(os.path.join(REPO, "docs", "figures", name))
                 for name in os.listdir(os.path.join(REPO, "docs", "figures"))}
    readme = digest(os.path.join(REPO, "README.md"))
    result = run_script("reproduce.py", "--quick", "--out", tmp_path / "quick", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]

    out = tmp_path / "quick"
    expected_figures = {target for spec in reproduce.EXPERIMENTS.values() for target in spec["figures"].values()}
    assert expected_figures <= set(os.listdir(out / "figures"))
    for name in expected_figures:
        assert (out / "figures" / name).stat().st_size > 1000, name
        assert f"figure: {os.path.relpath(out / 'figures' / name, REPO)}" in result.stdout  # says where it went
    comparison = out / "figures" / reproduce.TEXT_COMPARISON["figure"]  # the LSTM and the Transformer, one run
    assert comparison.stat().st_size > 1000
    report = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert report["quick"] and set(report["experiments"]) == set(reproduce.EXPERIMENTS) - set(reproduce.QUICK_SKIPS)
    poems, spring, machine = report["experiments"]["lstm_tang"]["generated"]
    assert len(poems["text"].splitlines()) == 5 and spring["form_valid_share"] == machine["form_valid_share"] == 1
    assert spring["text"].startswith("春") and machine["text"].startswith("人")
    tables = (out / "results.md").read_text(encoding="utf-8")
    assert "| dcgan |" in tables and "classifier FID" in tables and "rhyme share of the valid poems" in tables
    assert "| Transformer | `python train.py transformer --corpus pydoc" in tables
    # Nothing committed changed: the quick run writes only under --out.
    assert digest(os.path.join(REPO, "README.md")) == readme
    assert {name: digest(os.path.join(REPO, "docs", "figures", name)) for name in committed} == committed


def test_quick_never_writes_over_the_committed_figures(tmp_path):
    assert_refused(run_script("reproduce.py", "--quick"), "--quick needs --out DIR")
    assert_refused(run_script("reproduce.py", "--quick", "--out", os.path.join(REPO, "docs", "x")), "inside docs/")
    assert_refused(run_script("reproduce.py", "--only", "gan,bogus", "--out", tmp_path), "--only takes groups")
    assert_refused(run_script("reproduce.py", "--jobs", "0", "--out", tmp_path), "--jobs must be 1 or more, got 0")
