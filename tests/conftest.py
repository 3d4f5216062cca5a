"""Shared helpers: run the project's commands as a user would, in a subprocess, offline."""

import hashlib
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# GAN evaluations here judge with a digit classifier of 4 epochs (96.4% accurate on the held-out digits), cached
# under its own name, instead of the recipe's 20 (98.5%, 94 s of the suite's time); every command the tests
# run inherits it. The recipe's classifier is reproduce.py's (evaluation/classifier.py).
os.environ.setdefault("DIGIT_CLASSIFIER_EPOCHS", "4")

# A tiny but real GAN run on the bundled data: a few steps of every epoch.
TINY_GAN = ["gan", "--data", "mnist-5k", "--batch-size", "32", "--steps-per-epoch", "4", "--seed", "3", "--quiet"]

GAN_LEARNING_RATE = 2e-4  # train.py gan's default, the largest step a weight takes

TINY_VAE = ["vae", "--data", "mnist-5k", "--batch-size", "32", "--steps-per-epoch", "6", "--seed", "3", "--quiet",
            "--kl-warmup", "1"]
# A clip norm that clips every step, so the resume and replica tests compare the clipping itself.
TINY_LSTM = ["lstm", "--corpus", "pydoc", "--units", "32", "--embedding-dim", "8", "--seq-len", "20", "--batch-size",
             "16", "--steps-per-epoch", "25", "--seed", "2", "--quiet",
             "--learning-rate", "0.01", "--clip-norm", "0.05"]
# A tiny Transformer: 2 blocks of width 16 over windows of 16 characters, warming up over 5 steps, trained on
# the sampled softmax (training/sampled_softmax.py), so the text tests train on both losses: the LSTM's full
# softmax, the Transformer's sampled (resume, 2 replicas, mixed precision and XLA, held-out bits falling).
TINY_TRANSFORMER = ["transformer", "--corpus", "pydoc", "--context", "16", "--d-model", "16", "--heads", "2",
                    "--layers", "2", "--batch-size", "16", "--steps-per-epoch", "25", "--seed", "2", "--quiet",
                    "--learning-rate", "0.01", "--clip-norm", "0.05", "--warmup-steps", "5",
                    "--sampled-softmax", "64"]


def offline_env(tmp_path):
    """An environment where downloads fail at once (a refusing proxy) and Keras' cache is empty."""
    env = dict(os.environ)
    env.update({"KERAS_HOME": str(tmp_path / "keras_home"), "HTTPS_PROXY": "http://127.0.0.1:9",
                "HTTP_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
                "http_proxy": "http://127.0.0.1:9", "TF_CPP_MIN_LOG_LEVEL": "2"})
    return env


