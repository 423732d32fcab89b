"""The figures of the training-dynamics chapter: how the empirical NTK turns, grows and
concentrates through training (``ntk_notes.dynamics_experiment`` computes what they show)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from ntk_notes import kernel_metrics

TURN, GROWTH = "cosine distance to K_0", "‖K_t‖ / ‖K_0‖"  # columns of ``kernel_curves``


def turning_and_growing(curves, probes, hue: str = "mode"):
    """A 2 x len(probes) grid, one column per probe: the cosine distance to K_0 (top) and
    the norm ratio ‖K_t‖ / ‖K_0‖ (bottom, log scale) against the epoch, one line per
    ``hue`` value (the mean over seeds, its band the range). ``curves``: the long table of
    ``dynamics_experiment.kernel_curves``. Returns the figure."""
    fig, axes = plt.subplots(2, len(probes), figsize=(14, 6.4), sharex=True, squeeze=False)
    for col, name in enumerate(probes):
        for row, metric in enumerate([TURN, GROWTH]):
            sns.lineplot(
                curves[curves.probe == name],
                x="epoch",
                y=metric,
                hue=hue,
                errorbar=("pi", 100),
                ax=axes[row, col],
                legend=row + col == 0,
            )
            axes[row, col].set(title=f"{name} probe" if row == 0 else "")
        axes[1, col].set(yscale="log")
    fig.tight_layout()
    return fig


def distance_heatmaps(kernels_by_name: dict):
    """One heat map per entry of ``kernels_by_name`` ({title: (T, m, m) kernels}): S(K_i, K_j)
    between every pair of recorded epochs (``kernel_metrics.distance_matrix``). A kernel
    that settles early shows a large dark block in the lower right. The panels share one
    colour scale, from 0 to the largest distance of any panel, so they can be compared.
    Returns the figure."""
    matrices = {name: kernel_metrics.distance_matrix(kernels) for name, kernels in kernels_by_name.items()}
    top = max(float(np.max(m)) for m in matrices.values())
    fig, axes = plt.subplots(1, len(matrices), figsize=(14, 4.2), squeeze=False)
    for i, (ax, (name, matrix)) in enumerate(zip(axes[0], matrices.items())):
        ticks = max(1, len(matrix) // 6)
        sns.heatmap(
            matrix,
            ax=ax,
            cmap="magma",
            vmin=0,
            vmax=top,
            cbar=i == len(matrices) - 1,  # one colour bar for the shared scale
            square=True,
            xticklabels=ticks,
            yticklabels=ticks,
        )
        ax.set(title=name, xlabel="epoch index", ylabel="epoch index")
    fig.tight_layout()
    return fig


def concentration(curves, column: str, hue: str = "mode"):
    """``column`` of ``curves`` (the centred mass outside the top-k eigenspace) against the
    epoch, one panel per probe, one line per ``hue`` value (mean over seeds, band the range).
    Returns the seaborn ``FacetGrid``."""
    return sns.relplot(
        curves, x="epoch", y=column, hue=hue, col="probe", kind="line", errorbar=("pi", 100), height=3.2, aspect=1.3
    )
