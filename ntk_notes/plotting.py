"""The book's figure style and its recurring figures."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.text import Text

PALETTE = "colorblind"
DPI = 110
# No text in a book figure is smaller: seaborn's "notebook" context draws "small" at 10 pt.
# The site's phone stylesheet (_static/narrow_screens.css) scales figures so that this
# size stays legible on a 390 px screen, which tests/test_site.py measures.
SMALLEST_TEXT_PT = 10.0


def use_style() -> None:
    """Seaborn's whitegrid theme, a colour-blind-safe palette and crisp inline figures."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    plt.rcParams.update(
        {"figure.dpi": DPI, "savefig.dpi": DPI, "figure.figsize": (6.4, 4.0), "axes.titlesize": "medium"}
    )


def too_small_text(fig, smallest: float = SMALLEST_TEXT_PT) -> list[str]:
    """The visible texts of ``fig`` set in fewer than ``smallest`` points, as "'text' (n pt)"."""
    texts = fig.findobj(lambda artist: isinstance(artist, Text) and artist.get_visible() and artist.get_text())
    # matplotlib's "small" is 0.833 x the base size: 9.996 pt where it means 10
    return [f"{t.get_text()!r} ({t.get_fontsize():.1f} pt)" for t in texts if t.get_fontsize() < smallest - 0.01]


def loglog_slope(x, y) -> float:
    """Least-squares slope of log y against log x (the exponent of a power law)."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def image_grid(images, titles=None, ncols: int = 8, cmap: str = "gray", scale: float = 1.3):
    """Show images (n, h, w, c) in a grid; one channel is drawn with ``cmap``."""
    images = np.asarray(images)
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(scale * ncols, scale * nrows + 0.3 * (titles is not None)), squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    for i, ax in enumerate(axes.ravel()[:n]):
        img = images[i]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap=cmap if img.shape[-1] == 1 else None, vmin=0, vmax=1)
        if titles is not None:
            ax.set_title(titles[i], fontsize="small")
    fig.tight_layout()
    return fig


def adversarial_grid(clean, adversarial, clean_titles=None, adversarial_titles=None, scale: float = 1.3):
    """Three rows per set of images: clean, adversarial, and the perturbation (adversarial −
    clean, on a diverging scale symmetric about 0, summed over colour channels)."""
    clean, adversarial = np.asarray(clean), np.asarray(adversarial)
    n = len(clean)
    delta = (adversarial - clean).sum(axis=-1)
    bound = max(float(np.abs(delta).max()), 1e-12)
    fig, axes = plt.subplots(3, n, figsize=(scale * n, 3 * scale + 0.9), squeeze=False)
    for i in range(n):
        for row, (img, titles) in enumerate([(clean[i], clean_titles), (adversarial[i], adversarial_titles)]):
            axes[row, i].imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            if titles is not None:
                axes[row, i].set_title(titles[i], fontsize="small")
        axes[2, i].imshow(delta[i], cmap="RdBu_r", vmin=-bound, vmax=bound)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for row, name in enumerate(["clean", "adversarial", "perturbation"]):
        axes[row, 0].set_ylabel(name)
    fig.tight_layout()
    return fig


def interval_bars(
    table,
    x: str,
    hue: str,
    ax=None,
    value: str = "value",
    low: str = "low",
    high: str = "high",
    reference: float | None = None,
    reference_label: str = "",
):
    """Grouped bars of accuracies ``value`` with their intervals [``low``, ``high``] as error bars: one
    group per distinct ``x``, one bar per ``hue``, in order of first appearance. A dashed
    line marks ``reference`` (e.g. the majority-class rate)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.6))
    groups, hues = list(dict.fromkeys(table[x])), list(dict.fromkeys(table[hue]))
    width = 0.8 / len(hues)
    colours = sns.color_palette(n_colors=len(hues))
    for j, (name, colour) in enumerate(zip(hues, colours)):
        rows = table[table[hue] == name].set_index(x).reindex(groups)
        centres = np.arange(len(groups)) - 0.4 + width * (j + 0.5)
        errors = np.vstack([rows[value] - rows[low], rows[high] - rows[value]])
        ax.bar(centres, rows[value], width, yerr=errors, capsize=3, color=colour, label=name)
    if reference is not None:
        ax.axhline(reference, color="grey", ls="--", lw=1, label=reference_label or None)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set(ylim=(0, 1.05), ylabel="accuracy")
    ax.legend(fontsize="small", loc="upper right")
    return ax


