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


def test_two_workers_equal_one_process(tmp_path):
    cluster = {"worker": [f"localhost:{free_port()}", f"localhost:{free_port()}"]}
    common = [*TINY_GAN, "--epochs", "2", "--steps-per-epoch", "3"]
    workers = []
    for index in range(2):
        # Each worker's temporary files go to its own folder, to check that the non-chief cleans up.
        (tmp_path / f"tmp{index}").mkdir()
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                   TMPDIR=str(tmp_path / f"tmp{index}"))
        workers.append(subprocess.Popen([sys.executable, os.path.join(REPO, "train.py"), *common,
                                         "--run-dir", str(tmp_path / "cluster")],
                                        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (stdout, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
    assert "multi-worker with 2 replica(s)" in outputs[0][0]
    # Both workers end with the same weights (only the chief exports them; each prints their fingerprint).
    fingerprints = [[line for line in stdout.splitlines() if line.startswith("weights sha256 ")] for stdout, _ in outputs]
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
                                           model_weights(tmp_path / "single" / name), GAN_LEARNING_RATE)
