"""The run directory: the contract between train.py, the tools that read runs, and the README.

    RUN_DIR/
      config.json        every resolved setting, data source used, strategy, replicas, versions
      history.csv        one row per epoch: losses, samples_per_sec, epoch and wall seconds
      checkpoints/       tf.train.CheckpointManager: models, optimizers, epoch (every epoch)
      logs/              TensorBoard scalars and sample images
      figures/           per-epoch sample grids, their GIF, the loss curves
      snapshots/         (GAN) the sampling generator's weights at ~20 epochs, for evaluate.py --over-training
      *.keras            exported models, loadable with keras.models.load_model alone

Files are written to a temporary name and renamed, so a killed process never leaves half a file.
"""

import contextlib
import csv
import io
import json
import os
import shutil

try:
    import fcntl  # POSIX file locks
except ImportError:  # Windows: none
    fcntl = None

from training import commands

# 2: checkpoints hold the step reached inside an epoch and the epoch's running means (a run resumes
# from any step boundary). evaluate.py and generate.py read only the exports, the same in both formats.
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
CONFIG = "config.json"
HISTORY = "history.csv"
CHECKPOINTS = "checkpoints"
LOGS = "logs"
FIGURES = "figures"


class RunDirError(Exception):
    """A run directory that cannot be used as asked (already a run, no checkpoint, ...)."""


def holds_run(path):
    """True when `path` has a config.json that this project wrote (of any format version)."""
    try:
        config = read_json(os.path.join(path, CONFIG))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "format_version" in config


def has_checkpoint(path):
    return os.path.isfile(os.path.join(path, CHECKPOINTS, "checkpoint"))


def require_writable(path):
    """Raises RunDirError unless the process may create and replace files in the directory `path`."""
    for folder in (path, *(os.path.join(path, sub) for sub in (CHECKPOINTS, LOGS, FIGURES))):
        if os.path.isdir(folder) and not os.access(folder, os.W_OK | os.X_OK):
            raise RunDirError(f"{folder} cannot be written (permission denied)")


