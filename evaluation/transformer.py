"""Evaluating a trained Transformer: the text models' measures (evaluation/lstm.py), and its attention over a
prompt, every head of every layer (figures/attention.png)."""

import os

import numpy as np

from evaluation.lstm import load_text_run, measure_text_model
from evaluation.verse import DEFAULT_POEMS
from models.transformer import context_of, read_window
from training import figures
from training import run_dir as run_files

ATTENTION_CHARS = 48  # the prompt drawn: the held-out text's first characters (at most the context)


def evaluate(run_dir, config, data, seed, poems=DEFAULT_POEMS):
    """Returns a metrics dict; writes samples, figures/losses.png and figures/attention.png (and on one poem a
    line, the poems' measures: evaluation/lstm.py)."""
    vocabulary, model = load_text_run(run_dir, config)
    metrics = measure_text_model(run_dir, config, data, seed, vocabulary, model, poems)
    ids = data.held_out_ids[:min(ATTENTION_CHARS, context_of(model))]
    plot_attention(model, vocabulary.decode(ids), ids, os.path.join(run_dir, run_files.FIGURES, "attention.png"))
    return metrics


def plot_attention(model, prompt, ids, path):
    """A grid, a row per layer and a column per head, of softmax(QK^T / sqrt(d)) over the prompt: row t of
    each square is where position t looks (the columns s <= t)."""
    _, _, weights = read_window(model, np.asarray(ids, np.int32)[np.newaxis])
    layers, heads = len(weights), int(weights[0].shape[1])
    shown = [{"\n": "\\n", " ": "·"}.get(char, char) for char in prompt]
    font, shown = figures.font_for(shown, size=5)  # Chinese too, where matplotlib's default font has none
    figure, axes = figures.plt.subplots(layers, heads, figsize=(3.2 * heads, 3.2 * layers), squeeze=False)
    for layer, layer_weights in enumerate(weights):
        for head in range(heads):
            axis = axes[layer, head]
            axis.imshow(np.asarray(layer_weights[0, head]), cmap="viridis", vmin=0.0, vmax=1.0)
            axis.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=9)
            axis.set_xticks(range(len(shown)), shown if layer == layers - 1 else [], fontproperties=font)
            axis.set_yticks(range(len(shown)), shown if head == 0 else [], fontproperties=font)
    figure.suptitle("attention weights: row = the position reading, column = the position read", fontsize=10)
    figure.tight_layout()
    with run_files.atomic_path(path) as partial:
        figure.savefig(partial, dpi=110, format="png")
    figures.plt.close(figure)
