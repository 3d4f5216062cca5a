"""What every command (train.py, evaluate.py, generate.py, reproduce.py, python -m bench) shares: a mistake is
refused with one `error:` line and exit status 2, no traceback (docs/input.md); one_line, which shortens an
exception for such a line (the library's warnings use it too); and checks of values several commands take.

Nothing here imports TensorFlow, so a mistyped command is refused at once. train.py's own flags are in
training/cli.py.
"""

import argparse
import math
import re
import sys


class UsageError(Exception):
    """A value the user can fix; reported as one `error:` line with exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, and takes no abbreviated flags."""

    def __init__(self, *args, **kwargs):
        # No abbreviations: `--batch 64` must not pass for --batch-size unnoticed (training/cli.py:
        # explicit_flags tells typed flags from defaults by their full names).
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(message)

    def parse_or_exit(self, argv):
        """parse_args, or one `error:` line and exit status 2 (for scripts with no checks of their own)."""
        try:
            return self.parse_args(argv)
        except UsageError as exc:
            fail(exc)


def skip_unused_imports():
    """Spares a command the import of scikit-learn, which Keras makes at start-up whenever it is installed (for
    keras.wrappers, which nothing here uses; mlxtend installs it): about 1.5 s of every command's start on the
    2-core CPU, a fifth of TensorFlow and Keras'. A None in sys.modules makes `import sklearn` fail as if it were
    absent, and Keras then goes on without its wrappers. Call it before Keras is imported; an sklearn already
    imported is left alone."""
    sys.modules.setdefault("sklearn", None)


def one_line(exc, limit=160):
    """An exception's message as one short line, without TensorFlow's {{function_node ...}} prefix."""
    text = re.sub(r"\{\{.*?\}\}\s*", "", " ".join(str(exc).split()))
    return (text[:limit] + "...") if len(text) > limit else (text or type(exc).__name__)


def fail(message):
    """Prints `error: message` on stderr and exits with status 2 (no traceback)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def finite_float(text):
    """A float flag's value: a finite number (argparse's float would take nan and inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def require_seed(seed):
    """Seeds feed NumPy and TensorFlow's 32-bit seed slots; refuse what they cannot take."""
    if not 0 <= seed < 2**32:
        raise UsageError(f"--seed must be in [0, 2**32), got {seed}")
