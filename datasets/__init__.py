"""The data of each model: MNIST images (mnist.py) for the GAN and VAE, text (text.py) for the LSTM and
the Transformer,
and the keyed tf.data pipeline they share (pipeline.py)."""

import contextlib
import socket

DOWNLOAD_TIMEOUT_SECONDS = 20
TEXT_MODELS = ("lstm", "transformer")  # the models that train on text (text.py); the others on MNIST


@contextlib.contextmanager
def download_timeout(seconds=DOWNLOAD_TIMEOUT_SECONDS):
    """Downloads inside fail after `seconds` of silence instead of hanging on a half-open network."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


class DataError(Exception):
    """The data could not be had or used; the message says what to use instead."""


def load_for(model, source, one_per_line=False):
    """The data `model` trains on, from `source` (a --data or --corpus value; a text a document a line if
    `one_per_line`); raises DataError."""
    if model in TEXT_MODELS:
        from datasets import text

        try:
            return text.load(source, one_per_line)
        except text.CorpusError as exc:
            raise DataError(exc) from None
    from datasets import mnist

    try:
        return mnist.load(source)
    except (mnist.DataUnavailable, ValueError) as exc:
        raise DataError(exc) from None