def run_script(script, *args, env=None, timeout=600):
    """Runs `python script args...` from the repository root; returns the CompletedProcess."""
    return subprocess.run([sys.executable, os.path.join(REPO, script), *map(str, args)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)


def run_in_process(main, *args, capsys):
    """Runs a script's `main(args)` in this process, for commands that stop before training (refusals,
    generation), without a new process's seconds of TensorFlow start-up. Returns a CompletedProcess with
    the exit status and what was printed, as `run_script` does; an uncaught exception propagates, so a
    traceback fails the test."""
    capsys.readouterr()  # drop what earlier calls printed
    try:
        main([str(arg) for arg in args])
        status = 0
    except SystemExit as exit_info:
        status = exit_info.code if isinstance(exit_info.code, int) else int(exit_info.code is not None)
    printed = capsys.readouterr()
    return subprocess.CompletedProcess(args, status, printed.out, printed.err)


def train(*args, **kwargs):
    result = run_script("train.py", *args, **kwargs)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def tree_digest(path):
    """A digest of every file's name and bytes under `path`, to prove a directory was not touched."""
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            file_path = os.path.join(folder, name)
            digest.update(os.path.relpath(file_path, path).encode())
            with open(file_path, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()


def assert_equal_up_to_summation_order(got_weights, expected_weights, learning_rate, steps):
    """Weights of two runs of `steps` updates whose only difference is the order in which replicas'
    gradients are summed.

    That order changes float round-off by ~1e-7; Adam divides by sqrt(v), which turns it into a step of
    up to about the learning rate wherever a gradient is near 0, and of either sign: there two runs can
    part by up to 2 x learning rate x steps (seen: the DCGAN with --info-code 10, one weight moved
    +1.8e-4 in one run and -6.3e-5 in the other over 3 steps of 2e-4). So: nearly every weight equal to
    1e-5, and none apart by more than that bound. Compare only short runs: on CPUs whose matmul kernels
    block rows by batch size, layouts differ in more than summation order, and that grows every step.
    """
    import numpy as np

    assert [a.shape for a in got_weights] == [b.shape for b in expected_weights]
    differences = np.concatenate([np.abs(a - b).ravel() for a, b in zip(got_weights, expected_weights)])
    assert np.mean(differences > 1e-5) < 1e-2 and differences.max() < 2 * learning_rate * steps, (
        np.mean(differences > 1e-5), differences.max())


def assert_resume_and_two_replicas_equal_one_run(tiny_flags, uninterrupted_run, tmp_path):
    """A 2-epoch run of `tiny_flags` stopped after epoch 1 and resumed, and one on 2 CPU replicas, end as
    `uninterrupted_run` (the same 2 epochs at once) did: the resumed one exactly, the other up to round-off."""
    import numpy as np

    from training.run_dir import read_history

    train(*tiny_flags, "--epochs", 1, "--lr-decay-epochs", 2, "--run-dir", tmp_path / "half")
    train(*tiny_flags, "--epochs", 2, "--resume", "--run-dir", tmp_path / "half")
    train(*tiny_flags, "--epochs", 2, "--cpu-replicas", 2, "--run-dir", tmp_path / "two")
    full = model_weights(uninterrupted_run / "model.keras")
    for a, b in zip(full, model_weights(tmp_path / "half" / "model.keras")):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(full, model_weights(tmp_path / "two" / "model.keras")):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    one, two = read_history(uninterrupted_run), read_history(tmp_path / "two")
    for column in ("loss", "test_loss"):
        np.testing.assert_allclose([row[column] for row in one], [row[column] for row in two], rtol=1e-5)


def text_tasks_under_mixed_precision_and_xla(task_class, flags):
    """The GPU paths on the CPU, in-process: yields a `task_class` task of `flags` after 3 steps under
    mixed_float16 with loss scaling, then one after 3 steps compiled with XLA (--jit), each checked finite
    with float32 logits; the policy is float32 again afterwards."""
    import keras
    import numpy as np
    import tensorflow as tf

    from datasets import text
    from training import loop
    from training.cli import parse_args

    settings = vars(parse_args(flags))
    strategy = tf.distribute.get_strategy()
    data = text.load(settings["corpus"], settings["one_per_line"])
    for mixed, jit in ((True, False), (False, True)):
        keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
        try:
            task = task_class(settings, data, strategy, mixed_precision=mixed)
            run_steps = loop.make_multi_step(task, strategy, jit=jit, trackers=loop.make_trackers(task, strategy))
            means = run_steps(iter(task.train_dataset(epoch=0)), tf.constant(3))
            assert all(np.isfinite(float(value)) for value in means.values()), means
            assert task.model.output.dtype == "float32"
            yield task
        finally:
            keras.mixed_precision.set_global_policy("float32")


def model_weights(path):
    import keras

    import models.transformer  # noqa: F401 - registers the Transformer's own layers, which its exports name
    return keras.models.load_model(path).get_weights()


def trained_once(tmp_path_factory, name, *train_args):
    """A finished run of `train.py train_args`, trained once per test session even when xdist's workers each
    ask for it (the first takes a lock and trains it into the session's shared temporary directory, the others
    wait and reuse it); each worker gets its own copy, as some tests write into their run (evaluate.py)."""
    from training import run_dir as run_files

    private = tmp_path_factory.mktemp(name) / "tiny"
    if os.environ.get("PYTEST_XDIST_WORKER") is None or not run_files.FILE_LOCKS:  # one process, or no lock
        train(*train_args, "--run-dir", private)
        return private
    shared = tmp_path_factory.getbasetemp().parent / "runs_trained_once" / name  # this session's, all workers'
    shared.parent.mkdir(exist_ok=True)
    finished = shared.parent / f"{name}.finished"
    with run_files.exclusive(shared.parent / f"{name}.lock"):
        if not finished.exists():
            shutil.rmtree(shared, ignore_errors=True)  # what a failed attempt left
            train(*train_args, "--run-dir", shared)
            finished.touch()
    shutil.copytree(shared, private)
    return private


@pytest.fixture(scope="session")
def tiny_gan_run(tmp_path_factory):
    """A finished 2-epoch tiny GAN run directory."""
    return trained_once(tmp_path_factory, "gan", *TINY_GAN, "--epochs", 2)


@pytest.fixture(scope="session")
def tiny_vae_run(tmp_path_factory):
    """A finished 2-epoch VAE run with a 2-D latent (so the manifold figure applies), its learning rate
    on the schedule of a 4-epoch run, so the resume test can continue it."""
    return trained_once(tmp_path_factory, "vae", *TINY_VAE, "--epochs", 2, "--lr-decay-epochs", 4)


@pytest.fixture(scope="session")
def tiny_lstm_run(tmp_path_factory):
    """A finished 2-epoch tiny LSTM run on the pydoc corpus."""
    return trained_once(tmp_path_factory, "lstm", *TINY_LSTM, "--epochs", 2)


@pytest.fixture(scope="session")
def tiny_transformer_run(tmp_path_factory):
    """A finished 2-epoch tiny Transformer run on the pydoc corpus."""
    return trained_once(tmp_path_factory, "transformer", *TINY_TRANSFORMER, "--epochs", 2)
