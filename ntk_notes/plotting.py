"""The book's figure style and its recurring figures."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

PALETTE = "colorblind"


def use_style() -> None:
    """Seaborn's whitegrid theme, a colour-blind-safe palette and crisp inline figures."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "figure.figsize": (6.4, 4.0),
                         "axes.titlesize": "medium"})


def loglog_slope(x, y) -> float:
    """Least-squares slope of log y against log x (the exponent of a power law)."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def image_grid(images, titles=None, ncols: int = 8, cmap: str = "gray", scale: float = 1.3):
    """Show images (n, h, w, c) in a grid; one channel is drawn with ``cmap``."""
    images = np.asarray(images)
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows + 0.3 * (titles is not None)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, ax in enumerate(axes.ravel()[:n]):
        img = images[i]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap=cmap if img.shape[-1] == 1 else None,
                  vmin=0, vmax=1)
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
