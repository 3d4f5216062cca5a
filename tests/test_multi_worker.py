"""Two worker processes on localhost (MultiWorkerMirroredStrategy from TF_CONFIG) train as one process."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

from conftest import GAN_LEARNING_RATE, REPO, TINY_GAN, assert_equal_up_to_summation_order, model_weights, train


def free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def new_cluster():
    return {"worker": [f"localhost:{free_port()}", f"localhost:{free_port()}"]}


def worker_env(cluster, index):
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}


def run_two_workers(args, extra_env=lambda index: {}, timeout=300):
    """Runs `train.py ARGS` as the two workers of a new localhost cluster (worker i's environment plus
    extra_env(i)); asserts both succeed and returns their [(stdout, stderr)]."""
    cluster = new_cluster()
    workers = [subprocess.Popen([sys.executable, os.path.join(REPO, "train.py"), *map(str, args)], cwd=REPO,
                                env=dict(os.environ, **worker_env(cluster, index), **extra_env(index)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for index in range(2)]
    outputs = [worker.communicate(timeout=timeout) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs[0][1][-1500:] + outputs[1][1][-1500:]
    return outputs


def test_two_workers_equal_one_process(tmp_path):
    common = [*TINY_GAN, "--epochs", "2", "--steps-per-epoch", "3"]
    # Each worker's temporary files go to its own folder, to check that the non-chief cleans up.
    for index in range(2):
        (tmp_path / f"tmp{index}").mkdir()
    outputs = run_two_workers([*common, "--run-dir", tmp_path / "cluster"],
                              extra_env=lambda index: {"TMPDIR": str(tmp_path / f"tmp{index}")}, timeout=600)
    assert "multi-worker with 2 replica(s)" in outputs[0][0]
    # Both workers end with the same weights (only the chief exports them; each prints their fingerprint).
    fingerprints = [[line for line in stdout.splitlines() if line.startswith("weights sha256 ")]
                    for stdout, _ in outputs]
    assert len(fingerprints[0]) == 1 and fingerprints[0] == fingerprints[1], fingerprints
    assert os.listdir(tmp_path / "tmp1") == []  # worker 1 saved its share of each checkpoint there, then deleted it
    assert sorted(os.listdir(tmp_path / "cluster" / "checkpoints")) == [
        "checkpoint", "ckpt-3.data-00000-of-00001", "ckpt-3.index", "ckpt-6.data-00000-of-00001", "ckpt-6.index"]
    config = json.loads((tmp_path / "cluster" / "config.json").read_text())
    assert config["strategy"]["name"] == "multi-worker" and config["strategy"]["per_replica_batch_size"] == 16

    train(*common, "--run-dir", tmp_path / "single")
    losses = [np.loadtxt(tmp_path / run / "history.csv", delimiter=",", skiprows=1)[:, 1:5]
              for run in ("cluster", "single")]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)  # summed over workers in another order
    for name in ("generator.keras", "discriminator.keras"):
        assert_equal_up_to_summation_order(model_weights(tmp_path / "cluster" / name),
                                           model_weights(tmp_path / "single" / name), GAN_LEARNING_RATE,
                                           steps=6)
