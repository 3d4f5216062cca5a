"""LSTM speed: training characters/s against the keras-io way, and generation against the tutorial's loop.

    python -m bench.lstm_step [--epochs 3] [--steps-per-epoch 40] [--length 500] [--out FILE]

Training, same model (train.py's defaults), data, batch, optimizer and clipping on both sides:
  ours:     training.loop.Trainer on training.lstm.LstmTask (what train.py runs)
  keras-io: model.compile(loss=sparse categorical cross-entropy) and fit() on the same (inputs, targets)
Generation of --length characters after a one-character prompt, same trained weights:
  ours:     models.lstm.TextSampler, one compiled step per character with the LSTM state carried
  tutorial: for each new character, model.predict on the whole text so far and sample from its last position
Throughput is counted as bench/common.py says, in characters; epochs of the runners alternate.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import (FitRunner, TrainerRunner, environment, interleave, summarize,  # noqa: E402
                          write_result)
from datasets import text  # noqa: E402
from models import lstm as lstm_models  # noqa: E402
from training import distribute, optimizers  # noqa: E402
from training.cli import parse_args  # noqa: E402
from training.lstm import LstmTask, split_window, training_windows, windows_per_epoch  # noqa: E402


def keras_io_runner(settings, data, steps_per_epoch):
    model = lstm_models.build_text_generator(len(data.vocabulary), settings["embedding_dim"], settings["units"],
                                             settings["layers"], settings["dropout"])
    optimizer = optimizers.build(settings, steps_per_epoch, mixed_precision=False)
    if settings["clip_norm"]:
        optimizer.global_clipnorm = settings["clip_norm"]
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    seq_len, batch_size = settings["seq_len"], settings["batch_size"]
    windows = training_windows(data.train_ids, seq_len, 0, windows_per_epoch(len(data.train_ids), seq_len))
    dataset = (tf.data.Dataset.from_tensor_slices(windows).shuffle(len(windows), seed=0)
               .batch(batch_size, drop_remainder=True).take(steps_per_epoch).map(split_window)
               .prefetch(tf.data.AUTOTUNE))
    return FitRunner(model, dataset, batch_size * seq_len)  # counts characters


def tutorial_generate(model, prompt_ids, length, seed):
    """The tutorial's loop: the whole text so far through model.predict for every new character."""
    rng = np.random.default_rng(seed)
    ids = list(prompt_ids)
    for _ in range(length):
        logits = model.predict(np.array([ids], np.int32), verbose=0)[0, -1].astype(np.float64)
        probabilities = np.exp(logits - logits.max())
        ids.append(int(rng.choice(len(probabilities), p=probabilities / probabilities.sum())))
    return ids[len(prompt_ids):]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.lstm_step", description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="measured epochs per runner (after a warm-up epoch)")
    parser.add_argument("--steps-per-epoch", type=int, default=40)
    parser.add_argument("--length", type=int, default=500, help="characters to generate")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    distribute.make_deterministic(0)
    data = text.load("pydoc")
    settings = vars(parse_args(["lstm", "--corpus", "pydoc", "--steps-per-epoch", str(args.steps_per_epoch)]))
    ours = TrainerRunner(lambda strategy: LstmTask(settings, data, strategy),
                         steps_per_execution=settings["steps_per_execution"])
    runners = {"ours": ours, "keras_io_fit": keras_io_runner(settings, data, args.steps_per_epoch)}
    rates = interleave(runners, args.epochs)
    result = {"units": settings["units"], "layers": settings["layers"], "seq_len": settings["seq_len"],
              "batch_size": settings["batch_size"], "corpus": data.source, "epochs": args.epochs,
              "steps_per_epoch": args.steps_per_epoch, **environment()}
    summarize(f"LSTM ({settings['layers']} x {settings['units']}), batch {settings['batch_size']} x "
              f"{settings['seq_len']} characters, {data.source}, {args.epochs} epochs of {args.steps_per_epoch} "
              "steps each, interleaved:", rates,
              {"ours": "ours (Trainer)", "keras_io_fit": "keras-io (compile + fit)"}, "chars", result)

    model = ours.trainer.task.model  # trained weights, so the text is not uniform noise
    prompt_ids = data.vocabulary.encode("\n")
    sampler = lstm_models.TextSampler(model)
    sampler.generate(prompt_ids, 10, seed=0)  # trace once
    started = time.perf_counter()
    sampler.generate(prompt_ids, args.length, seed=0)
    ours_seconds = time.perf_counter() - started
    started = time.perf_counter()
    tutorial_generate(model, prompt_ids, args.length, seed=0)
    tutorial_seconds = time.perf_counter() - started
    result.update({"generation_length": args.length,
                   "generation_ours_chars_per_sec": round(args.length / ours_seconds, 1),
                   "generation_tutorial_chars_per_sec": round(args.length / tutorial_seconds, 1),
                   "generation_ratio": round(tutorial_seconds / ours_seconds, 1)})
    print(f"generation of {args.length} characters (chars/s): ours (stateful, compiled) "
          f"{result['generation_ours_chars_per_sec']:.0f}, the tutorial's predict-per-character loop "
          f"{result['generation_tutorial_chars_per_sec']:.1f}: {result['generation_ratio']:.0f}x")
    return write_result(result, args.out)


if __name__ == "__main__":
    main()
