"""Figures written into a run: image grids, the GIF of grids over training, and training curves."""

import functools
import os

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager, ft2font  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from training.run_dir import atomic_path  # noqa: E402


def tile(images, columns):
    """(n, h, w, 1) floats in [0, 1] -> one (rows*h, columns*w) uint8 mosaic, 2-pixel gaps."""
    count, height, width = images.shape[:3]
    rows = -(-count // columns)
    gap = 2
    mosaic = np.ones((rows * (height + gap) + gap, columns * (width + gap) + gap), dtype=np.float32)
    for index in range(count):
        top = gap + (index // columns) * (height + gap)
        left = gap + (index % columns) * (width + gap)
        mosaic[top:top + height, left:left + width] = images[index, ..., 0]
    return (np.clip(mosaic, 0.0, 1.0) * 255).round().astype(np.uint8)


def save_grid(images, path, columns=10, scale=3):
    """Saves images (n, h, w, 1) in [0, 1] as a PNG grid, enlarged `scale` times."""
    mosaic = Image.fromarray(tile(images, columns), mode="L")
    mosaic = mosaic.resize((mosaic.width * scale, mosaic.height * scale), Image.NEAREST)
    with atomic_path(path) as partial:
        mosaic.save(partial)


def save_gif(frame_paths, path, milliseconds_per_frame=300, max_frames=25, max_side=320):
    """Writes the PNG frames as an animated GIF that holds its last frame a little longer.

    At most `max_frames` evenly spaced frames (the last always among them), shrunk to `max_side`
    pixels: 100 full-size grids would make a GIF of over 20 MB.
    """
    if not frame_paths:
        return
    keep = sorted({round(i * (len(frame_paths) - 1) / max(max_frames - 1, 1))
                   for i in range(min(max_frames, len(frame_paths)))})
    frames = []
    for index in keep:
        frame = Image.open(frame_paths[index]).convert("L")
        shrink = max(1, -(-max(frame.size) // max_side))
        frames.append(frame.resize((frame.width // shrink, frame.height // shrink), Image.NEAREST))
    durations = [milliseconds_per_frame] * (len(frames) - 1) + [milliseconds_per_frame * 6]
    with atomic_path(path) as partial:
        frames[0].save(partial, save_all=True, append_images=frames[1:], duration=durations, loop=0)


def save_epoch_gif(folder, prefix="samples_epoch_", path_name="samples.gif"):
    """The GIF of the per-epoch grids `folder/<prefix>NNN.png`, written as `folder/<path_name>`.

    Made once at the end of training: re-encoding it every epoch would cost more than a short epoch.
    """
    frames = sorted(name for name in os.listdir(folder)
                    if name.startswith(prefix) and name.endswith(".png") and ".partial" not in name)
    save_gif([os.path.join(folder, name) for name in frames], os.path.join(folder, path_name))


def _save(figure, path):
    """Writes a matplotlib figure to `path` atomically and frees it."""
    with atomic_path(path) as partial:
        figure.savefig(partial, dpi=100)
    plt.close(figure)


def plot_curves(history, panels, path, title=None, labels=None, reference_lines=None, axis_settings=None):
    """Line plots of history columns per epoch; `panels` is a list of (panel title, [columns]).

    `labels` optionally renames columns in the legends, e.g. {"d_real": "D(x)"}; `reference_lines`
    optionally maps a panel title to [(value, label)], drawn as dashed horizontal lines, and `axis_settings`
    a panel title to matplotlib Axes.set arguments, e.g. {"yscale": "log"} or {"ylim": (0, 10)}.
    """
    labels, reference_lines, axis_settings = labels or {}, reference_lines or {}, axis_settings or {}
    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for axis, (panel_title, columns) in zip(axes[0], panels):
        for column in columns:
            axis.plot(epochs, [row[column] for row in history], marker="." if len(epochs) < 40 else None,
                      label=labels.get(column, column))
        for value, label in reference_lines.get(panel_title, []):
            axis.axhline(value, color="grey", linestyle="--", label=label)
        axis.set(**axis_settings.get(panel_title, {}))
        axis.set_title(panel_title)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    _save(figure, path)


def save_bars(names, values, path, title, axis_names, reference_line=None):
    """A bar chart of `values` named `names`, each bar labelled with its value; `reference_line` is an
    optional (value, label) drawn as a dashed horizontal line."""
    figure, axis = plt.subplots(figsize=(6.4, 3.8))
    bars = axis.bar([str(name) for name in names], values, color="tab:blue")
    axis.bar_label(bars, fmt="%.3g", fontsize=8)
    if reference_line:
        axis.axhline(reference_line[0], color="grey", linestyle="--", label=reference_line[1])
        axis.legend()
    axis.set_title(title, fontsize=10)
    axis.set_xlabel(axis_names[0])
    axis.set_ylabel(axis_names[1])
    axis.margins(y=0.12)  # room for the labels above the tallest bar
    figure.tight_layout()
    _save(figure, path)


def save_scatter(points, classes, path, title, axis_names, colour_label):
    """A scatter plot of 2-D `points` coloured by integer `classes` (0-9)."""
    figure, axis = plt.subplots(figsize=(6.4, 5.4))
    scatter = axis.scatter(points[:, 0], points[:, 1], c=classes, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
    figure.colorbar(scatter, ticks=range(10), label=colour_label)
    axis.set_title(title, fontsize=10)
    axis.set_xlabel(axis_names[0])
    axis.set_ylabel(axis_names[1])
    figure.tight_layout()
    _save(figure, path)


# Fonts that draw a placeholder box for every character: no better than what is missing.
PLACEHOLDER_FONTS = ("Last Resort",)


@functools.lru_cache(maxsize=None)
def _characters_of(font_path):
    try:
        return frozenset(ft2font.FT2Font(font_path).get_charmap())
    except (OSError, RuntimeError, ValueError):  # a font file FreeType cannot read
        return frozenset()


def font_for(labels, size):
    """(a font that draws the labels, the labels) for matplotlib text: its default font (DejaVu Sans) if it has
    every character, else the installed font that has the most of them (for Chinese, a CJK font such as Noto Sans
    CJK, if there is one); characters no font here has become "?", named in a printed note, instead of the empty
    boxes and a warning per character that matplotlib would give."""
    needed = {ord(char) for label in labels for char in label if not char.isspace()}
    font_path = font_manager.findfont(font_manager.FontProperties())
    if not needed <= _characters_of(font_path):
        candidates = [font.fname for font in font_manager.fontManager.ttflist
                      if not font.name.startswith(PLACEHOLDER_FONTS)]
        font_path = max([font_path, *candidates], key=lambda path: len(needed & _characters_of(path)))
    missing = needed - _characters_of(font_path)
    if missing:
        print(f"note: no installed font has {''.join(sorted(map(chr, missing)))[:40]}; drawn as '?' (a font with "
              "them, such as Noto Sans CJK for Chinese, draws them)")
        labels = ["".join("?" if ord(char) in missing else char for char in label) for label in labels]
    return font_manager.FontProperties(fname=font_path, size=size), labels