def index_bands(n: int) -> list[int]:
    """Edges of bands of the eigen-index 1..n, finer at the top: [1, 2, 11, 51, 201, …, n + 1]."""
    return sorted({e for e in (1, 2, 11, 51, 201, 1001) if e <= n} | {n + 1})


def feature_curves(
    table, ax=None, window: int | None = None, reference: float | None = None, reference_label: str = ""
):
    """Per-feature scores (one column each, indexed by the eigen-index from 1) as a faint
    scatter with a running mean over ``window`` features, on a log index axis. Each column
    gets its own line style too, so curves that coincide stay visible."""
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4.2))
    window = window or max(5, len(table) // 40)
    smooth = table.rolling(window, center=True, min_periods=1).mean()
    for column, colour, style in zip(table.columns, sns.color_palette(), ["-", "--", ":", "-."]):
        ax.scatter(table.index, table[column], s=6, alpha=0.25, color=colour)
        ax.plot(
            smooth.index, smooth[column], color=colour, ls=style, lw=2, label=f"{column} (running mean of {window})"
        )
    if reference is not None:
        ax.axhline(reference, color="grey", ls="--", lw=1, label=reference_label or None)
    ax.set(xscale="log", xlabel="eigen-index i (1 = largest eigenvalue)")
    ax.legend(fontsize="small", loc="lower left")
    return ax


def gradient_grid(gradients, row_labels, column_titles, scale: float = 1.35):
    """Input gradients (F, n, h, w, c) as a grid, one row per feature, each image min–max
    scaled to [0, 1] on its own (so mid-grey is not zero); colour channels are averaged."""
    gradients = np.asarray(gradients, np.float64).mean(axis=-1)
    lo = gradients.min(axis=(2, 3), keepdims=True)
    hi = gradients.max(axis=(2, 3), keepdims=True)
    scaled = (gradients - lo) / np.maximum(hi - lo, 1e-12)
    n_rows, n_cols = scaled.shape[:2]
    fig, axes = plt.subplots(n_rows, n_cols + 1, figsize=(scale * (n_cols + 1), 1.45 * n_rows), squeeze=False)
    for col, title in enumerate(column_titles):
        axes[0, col + 1].set_title(title, fontsize="small")
    for row, label in enumerate(row_labels):
        axes[row, 0].text(0.5, 0.5, label, ha="center", va="center", fontsize="small")
        for col in range(n_cols):
            axes[row, col + 1].imshow(scaled[row, col], cmap="gray", vmin=0, vmax=1)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    return fig


def interval_lines(
    table,
    x: str,
    hue: str,
    ax=None,
    value: str = "value",
    low: str = "low",
    high: str = "high",
    reference: float | None = None,
    reference_label: str = "",
):
    """One line of accuracies ``value`` against ``x`` per ``hue``, with its interval [``low``, ``high``]
    as a shaded band; a dashed line marks ``reference``. Line styles differ per hue, so
    lines that coincide stay visible."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4))
    for name, colour, style in zip(dict.fromkeys(table[hue]), sns.color_palette(), ["-", "--", ":", "-."]):
        rows = table[table[hue] == name].sort_values(x)
        ax.plot(rows[x], rows[value], color=colour, ls=style, marker="o", ms=3, label=name)
        ax.fill_between(rows[x].to_numpy(float), rows[low], rows[high], color=colour, alpha=0.15, lw=0)
    if reference is not None:
        ax.axhline(reference, color="grey", ls="--", lw=1, label=reference_label or None)
    ax.set(ylim=(-0.02, 1.02), ylabel="accuracy")
    ax.legend(fontsize="small")
    return ax
