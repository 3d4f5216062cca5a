"""Recipes by name and run length by budget: `--arch dcgan` alone is the measured DCGAN command, a typed flag
wins, and an image run's --train-images budget becomes epochs of whatever data is loaded."""

import dataclasses
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import REPO

from datasets import mnist
from training import cli

MEASURED_DCGAN = ["gan", "--arch", "dcgan", "--batch-size", "64", "--epochs", "60", "--learning-rate", "1e-3",
                  "--info-code", "10", "--info-weight", "0.5", "--data", "mnist-5k"]


@pytest.fixture(scope="module")
def mnist_5k():
    return mnist.load_mnist_5k()


def of_size(data, count):
    """The 5k sample with a training split of `count` images: its own, cut short or repeated (no copy)."""
    indices = np.arange(count) % len(data.train_images)
    return dataclasses.replace(data, train_images=data.train_images[indices], train_labels=data.train_labels[indices])


def settled(argv, data):
    return cli.settle_run_length(vars(cli.parse_args(argv)), data)


def test_arch_dcgan_alone_is_the_measured_dcgan_command(mnist_5k):
    short = settled(["gan", "--arch", "dcgan", "--data", "mnist-5k"], mnist_5k)
    measured = settled(MEASURED_DCGAN, mnist_5k)
    differing = {name for name in measured if short[name] != measured[name]}
    assert differing <= {"run_dir"}, differing  # the timestamped default directory aside, the same run
    sources = cli.setting_sources(["gan", "--arch", "dcgan", "--seed", "1"], short)
    assert sources["arch"] == sources["seed"] == "flag"
    assert sources["batch_size"] == sources["learning_rate"] == sources["info_code"] == "recipe"
    assert sources["epochs"] == "budget" and sources["beta_1"] == "default"


def test_a_typed_flag_wins_over_the_recipe_and_the_mlp_keeps_its_defaults(mnist_5k):
    typed = settled(["gan", "--arch", "dcgan", "--batch-size", "32", "--info-code", "0", "--epochs", "3"], mnist_5k)
    assert (typed["batch_size"], typed["info_code"], typed["learning_rate"], typed["epochs"]) == (32, 0, 1e-3, 3)
    assert cli.setting_sources(["gan", "--arch", "dcgan", "--batch-size", "32"], typed)["batch_size"] == "flag"
    mlp = settled(["gan"], mnist_5k)
    assert (mlp["batch_size"], mlp["learning_rate"], mlp["info_code"], mlp["epochs"]) == (128, 2e-4, 0, 500)
    conv = settled(["vae", "--arch", "conv"], mnist_5k)
    assert conv["train_images"] == cli.RECIPES[("vae", "conv")]["train_images"]


def test_help_shows_each_recipe_value_beside_the_default():
    gan_help = cli.build_parser()._subparsers._group_actions[0].choices["gan"].format_help()
    flat = " ".join(gan_help.split())
    assert "(default: 128; --arch dcgan: 64)" in flat
    assert "(default: 0.0002; --arch dcgan: 0.001)" in flat
    assert "--arch dcgan: 240000" in flat


@pytest.mark.parametrize("argv,train_size,epochs", [
    (["gan"], 4_000, 500),            # the 5k sample's training split: the measured 500 epochs
    (["gan"], 60_000, 33),            # full MNIST: 2,000,000 / 60,000 = 33.3
    (["gan"], 1_000, 2_000),          # a smaller source trains more epochs of it
    (["gan", "--arch", "dcgan"], 60_000, 4),          # 240,000 / 60,000
    (["vae"], 60_000, 3),             # 200,000 / 60,000 = 3.3
    (["vae", "--train-images", "6000"], 4_000, 2),   # 1.5 rounds up
    (["vae", "--train-images", "10"], 4_000, 1),     # at least one epoch
    (["vae", "--epochs", "7"], 60_000, 7),           # --epochs is exact, whatever the data
])
def test_the_image_budget_becomes_epochs_of_the_loaded_data(mnist_5k, argv, train_size, epochs):
    settings = settled([*argv, "--data", "mnist-5k"], of_size(mnist_5k, train_size))
    assert settings["epochs"] == epochs
    assert settings["lr_decay_epochs"] == epochs  # the cosine decay spans the run's epochs
    typed_decay = settled([*argv, "--lr-decay-epochs", "5"], of_size(mnist_5k, train_size))
    assert typed_decay["lr_decay_epochs"] == 5


# train.py on a data source of 1,000 images (the 5k sample cut short), then resumed where the same source
# has 4,000: the budget is turned into epochs once, after loading, and a resumed run keeps them.
TRAIN_ON_A_SUBSET = textwrap.dedent("""
    import dataclasses, sys
    import datasets, train
    size = {"train": 1000}
    load_for = datasets.load_for
    def load_subset(model, source, *options):
        data = load_for(model, source, *options)
        return dataclasses.replace(data, train_images=data.train_images[:size["train"]],
                                   train_labels=data.train_labels[:size["train"]])
    datasets.load_for = load_subset
    run_dir = sys.argv[1]
    train.main(["gan", "--data", "mnist-5k", "--train-images", "3000", "--batch-size", "32",
                "--steps-per-epoch", "1", "--steps-per-execution", "1", "--run-dir", run_dir])
    size["train"] = 4000
    try:
        train.main(["gan", "--resume", "--run-dir", run_dir])
    except SystemExit as exit_info:
        print("resume exit", exit_info.code)
""")


def test_train_py_turns_the_budget_into_epochs_after_loading_and_a_resume_keeps_them(tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run([sys.executable, "-c", TRAIN_ON_A_SUBSET, str(run_dir)], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert "resume exit 2" in result.stdout, result.stderr[-3000:]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["data"]["train_images"] == 1000
    assert (config["settings"]["epochs"], config["settings"]["lr_decay_epochs"]) == (3, 3)
    assert config["settings_from"]["epochs"] == "budget" and config["settings_from"]["train_images"] == "flag"
    # After each epoch, the whole run's time so far and left.
    assert "run: epoch 1/3, " in result.stdout and " left (" in result.stdout
    assert "run: epoch 3/3, " in result.stdout and "done (" in result.stdout
    # 3,000 images of a 4,000-image source would be 1 epoch; the resumed run keeps its recorded 3.
    assert "has already trained 3 epochs" in result.stderr
