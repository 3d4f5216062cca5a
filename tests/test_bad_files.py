"""Bad files and unreadable directories: every command refuses them with one `error:` line, exit status 2
and no traceback, and leaves every run as it was.

The file cases run the commands' main() in this process (TensorFlow starts once, not once per case);
the permission cases run them as a user would, in a process without root's power to read anything.
"""

import ctypes
import os
import shutil
import stat
import zipfile

import pytest

import evaluate
import generate
import train
from conftest import TINY_GAN, run_script, train as train_run, tree_digest
from test_bad_input import assert_refused

CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, PR_CAPBSET_DROP = 1, 2, 24


def refused_in_process(capsys, main, *argv):
    """Runs a command's main(argv) here; asserts it exits with status 2 and one `error:` line; returns it."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # any other exception is a traceback: the test fails
        main([str(arg) for arg in argv])
    assert exit_info.value.code == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith("error: "), last_line
    return last_line


def damage(path, how):
    """Replaces the file at `path` by a damaged or foreign one."""
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])
    elif how == "text":
        path.write_text("these are not the bytes you are looking for\n")
    elif how == "foreign zip":  # a .keras file is a zip; this one holds something else
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "hello")
    else:
        raise ValueError(how)


DAMAGE = ("empty", "truncated", "text", "foreign zip")


@pytest.fixture
def gan_copy(tiny_gan_run, tmp_path):
    run_dir = tmp_path / "gan"
    shutil.copytree(tiny_gan_run, run_dir)
    return run_dir


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_export_is_refused(how, gan_copy, capsys):
    damage(gan_copy / "generator.keras", how)
    before = tree_digest(gan_copy)
    for main, argv in ((generate.main, [gan_copy, "--out", gan_copy / "x.png"]), (evaluate.main, [gan_copy])):
        line = refused_in_process(capsys, main, *argv)
        assert f"{gan_copy / 'generator.keras'} cannot be loaded" in line and "damaged" in line, line
    assert tree_digest(gan_copy) == before


def test_another_models_export_is_refused(gan_copy, tiny_gan_run, tiny_vae_run, tiny_lstm_run, tmp_path, capsys):
    # The GAN's discriminator where its generator should be: loads, but maps images to logits.
    shutil.copy(gan_copy / "discriminator.keras", gan_copy / "generator.keras")
    line = refused_in_process(capsys, generate.main, gan_copy)
    assert "generator.keras is not this run's generator: it maps (None, 28, 28, 1) to (None, 1)" in line, line
    assert "is not this run's generator" in refused_in_process(capsys, evaluate.main, gan_copy)

    vae_copy = tmp_path / "vae"
    shutil.copytree(tiny_vae_run, vae_copy)
    shutil.copy(tiny_gan_run / "generator.keras", vae_copy / "decoder.keras")
    before = tree_digest(vae_copy)
    assert "is not this run's decoder" in refused_in_process(capsys, generate.main, vae_copy)
    assert "is not this run's decoder" in refused_in_process(capsys, evaluate.main, vae_copy)
    assert tree_digest(vae_copy) == before

    lstm_copy = tmp_path / "lstm"
    shutil.copytree(tiny_lstm_run, lstm_copy)
    shutil.copy(tiny_gan_run / "generator.keras", lstm_copy / "model.keras")
    assert "is not this run's model" in refused_in_process(capsys, generate.main, lstm_copy)
    assert "is not this run's model" in refused_in_process(capsys, evaluate.main, lstm_copy)


@pytest.mark.parametrize("how", DAMAGE[:3])
def test_a_damaged_vocabulary_is_refused(how, tiny_lstm_run, tmp_path, capsys):
    run_dir = tmp_path / "lstm"
    shutil.copytree(tiny_lstm_run, run_dir)
    damage(run_dir / "vocab.json", how)
    before = tree_digest(run_dir)
    for main, argv in ((generate.main, [run_dir]), (evaluate.main, [run_dir]),
                       (train.main, ["lstm", "--resume", "--run-dir", run_dir, "--epochs", "3"])):
        assert "vocab.json cannot be read" in refused_in_process(capsys, main, *argv)
    assert tree_digest(run_dir) == before


@pytest.mark.parametrize("how", DAMAGE[:3])
def test_a_damaged_config_is_refused(how, gan_copy, capsys):
    damage(gan_copy / "config.json", how)
    before = tree_digest(gan_copy)
    for main, argv in ((generate.main, [gan_copy]), (evaluate.main, [gan_copy]),
                       (train.main, ["gan", "--resume", "--run-dir", gan_copy, "--epochs", "3"])):
        assert "config.json cannot be read" in refused_in_process(capsys, main, *argv)
    assert tree_digest(gan_copy) == before


def test_damaged_history_or_another_runs_checkpoints_are_refused_on_resume(gan_copy, tmp_path, capsys):
    resume = ["gan", "--resume", "--run-dir", gan_copy, "--epochs", "3"]
    history = (gan_copy / "history.csv").read_text()
    (gan_copy / "history.csv").write_text(history.replace(history.splitlines()[1].split(",")[1], "abc", 1))
    before = tree_digest(gan_copy)
    assert "history.csv cannot be read" in refused_in_process(capsys, train.main, *resume)
    assert tree_digest(gan_copy) == before

    (gan_copy / "history.csv").write_text(history)
    other = tmp_path / "other"  # the same model with another noise size: its checkpoints do not fit
    train_run(*TINY_GAN, "--noise-dim", "10", "--epochs", "1", "--steps-per-epoch", "1", "--run-dir", other)
    shutil.rmtree(gan_copy / "checkpoints")
    shutil.copytree(other / "checkpoints", gan_copy / "checkpoints")
    before = tree_digest(gan_copy)
    line = refused_in_process(capsys, train.main, *resume)
    assert "no checkpoint in" in line and "can be restored" in line, line
    assert tree_digest(gan_copy) == before


def drop_root_file_powers():
    """In the child, before exec: give up root's power to read and write any file (as an ordinary user)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_without_file_powers(script, *args):
    import subprocess
    import sys

    from conftest import REPO

    return subprocess.run([sys.executable, os.path.join(REPO, script), *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=600,
                          preexec_fn=drop_root_file_powers if os.geteuid() == 0 else None)


@pytest.fixture
def locked(gan_copy):
    """Yields the GAN run's copy; the test sets its permissions, which are restored afterwards."""
    yield gan_copy
    for folder, _, _ in os.walk(gan_copy):
        os.chmod(folder, 0o755)
    os.chmod(gan_copy, 0o755)


def test_unreadable_and_read_only_directories_are_refused(locked, tmp_path):
    try:
        probe = run_without_file_powers("train.py", "--help")
    except (OSError, __import__("subprocess").SubprocessError) as exc:
        pytest.skip(f"cannot drop root's file powers here ({exc})")
    assert probe.returncode == 0, probe.stderr[-2000:]

    before = tree_digest(locked)
    os.chmod(locked, 0o555)  # readable, not writable
    assert_refused(run_without_file_powers("evaluate.py", locked), "cannot be written (permission denied)")
    assert_refused(run_without_file_powers("train.py", "gan", "--resume", "--run-dir", locked, "--epochs", "3"),
                   "cannot be written (permission denied)")
    os.chmod(locked, 0)  # neither
    for script, argv in (("evaluate.py", [locked]), ("generate.py", [locked]),
                         ("train.py", ["gan", "--resume", "--run-dir", locked])):
        assert_refused(run_without_file_powers(script, *argv), f"{locked} cannot be read (permission denied)")
    assert_refused(run_without_file_powers("train.py", "gan", "--run-dir", locked),
                   "cannot be read and written (permission denied)")
    os.chmod(locked, 0o755)
    assert tree_digest(locked) == before

    unreadable_text = tmp_path / "secret.txt"
    unreadable_text.write_text("words " * 1000)
    unreadable_text.chmod(0)
    assert_refused(run_without_file_powers("train.py", "lstm", "--corpus", unreadable_text, "--run-dir",
                                           tmp_path / "lstm"), "cannot be read (Permission denied)")
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(stat.S_IRUSR | stat.S_IXUSR)
    assert_refused(run_without_file_powers("generate.py", locked, "--out", read_only / "x.png"), "cannot write")
    read_only.chmod(0o755)


def test_out_of_range_counts_are_refused(tiny_gan_run, tiny_lstm_run):
    for script, argv, expected in (
            ("generate.py", [tiny_gan_run, "--n", "1000000000"], "--n must be in [1, 10,000]"),
            ("generate.py", [tiny_lstm_run, "--length", "10000000000"], "--length must be in [0, 1,000,000]"),
            ("generate.py", [tiny_lstm_run, "--temperature", "inf"], "expected a finite number, got 'inf'"),
            ("evaluate.py", [tiny_gan_run, "--samples", "1000000000"], "--samples must be in [1, "),
            ("train.py", ["gan", "--learning-rate", "nan"], "expected a finite number, got 'nan'"),
            ("train.py", ["gan", "--cpu-replicas", "1000"], "--cpu-replicas must be at most 64")):
        assert_refused(run_script(script, *argv), expected)


def test_a_bad_tf_config_is_refused(tmp_path):
    for text, expected in (('{"cluster": ', "TF_CONFIG is not JSON"),
                           ('{"task": {"type": "worker", "index": 0}}', 'TF_CONFIG needs a "cluster" and a "task"'),
                           ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 1}}',
                            "TF_CONFIG's task 'worker' 1 is not in its cluster")):
        assert_refused(run_script("train.py", "gan", "--run-dir", tmp_path / "run",
                                  env=dict(os.environ, TF_CONFIG=text)), expected)
    assert not (tmp_path / "run").exists()
