"""The data of each model: MNIST images (mnist.py) for the GAN and VAE, text (text.py) for the LSTM,
and the keyed tf.data pipeline they share (pipeline.py)."""


class DataError(Exception):
    """The data could not be had or used; the message says what to use instead."""


def load_for(model, source):
    """The data `model` trains on, from `source` (a --data or --corpus value); raises DataError."""
    if model == "lstm":
        from datasets import text

        try:
            return text.load(source)
        except text.CorpusError as exc:
            raise DataError(exc) from None
    from datasets import mnist

    try:
        return mnist.load(source)
    except (mnist.DataUnavailable, ValueError) as exc:
        raise DataError(exc) from None