def prepare_output_file(path):
    """Makes the folder of the file `path` (a report a command will write); raises RunDirError when `path`
    is a directory or its folder cannot be made or written."""
    if os.path.isdir(path):
        raise RunDirError("is a directory; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"cannot make {folder} ({exc.strerror or exc})") from None
    require_writable(folder)


def check_usable(path, resume, overwrite):
    """Read-only check that `path` can take the run; raises RunDirError. Touches nothing."""
    if resume:
        read_run_config(path, formats=(FORMAT_VERSION,))
        if not has_checkpoint(path):
            raise RunDirError(f"--resume: {path} has no checkpoint to continue from; start it again "
                              "with --overwrite")
        require_writable(path)
        return
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunDirError(f"--run-dir {path} is a file, not a directory")
    if os.path.isdir(path) and not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise RunDirError(f"--run-dir {path} cannot be read and written (permission denied)")
    if holds_run(path):
        if not overwrite:
            raise RunDirError(f"{path} already holds a run; continue it with --resume, replace it with "
                              "--overwrite, or choose another --run-dir")
    elif os.path.isdir(path) and os.listdir(path):
        # --overwrite only ever deletes what train.py wrote, never a directory of other files.
        raise RunDirError(f"--run-dir {path} is not empty and holds no run; choose an empty or new directory")


def prepare(path, overwrite):
    """Creates the directory tree, first removing an earlier run when `overwrite`."""
    if overwrite and holds_run(path):
        shutil.rmtree(path)
    for sub in ("", CHECKPOINTS, LOGS, FIGURES):
        os.makedirs(os.path.join(path, sub), exist_ok=True)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary name beside `path` to write to; renames it to `path` on success.

    The name keeps every suffix of `path` (writers such as Keras check `.keras`, `.weights.h5`).
    A killed process leaves at most a `.partial-` file behind, never half of `path`.
    """
    folder, name = os.path.split(path)
    partial = os.path.join(folder, f".partial-{name}")
    yield partial
    os.replace(partial, path)


FILE_LOCKS = fcntl is not None  # whether exclusive() locks on this platform


@contextlib.contextmanager
def exclusive(lock_path):
    """Holds an exclusive lock on `lock_path` (where the platform has file locks: FILE_LOCKS) while the block
    runs, so processes started together do a shared piece of work once: the first does it, the others wait."""
    if fcntl is None:
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
        yield


def write_atomic(path, text):
    with atomic_path(path) as partial:
        with open(partial, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def write_json(path, data):
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def read_history(run_dir):
    """Rows of history.csv as dicts of floats (epoch as int); [] when there is none."""
    path = os.path.join(run_dir, HISTORY)
    if not os.path.isfile(path):
        return []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        return [{key: (int(value) if key == "epoch" else float(value)) for key, value in row.items()}
                for row in rows]
    except (OSError, ValueError, TypeError) as exc:  # TypeError: a row with a missing or an extra column
        raise RunDirError(f"{path} cannot be read ({exc}); it is damaged") from exc


def write_history(run_dir, rows):
    """Rewrites history.csv with `rows` (dicts with the same keys), atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else ["epoch"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(os.path.join(run_dir, HISTORY), text.getvalue())


def read_run_config(path, formats=READABLE_FORMATS):
    """The config.json of the run in `path`, checked to be of one of `formats`; raises RunDirError."""
    if not os.path.exists(path):
        raise RunDirError(f"{path} does not exist")
    if not os.path.isdir(path):
        raise RunDirError(f"{path} is not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise RunDirError(f"{path} cannot be read (permission denied)")
    if not os.path.isfile(os.path.join(path, CONFIG)):
        raise RunDirError(f"{path} holds no run (no {CONFIG}); pass a directory that train.py wrote")
    try:
        config = read_json(os.path.join(path, CONFIG))
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
        raise RunDirError(f"{path}/{CONFIG} cannot be read ({exc})") from exc
    found = config.get("format_version") if isinstance(config, dict) else None
    if found in READABLE_FORMATS and found not in formats:
        raise RunDirError(f"{path} was written by an earlier version of this project (run format {found}) whose "
                          "checkpoints this version cannot continue; evaluate.py and generate.py still read it")
    if found not in formats:
        raise RunDirError(f"{path} was written by another version of this project "
                          f"(run format {found}, this version reads {', '.join(map(str, formats))})")
    if not (isinstance(config.get("settings"), dict) and isinstance(config.get("data"), dict)
            and "model" in config["settings"] and "source" in config["data"]):
        raise RunDirError(f"{path}/{CONFIG} is damaged: it lacks the run's settings or data source")
    return config


def open_finished_run(path, exports):
    """Returns the config of the finished run in `path`; raises RunDirError saying what is wrong.

    `exports` maps a model name to the files its finished run holds (for example generator.keras).
    """
    config = read_run_config(path)
    model = config["settings"]["model"]
    if model not in exports:
        raise RunDirError(f"{path} holds a run of an unknown model {model!r}")
    missing = [name for name in exports[model] if not os.path.isfile(os.path.join(path, name))]
    if missing:
        done = len(read_history(path))
        raise RunDirError(f"{path} holds an unfinished {model} run ({done} of {config['settings'].get('epochs')} "
                          f"epochs, no {missing[0]}); finish it with: python train.py {model} --resume "
                          f"--run-dir {path}")
    return config


# The exported networks of a finished run: (input shape, output shape) from the run's settings. A file
# whose shapes differ is another model's (a VAE decoder copied over a generator, a run of other settings).
IMAGE_BATCH = (None, 28, 28, 1)


def exported_shapes(settings, vocabulary_size=None):
    """{file name: (input shape, output shape)} of the networks a finished run of `settings` exports."""
    model = settings["model"]
    if model == "gan":
        return {"generator.keras": ((None, settings["noise_dim"]), IMAGE_BATCH),
                "discriminator.keras": (IMAGE_BATCH, (None, 1))}
    if model == "vae":
        latent = (None, settings["latent_dim"])
        return {"encoder.keras": (IMAGE_BATCH, (latent, latent)), "decoder.keras": (latent, IMAGE_BATCH)}
    return {"model.keras": ((None, None), (None, None, vocabulary_size))}


def _as_tuples(shape):
    """Keras reports a model's shapes as tuples, or lists of them for several outputs: compare as tuples."""
    return tuple(_as_tuples(part) for part in shape) if isinstance(shape[0], (list, tuple)) else tuple(shape)


def load_exported_model(run_dir, config, name, vocabulary_size=None):
    """RUN_DIR/name as a Keras model, checked to be the network this run exported; raises RunDirError.

    Keras' safe mode refuses to deserialise Python lambdas: loading never runs code from the file.
    """
    import keras  # deferred: the command line refuses bad input before TensorFlow starts

    if config["settings"]["model"] == "transformer":
        import models.transformer  # noqa: F401 - registers the layers of its own that its file names
    if config["settings"].get("pinyin"):
        import models.pinyin  # noqa: F401 - as above

    path = os.path.join(run_dir, name)
    try:
        model = keras.models.load_model(path, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - a truncated zip, a foreign file, a bad config: all fail here
        raise RunDirError(f"{path} cannot be loaded ({commands.one_line(exc)}): it is damaged or is not a model "
                          "train.py wrote; train the run again or restore the file") from exc
    inputs, outputs = exported_shapes(config["settings"], vocabulary_size)[name]
    if _as_tuples(model.input_shape) != inputs or _as_tuples(model.output_shape) != outputs:
        raise RunDirError(f"{path} is not this run's {name[:-len('.keras')]}: it maps {model.input_shape} to "
                          f"{model.output_shape}, where the run's maps {inputs} to {outputs}")
    return model
