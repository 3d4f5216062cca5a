"""Transformer speed at train.py's defaults: training characters/s against the keras-io way and against the
matmul peak, and generation with the KV cache against recomputing the window for every character.

    python -m bench.transformer_step [--epochs 3] [--steps-per-epoch 30] [--length 500] [--out FILE]

Training, same model (train.py's defaults), data, batch, optimizer, warm-up schedule and clipping on both sides:
  ours:     training.loop.Trainer on training.transformer.TransformerTask: what `python train.py transformer` runs,
            on a CPU with models/fused_transformer.py (and a row without it, --no-fused-transformer)
  keras-io: model.compile(loss=sparse categorical cross-entropy) and fit() on the same (inputs, targets);
            compile's jit_compile="auto" means no XLA here, as Keras turns it off under op determinism, which
            the bench keeps on as train.py does
Generation of --length characters after a one-character prompt, same trained weights, in the same compiled loop
(models/sampling.py), past the context by the same sliding rule:
  cache:     models.transformer.TransformerSampler, one position's work per character
  recompute: models.transformer.WindowRecomputingSampler, model(window) over the whole window per character
"""

import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.common import compare_engines, text_step_main, text_step_parser  # noqa: E402
from bench.lstm_step import text_fit_runner  # noqa: E402
from datasets import text  # noqa: E402
from models import transformer as transformer_models  # noqa: E402
from training import distribute  # noqa: E402
from training.cli import parse_args  # noqa: E402
from training.transformer import TransformerTask  # noqa: E402


def keras_io_runner(settings, data, steps_per_epoch):
    model = transformer_models.build_transformer_lm(len(data.vocabulary), settings["context"], settings["d_model"],
                                                    settings["heads"], settings["layers"], settings["dropout"],
                                                    tied=settings["tied"])
    return text_fit_runner(model, settings, data, steps_per_epoch, settings["context"])


GENERATION_REPEATS = 5


def generation_speed(model, data, length):
    """Characters/s generating `length` characters with the KV cache and by recomputing each window, in the
    plain graph and compiled with XLA (jit): the median of GENERATION_REPEATS timed calls after a first call of
    the same length that traces it."""
    prompt_ids = data.vocabulary.encode("\n")
    result = {"length": length, "context": transformer_models.context_of(model)}
    for jit in (False, True):
        seconds = {}
        for name, sampler in (("cache", transformer_models.TransformerSampler(model)),
                              ("recompute", transformer_models.WindowRecomputingSampler(model))):
            sampler.generate(prompt_ids, length, seed=0, jit=jit)  # traces (and with jit compiles)
            timed = []
            for seed in range(1, 1 + GENERATION_REPEATS):
                started = time.perf_counter()
                sampler.generate(prompt_ids, length, seed=seed, jit=jit)
                timed.append(time.perf_counter() - started)
            seconds[name] = float(np.median(timed))
        suffix = "_jit" if jit else ""
        result.update({f"cache_chars_per_sec{suffix}": round(length / seconds["cache"], 1),
                       f"recompute_chars_per_sec{suffix}": round(length / seconds["recompute"], 1),
                       f"ratio{suffix}": round(seconds["recompute"] / seconds["cache"], 2)})
    return result


def measure(peak_gflops, epochs, steps_per_epoch, length, extra_runners=True):
    """The Transformer rows of the benchmark (train.py's defaults on pydoc; see the module docstring)."""
    distribute.make_deterministic(0)
    data = text.load("pydoc")
    settings = vars(parse_args(["transformer", "--corpus", "pydoc", "--steps-per-epoch", str(steps_per_epoch)]))
    title = (f"Transformer ({settings['layers']} blocks, width {settings['d_model']}, {settings['heads']} heads), "
             f"batch {settings['batch_size']} x {settings['context']} characters, {data.source}, {epochs} epochs of "
             f"{steps_per_epoch} steps each, interleaved:")
    rows, ratio, trained_task, _ = compare_engines(
        TransformerTask, settings, data, keras_io_runner(settings, data, steps_per_epoch), title=title, unit="chars",
        epochs=epochs, peak_gflops=peak_gflops, extra_runners=extra_runners,
        keras_io_label="keras-io (compile + fit)", one_step_per_call=False,
        variants=[("ours_keras_layers", "ours, --no-fused-transformer (the Keras model's layers)",
                   {"fused_transformer": False})])
    generation = generation_speed(trained_task.model, data, length)
    print(f"  generating {length} characters: with the KV cache {generation['cache_chars_per_sec']:.0f} chars/s, "
          f"recomputing the window {generation['recompute_chars_per_sec']:.0f}: {generation['ratio']:.1f}x; compiled "
          f"with XLA {generation['cache_chars_per_sec_jit']:.0f} against "
          f"{generation['recompute_chars_per_sec_jit']:.0f}: {generation['ratio_jit']:.1f}x")
    return {"command": "python train.py transformer --corpus pydoc", "unit": "chars", "d_model": settings["d_model"],
            "layers": settings["layers"], "heads": settings["heads"], "context": settings["context"],
            "batch_size": settings["batch_size"], "jit": settings["jit"], "corpus": data.source, "epochs": epochs,
            "steps_per_epoch": steps_per_epoch, "rows": rows, "ratio_to_keras_io_fit": ratio,
            "generation": generation}


def build_parser():
    return text_step_parser("transformer", __doc__, steps_per_epoch=30)


def main(argv=None):
    return text_step_main("transformer", __doc__, measure, argv, steps_per_epoch=30)


if __name__ == "__main__":
    main()
