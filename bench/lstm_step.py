"""LSTM speed at train.py's defaults: training characters/s against the keras-io way, the time to a
held-out bits per character, and generation against the tutorial's loop.

    python -m bench.lstm_step [--epochs 3] [--steps-per-epoch 40] [--length 500] [--out FILE]

Training, same model (train.py's defaults), data, batch, optimizer and clipping on both sides, so their
counted FLOPs per character are the same (ours skips the backward pass's matmul into the zero initial
state) and only the engine differs:
  ours:     training.loop.Trainer on training.lstm.LstmTask: what `python train.py lstm` runs, its LSTM
            layer as models.fused_lstm.lstm_sequence on a CPU, its rows in 4 concurrent groups (rows
            --lstm-chains 1: in one; --no-fused-lstm: Keras' LSTM loop)
  keras-io: model.compile(loss=sparse categorical cross-entropy) and fit() on the same (inputs, targets)
Generation of --length characters after a one-character prompt, same trained weights:
  ours:     models.lstm.TextSampler, one compiled step per character with the LSTM state carried
  tutorial: for each new character, model.predict on the whole text so far and sample from its last position
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import (FitRunner, compare_engines, text_step_main, text_step_parser,  # noqa: E402
                          time_to_quality)
from datasets import text  # noqa: E402
from models import lstm as lstm_models  # noqa: E402
from training import distribute, optimizers  # noqa: E402
from training.cli import parse_args  # noqa: E402
from training.lstm import LstmTask, split_window, training_windows, windows_per_epoch  # noqa: E402

# The quality the timed run must reach: held-out bits per character on pydoc, which the default model
# passes in about a quarter of its 20 epochs (it ends near 1.76).
QUALITY_METRIC, QUALITY_THRESHOLD, QUALITY_MAX_EPOCHS = "test_bits_per_char", 2.0, 20


def keras_io_runner(settings, data, steps_per_epoch):
    model = lstm_models.build_text_generator(len(data.vocabulary), settings["embedding_dim"], settings["units"],
                                             settings["layers"], settings["dropout"])
    seq_len = settings["seq_len"]
    return text_fit_runner(model, settings, data, steps_per_epoch, seq_len, loop_iterations=seq_len)


def text_fit_runner(model, settings, data, steps_per_epoch, seq_len, loop_iterations=None):
    """A text model compiled with sparse categorical cross-entropy and trained with fit(), on windows of seq_len
    + 1 characters, with train.py's optimizer (Keras' own update) and clipping; counts characters."""
    # Keras' own clipping: on fit()'s one device it clips the summed gradients, as ours does on any number.
    optimizer = optimizers.build({**settings, "fused_optimizer": False, "clip_norm": 0.0}, steps_per_epoch,
                                 mixed_precision=False)
    if settings["clip_norm"]:
        optimizer.global_clipnorm = settings["clip_norm"]
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batch_size = settings["batch_size"]
    windows = training_windows(data.train_ids, seq_len, 0, windows_per_epoch(len(data.train_ids), seq_len))
    dataset = (tf.data.Dataset.from_tensor_slices(windows).shuffle(len(windows), seed=0)
               .batch(batch_size, drop_remainder=True).take(steps_per_epoch).map(split_window)
               .prefetch(tf.data.AUTOTUNE))
    return FitRunner(model, dataset, batch_size * seq_len, loop_iterations=loop_iterations)


def tutorial_generate(model, prompt_ids, length, seed):
    """The tutorial's loop: the whole text so far through model.predict for every new character."""
    rng = np.random.default_rng(seed)
    ids = list(prompt_ids)
    for _ in range(length):
        logits = model.predict(np.array([ids], np.int32), verbose=0)[0, -1].astype(np.float64)
        probabilities = np.exp(logits - logits.max())
        ids.append(int(rng.choice(len(probabilities), p=probabilities / probabilities.sum())))
    return ids[len(prompt_ids):]


def generation_speed(model, data, length):
    """Characters/s of ours and of the tutorial's loop, generating `length` characters with `model`."""
    prompt_ids = data.vocabulary.encode("\n")
    sampler = lstm_models.TextSampler(model)
    sampler.generate(prompt_ids, 10, seed=0)  # trace once
    started = time.perf_counter()
    sampler.generate(prompt_ids, length, seed=0)
    ours_seconds = time.perf_counter() - started
    started = time.perf_counter()
    tutorial_generate(model, prompt_ids, length, seed=0)
    tutorial_seconds = time.perf_counter() - started
    return {"length": length, "ours_chars_per_sec": round(length / ours_seconds, 1),
            "tutorial_chars_per_sec": round(length / tutorial_seconds, 2),
            "ratio": round(tutorial_seconds / ours_seconds, 1)}


def measure(peak_gflops, epochs, steps_per_epoch, length, extra_runners=True):
    """The LSTM rows of the benchmark (train.py's defaults on pydoc; see the module docstring)."""
    distribute.make_deterministic(0)
    data = text.load("pydoc")
    settings = vars(parse_args(["lstm", "--corpus", "pydoc", "--steps-per-epoch", str(steps_per_epoch)]))
    seq_len = settings["seq_len"]

    title = (f"LSTM ({settings['layers']} x {settings['units']}), batch {settings['batch_size']} x {seq_len} "
             f"characters, {data.source}, {epochs} epochs of {steps_per_epoch} steps each, interleaved:")
    rows, ratio, trained_task, make_ours = compare_engines(
        LstmTask, settings, data, keras_io_runner(settings, data, steps_per_epoch), title=title, unit="chars",
        epochs=epochs, peak_gflops=peak_gflops, extra_runners=extra_runners, loop_iterations=seq_len,
        keras_io_label="keras-io (compile + fit)", one_step_per_call=False,
        variants=[("ours_one_chain", "ours, --lstm-chains 1", {"lstm_chains": 1}),
                  ("ours_keras_lstm", "ours, --no-fused-lstm (Keras' LSTM)", {"fused_lstm": False})])
    model = trained_task.model
    generation = generation_speed(model, data, length)  # trained weights, so the text is not uniform noise
    print(f"  generating {length} characters: ours (stateful, compiled) {generation['ours_chars_per_sec']:.0f} "
          f"chars/s, the tutorial's predict-per-character loop {generation['tutorial_chars_per_sec']:.1f}: "
          f"{generation['ratio']:.0f}x")
    quality = time_to_quality(make_ours(steps_per_epoch=None), QUALITY_METRIC, QUALITY_THRESHOLD,
                              QUALITY_MAX_EPOCHS)  # whole epochs, as train.py runs them
    print(f"  time to held-out {QUALITY_THRESHOLD:g} bits/char: {quality['wall_seconds']:.1f} s "
          f"({quality['training_seconds']:.1f} s of training steps; {quality['epochs']} epochs, "
          f"reached {quality['value']:.3f})")
    return {"command": "python train.py lstm --corpus pydoc", "unit": "chars", "units": settings["units"],
            "layers": settings["layers"], "seq_len": seq_len, "batch_size": settings["batch_size"],
            "corpus": data.source, "epochs": epochs, "steps_per_epoch": steps_per_epoch, "rows": rows,
            "ratio_to_keras_io_fit": ratio, "generation": generation, "time_to_quality": quality}


def build_parser():
    return text_step_parser("lstm", __doc__, steps_per_epoch=40)


def main(argv=None):
    return text_step_main("lstm", __doc__, measure, argv, steps_per_epoch=40)


if __name__ == "__main__":
    main()
