"""Faults: a real training process stopped by SIGINT, SIGTERM or SIGKILL at a random moment resumes to
the same final weights as an uninterrupted run; a damaged latest checkpoint falls back to the one before."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, model_weights, run_script, train, tree_digest
from test_bad_input import assert_refused
from test_multi_worker import new_cluster, run_two_workers, worker_env

# Four full epochs of the 5k sample (62 steps each): long enough to be stopped in the middle of one.
FAULT_RUN = ["gan", "--data", "mnist-5k", "--batch-size", "64", "--epochs", "4", "--seed", "5",
             "--steps-per-execution", "4"]
EXPORTS = ("generator.keras", "discriminator.keras")


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("faults") / "uninterrupted"
    train(*FAULT_RUN, "--quiet", "--run-dir", run_dir)
    return run_dir


def start_training(run_dir, env_extra=None, extra_flags=()):
    """Starts train.py on FAULT_RUN (unbuffered, to read its progress as it comes); returns the process."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))
    return subprocess.Popen([sys.executable, os.path.join(REPO, "train.py"), *FAULT_RUN, *extra_flags,
                             "--run-dir", str(run_dir)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_training(process):
    """Reads stdout until the first epoch starts (the progress bar, not a tty, prints a line per epoch)."""
    for line in process.stdout:
        if line.startswith("Epoch 1/"):
            return
    raise AssertionError("training never started: " + process.stderr.read()[-2000:])


def assert_same_weights(run_dir, reference):
    for name in EXPORTS:
        for got, expected in zip(model_weights(run_dir / name), model_weights(reference / name)):
            np.testing.assert_array_equal(got, expected)
    # The epoch means too: the interrupted epoch's running means were checkpointed with it.
    columns = slice(0, 5)  # epoch, d_loss, g_loss, d_real, d_fake
    rows = [[line.split(",")[columns] for line in (run / "history.csv").read_text().splitlines()]
            for run in (run_dir, reference)]
    assert rows[0] == rows[1]


# SIGTERM takes SIGINT's path (training/loop.py's handler for both); test_sigterm_to_one_worker_... sends it.
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_stopped_run_resumes_to_the_uninterrupted_result(signal_number, uninterrupted_run, tmp_path):
    run_dir = tmp_path / "run"
    delay = random.uniform(0.3, 4.0)  # training takes ~6-10 s here: somewhere inside one of its 4 epochs
    process = start_training(run_dir)
    wait_for_training(process)
    if signal_number == signal.SIGKILL:
        # A killed process keeps only what its checkpoints hold: kill it once the first one (epoch 1) is
        # written, somewhere in the 3 epochs after it.
        while not (run_dir / "checkpoints" / "checkpoint").exists() and process.poll() is None:
            time.sleep(0.05)
        delay = random.uniform(0.0, 3.0)
    time.sleep(delay)
    process.send_signal(signal_number)
    stdout, stderr = process.communicate(timeout=300)
    context = f"signal {signal_number.name} after {delay:.2f} s; stderr: {stderr[-1500:]}"
    if signal_number == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL, context
    else:
        # Stopped at a step boundary with a checkpoint there, saying how to continue.
        assert process.returncode == 128 + signal_number, context
        assert "Traceback" not in stderr, context
        last_line = stderr.strip().splitlines()[-1]
        assert last_line.startswith(f"{signal_number.name}: training stopped "), context
        assert f"python train.py gan --resume --run-dir {run_dir}" in last_line, context
    assert not (run_dir / "generator.keras").exists(), context

    resumed = run_script("train.py", "gan", "--resume", "--run-dir", run_dir, "--quiet")
    assert resumed.returncode == 0, context + resumed.stderr[-2000:]
    assert "resuming" in resumed.stdout
    assert_same_weights(run_dir, uninterrupted_run)


def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(uninterrupted_run, tmp_path):
    run_dir = tmp_path / "damaged"
    shutil.copytree(uninterrupted_run, run_dir)
    checkpoints = run_dir / "checkpoints"
    latest = checkpoints / "ckpt-248.data-00000-of-00001"  # after epoch 4 of 62 steps
    with open(latest, "r+b") as handle:
        handle.truncate(os.path.getsize(latest) // 2)
    for name in EXPORTS:
        (run_dir / name).unlink()

    # It has trained 4 epochs, but the 4th checkpoint is damaged: epoch 4 is trained again, from epoch 3's.
    resumed = run_script("train.py", "gan", "--resume", "--run-dir", run_dir, "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"warning: checkpoint {checkpoints / 'ckpt-248'} cannot be restored" in resumed.stderr
    assert "resuming" in resumed.stdout and "after epoch 3" in resumed.stdout
    assert_same_weights(run_dir, uninterrupted_run)

    # With every checkpoint damaged there is nothing to resume: refused, and the run left as it was.
    for index_file in checkpoints.glob("ckpt-*.index"):
        index_file.write_bytes(b"")
    before = tree_digest(run_dir)
    assert_refused(run_script("train.py", "gan", "--resume", "--run-dir", run_dir, "--epochs", "5"),
                   "no checkpoint in", "can be restored", "--overwrite")
    assert tree_digest(run_dir) == before


def test_sigterm_to_one_worker_stops_every_worker_at_the_same_step(tmp_path):
    """A preemption notice reaching one worker of two: both checkpoint the same step (the chief writes it)
    and stop; the same two workers then resume to exactly the weights and epoch means of an uninterrupted
    two-worker run. (Resuming in another layout, one process, matches only up to round-off, and on CPUs
    whose matmul kernels block rows by batch size that round-off grows with every GAN step;
    tests/test_multi_worker.py compares the layouts over a few steps.)"""
    short = ["--steps-per-epoch", "4"]
    run_two_workers([*FAULT_RUN, *short, "--quiet", "--run-dir", tmp_path / "reference"])
    cluster = new_cluster()
    run_dir = tmp_path / "cluster"
    workers = [start_training(run_dir, worker_env(cluster, index), short) for index in range(2)]
    wait_for_training(workers[0])
    delay = random.uniform(0.0, 1.0)  # within the first compiled call or soon after
    time.sleep(delay)
    workers[1].send_signal(signal.SIGTERM)
    outputs = [worker.communicate(timeout=300) for worker in workers]
    context = (f"SIGTERM to worker 1 {delay:.2f} s into training; "
               f"stderr: {outputs[0][1][-1500:]} {outputs[1][1][-1500:]}")
    assert [worker.returncode for worker in workers] == [128 + signal.SIGTERM] * 2, context
    assert outputs[1][1].strip().splitlines()[-1].startswith("SIGTERM: training stopped"), context
    assert outputs[0][1].strip().splitlines()[-1].startswith("another worker's stop request: training stopped"), context
    stopped_at = [err.strip().splitlines()[-1].split(" and was checkpointed")[0].split("training stopped ")[1]
                  for _, err in outputs]
    assert stopped_at[0] == stopped_at[1], context

    run_two_workers(["gan", "--resume", "--run-dir", run_dir, "--quiet"])
    assert_same_weights(run_dir, tmp_path / "reference")
