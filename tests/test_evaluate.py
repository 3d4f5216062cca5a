"""evaluate.py on a finished run, and its refusals of directories that hold no finished run."""

import json
import shutil

from conftest import run_script
from test_bad_input import assert_refused


def test_evaluate_writes_metrics_and_samples(tiny_gan_run):
    result = run_script("evaluate.py", tiny_gan_run, "--samples", 200)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "a finished gan run" in result.stdout
    metrics = json.loads((tiny_gan_run / "metrics.json").read_text())
    assert metrics["model"] == "gan" and metrics["samples"] == 200 and metrics["data"] == "mnist-5k"
    for name in ("discriminator_accuracy_on_test_images", "discriminator_accuracy_on_samples"):
        assert 0.0 <= metrics[name] <= 1.0
    assert 0.0 <= metrics["confident_fraction"] <= 1.0 and 1.0 <= metrics["effective_classes"] <= 10.0
    assert len(metrics["class_histogram"]) == 10 and abs(sum(metrics["class_histogram"]) - 1) < 1e-3
    # The judge itself is good on held-out digits: the tests' quick one (conftest: 4 epochs, 96.4% seen); the
    # recipe's 20 epochs reach 98.5%.
    assert metrics["classifier_epochs"] == 4 and metrics["classifier_test_accuracy"] > 0.95
    assert (tiny_gan_run / "figures" / "evaluation_samples.png").stat().st_size > 1000


def test_evaluate_refuses_what_is_not_a_finished_run(tiny_gan_run, tmp_path):
    assert_refused(run_script("evaluate.py", tmp_path / "missing"), "does not exist")
    assert_refused(run_script("evaluate.py", tmp_path), "holds no run")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(tiny_gan_run, unfinished)
    (unfinished / "generator.keras").unlink()
    assert_refused(run_script("evaluate.py", unfinished), "unfinished gan run", "--resume")
    config = json.loads((unfinished / "config.json").read_text())
    config["format_version"] = 99
    (unfinished / "config.json").write_text(json.dumps(config))
    assert_refused(run_script("evaluate.py", unfinished), "another version")
    assert_refused(run_script("evaluate.py", tiny_gan_run, "--samples", "0"),
                   "--samples must be in [1, 100,000], got 0")
    assert_refused(run_script("evaluate.py", tiny_gan_run, "--seed", str(2**70)), "--seed must be in [0, 2**32)")
    assert_refused(run_script("evaluate.py", tiny_gan_run, "--sample", "5"), "unrecognized arguments")


def test_generate_writes_gan_samples(tiny_gan_run, tmp_path):
    result = run_script("generate.py", tiny_gan_run, "--n", 64, "--out", tmp_path / "gan.png")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote 64 new digits from the gan run" in result.stdout
    assert (tmp_path / "gan.png").stat().st_size > 1000
