"""Evaluating a trained text generator (the LSTM, and through measure_text_model the Transformer): held-out bits
per character and perplexity, and samples; on a corpus of one poem a line, the poems' measures beside real ones
(evaluation/verse.py)."""

import math
import os

import numpy as np

from datasets.text import LINE_END
from evaluation import verse
from training import run_dir as run_files
from training.lstm import cross_entropy, held_out_examples, load_run_vocabulary, plot_curves, split_window
from training.task import task_class

SAMPLE_TEMPERATURES = (0.2, 0.5, 1.0)
SAMPLE_LENGTH = 500
WINDOWS_PER_BATCH = 64
PROMPT_CHARS = 40


def held_out_nats_per_char(model, held_out_ids, seq_len, line_end_id=None):
    """Mean -log p(next char) over the held-out text, read in windows of seq_len, each from scratch, a
    document at a time with line_end_id (as during training, so it matches history.csv's test_loss)."""
    total, count = 0.0, 0.0
    windows, weights = held_out_examples(held_out_ids, seq_len, line_end_id)
    for start in range(0, len(windows), WINDOWS_PER_BATCH):
        ids, targets = split_window(windows[start:start + WINDOWS_PER_BATCH])
        batch_weights = weights[start:start + WINDOWS_PER_BATCH]
        nats = cross_entropy(targets, model(ids, training=False)).numpy() * batch_weights
        total, count = total + float(nats.sum(dtype=np.float64)), count + float(batch_weights.sum())
    return total / count


def load_text_run(run_dir, config):
    """(vocabulary, model) of a finished text run; raises RunDirError."""
    vocabulary = load_run_vocabulary(run_dir)
    return vocabulary, run_files.load_exported_model(run_dir, config, "model.keras", len(vocabulary))


def evaluate(run_dir, config, data, seed, poems=verse.DEFAULT_POEMS):
    """Returns a metrics dict and writes samples.txt (three temperatures) and figures/losses.png."""
    vocabulary, model = load_text_run(run_dir, config)
    return measure_text_model(run_dir, config, data, seed, vocabulary, model, poems)


def measure_text_model(run_dir, config, data, seed, vocabulary, model, poems=verse.DEFAULT_POEMS):
    """A text model's metrics dict, its samples (evaluation_samples.txt, from its task's sampler) and its
    curves (figures/losses.png); on one poem a line, also evaluation_poems.txt and the verse measures of
    `poems` poems from that sampler."""
    settings = config["settings"]
    task_type = task_class(settings["model"])  # the run's LstmTask or TransformerTask: its window, sampler, title
    sampler = task_type.make_sampler(model)
    seq_len = int(settings[task_type.length_flag])  # the training window
    line_end_id = vocabulary.ids[LINE_END] if data.one_per_line else None
    nats = held_out_nats_per_char(model, data.held_out_ids, seq_len, line_end_id)
    # Continue the first words of the held-out text: the model never trained on them.
    prompt = vocabulary.decode(data.held_out_ids[:PROMPT_CHARS])
    sections = []
    for temperature in SAMPLE_TEMPERATURES:
        ids = sampler.generate(vocabulary.encode(prompt), SAMPLE_LENGTH, temperature, seed=seed)
        sections.append(f"=== temperature {temperature}, seed {seed} ===\n{prompt + vocabulary.decode(ids)}\n")
    run_files.write_atomic(os.path.join(run_dir, "evaluation_samples.txt"), "\n".join(sections))
    plot_curves(run_files.read_history(run_dir), os.path.join(run_dir, run_files.FIGURES, "losses.png"),
                task_type.curves_title, sampled=bool(settings.get("sampled_softmax")))
    metrics = {
        "model": settings["model"],
        "corpus": data.source,
        "held_out_chars": int(len(data.held_out_ids)),
        "vocabulary_size": len(vocabulary),
        "seq_len": seq_len,
        "seed": seed,
        "held_out_nats_per_char": nats,
        "held_out_bits_per_char": nats / math.log(2.0),
        "held_out_perplexity": math.exp(nats),
        "sample_temperatures": list(SAMPLE_TEMPERATURES),
    }
    if data.one_per_line:
        measures = verse.evaluate(sampler, data, poems, seed)
        samples = measures.pop("samples")
        run_files.write_atomic(os.path.join(run_dir, "evaluation_poems.txt"), LINE_END.join(samples) + LINE_END)
        metrics["verse"] = measures
    return metrics

