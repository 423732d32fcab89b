"""Comparing the eigen-features of several kernels on the same images (claim 4: the
features are consistent across architectures).

Each kernel's features come from ``spectral.kernel_features``; two null kernels that are not
neural tangent kernels (linear and RBF) join every comparison, so that agreement between
NTKs can be weighed against agreement any two kernels on the same images would show.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.stats
import seaborn as sns

from ntk_notes import architectures, attacks, claims, data, null_kernels, spectral, stats

# The authors' architectures: name -> (``architectures.architecture`` name, depth).
ARCHITECTURES = {
    "FC-1": ("fc", 1),
    "FC-2": ("fc", 2),
    "FC-3": ("fc", 3),
    "Conv": ("conv", 1),
    "Myrtle-5": ("myrtle", 5),
}
NULLS = ("linear", "RBF")  # the null kernels, in the order they join a comparison
MEASURE_KEYS = ("rank_correlation", "eigenspace_overlap", "output_correlation")


def describe(cfg: SimpleNamespace) -> str:
    """The one-line description of the chapter's setting (data, kernels, sizes)."""
    scored, myrtle = cfg.scored, cfg.myrtle
    return (
        f"{cfg.dataset}, digits {cfg.classes[0]} vs {cfg.classes[1]}; FC-1/2/3, Conv and null "
        f"kernels on {scored['image_size']}² images, {scored['n_train']} train / "
        f"{scored['n_test']} test; Myrtle-5 on {myrtle['image_size']}² images, "
        f"{myrtle['n_train']} / {myrtle['n_test']}"
        f"{'' if myrtle['robustness'] else ' (eigenspaces only)'}"
    )


def kernels_for(task, names: Sequence[str], specs: Mapping = ARCHITECTURES) -> dict:
    """The kernel functions of the named NTKs (names of ``specs``: name -> (architecture name, depth)) and of the two
    null kernels (linear; RBF at the median distance between ``task``'s training images)."""
    chosen = {name: architectures.architecture(*specs[name])[2] for name in names}
    chosen["linear"] = null_kernels.null_kernel("linear")
    chosen["RBF"] = null_kernels.null_kernel("rbf", null_kernels.median_bandwidth(task.x_train))
    return chosen


def comparison(
    cfg: SimpleNamespace,
    sizes: Mapping,
    names: Sequence[str],
    robustness: bool,
    seed: int,
    specs: Mapping = ARCHITECTURES,
) -> tuple:
    """One comparison: the task drawn under ``seed`` (``cfg.dataset``, ``cfg.classes``,
    ``cfg.data_dir``; ``sizes``: image_size, n_train, n_test) and the eigen-features of the
    named NTKs and the null kernels on it, scored for FGSM robustness at ``cfg.epsilon`` if
    ``robustness``. The linear kernel, of rank at most the number of pixels d, gets a ridge
    of 10⁻⁶ times its mean diagonal when N ≥ d. Returns (task, {kernel: KernelFeatures})."""
    task = data.make_task(
        cfg.dataset,
        classes=cfg.classes,
        n_train=sizes["n_train"],
        n_test=sizes["n_test"],
        seed=seed,
        image_size=sizes["image_size"],
        data_dir=cfg.data_dir,
    )
    ridge = {"linear": 1e-6} if len(task.x_train) >= task.x_train[0].size else {}
    runs = spectral.kernel_features(
        kernels_for(task, names, specs), task, cfg.epsilon if robustness else None, ridge=ridge
    )
    return task, runs


def with_myrtle(cfg: SimpleNamespace, scored: tuple, specs: Mapping = ARCHITECTURES) -> tuple:
    """The comparison in which every architecture (Myrtle-5 included) joins, on the sizes
    ``cfg.myrtle`` and the first seed: the scored comparison ``scored`` (task, runs) itself
    when Myrtle-5 was scored on the same sizes, else a new one. Returns (task, runs)."""
    if cfg.myrtle["robustness"] and cfg.myrtle == {**cfg.scored, "robustness": True}:
        return scored
    return comparison(cfg, cfg.myrtle, list(specs), cfg.myrtle["robustness"], cfg.seeds[0], specs)


def kernel_table(comparisons: Mapping[str, tuple]) -> pd.DataFrame:
    """One row per (comparison, kernel) of ``comparisons`` (title -> (task, runs)): image
    size, train / test sizes, seconds, and test accuracy of f_∞ with its 95% interval."""
    return pd.DataFrame(
        [
            {
                "comparison": title,
                "kernel": name,
                "images": f"{task.x_train.shape[1]}²",
                "train / test": f"{len(task.x_train)} / {len(task.x_test)}",
                "seconds": round(run.seconds, 1),
                "test accuracy f_∞": str(
                    stats.accuracy(attacks.is_correct(run.scores.clean_outputs.sum(0), task.labels_test))
                ),
            }
            for title, (task, runs) in comparisons.items()
            for name, run in runs.items()
        ]
    ).set_index(["comparison", "kernel"])


def curves_figure(runs: Mapping, epsilon: float, window: int):
    """Usefulness and robustness of every kernel's features against the eigen-index (log
    axis), as running means over ``window`` features; null kernels dashed. Returns the
    figure (two panels sharing the accuracy axis)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for name, run in runs.items():
        index = np.arange(1, len(run.scores.usefulness) + 1)
        style = "--" if name in NULLS else "-"
        for ax, score in zip(axes, [run.scores.usefulness, run.scores.robustness]):
            ax.plot(index, pd.Series(score).rolling(window, center=True, min_periods=1).mean(), ls=style, label=name)
    axes[0].set(xscale="log", xlabel="eigen-index i", ylabel="test accuracy", title="usefulness")
    axes[1].set(xscale="log", xlabel="eigen-index i", title=f"robustness (FGSM, ε = {epsilon:g})")
    axes[1].legend(fontsize="small")
    fig.tight_layout()
    return fig


def rank_correlation(a, b) -> float:
    """Spearman correlation of two kernels' features' robustness, index by index."""
    return scipy.stats.spearmanr(a.scores.robustness, b.scores.robustness)[0]


def measures(k: int, with_robustness: bool = True) -> dict[str, Callable]:
    """The similarity measures, by title, as functions of two kernels' features
    (``spectral.KernelFeatures``) on the same images: the robustness rank correlation (if
    ``with_robustness``), the top-k eigenspace overlap, and the correlation of the top k
    features' outputs on the test images (mean over the k features)."""
    chosen = {}
    if with_robustness:
        chosen["robustness rank correlation"] = rank_correlation
    chosen[f"top-{k} eigenspace overlap"] = lambda a, b: spectral.eigenspace_overlap(
        a.predictor.eigen[1], b.predictor.eigen[1], k
    )
    chosen[f"output correlation, top {k}"] = lambda a, b: float(
        np.nanmean(spectral.output_correlation(a.scores.clean_outputs[:k], b.scores.clean_outputs[:k]))
    )
    return chosen


def similarity(runs: Mapping, chosen: Mapping[str, Callable]) -> dict[str, pd.DataFrame]:
    """For each measure of ``chosen`` (title -> measure), the matrix of its value on every
    pair of kernels of ``runs``, rows and columns in the order of ``runs``."""
    names = list(runs)
    return {
        title: pd.DataFrame([[measure(runs[a], runs[b]) for b in names] for a in names], index=names, columns=names)
        for title, measure in chosen.items()
    }


def heatmaps(matrices: Mapping[str, pd.DataFrame]):
    """One annotated heatmap per similarity matrix, side by side on one colour scale
    [0, 1], titled by the measure. Returns the figure."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(max(12, 5 * len(matrices)), 4.8), squeeze=False)
    for ax, (title, matrix) in zip(axes[0], matrices.items()):
        sns.heatmap(matrix, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", cbar=False, ax=ax, square=True)
        ax.set_title(title)
    fig.tight_layout()
    return fig


def summary(matrices: Mapping[str, pd.DataFrame], ntk_names: Sequence[str], k: int, n_train: int) -> dict[str, float]:
    """The numbers the chapter glues, by glue key: for each measure (in the order rank
    correlation, eigenspace overlap, output correlation), the mean similarity between
    different NTKs (``consistency_<measure>``) and the largest mean similarity of the NTKs
    to one null kernel (``..._null``), rounded to 2 digits; then k and the chance overlap
    k / N of unrelated eigenspaces."""
    names = list(ntk_names)
    off_diagonal = ~np.eye(len(names), dtype=bool)
    found = {}
    for key, matrix in zip(MEASURE_KEYS, matrices.values()):
        within = matrix.loc[names, names].to_numpy()[off_diagonal].mean()
        found[f"consistency_{key}"] = round(float(within), 2)
        found[f"consistency_{key}_null"] = round(float(max(matrix.loc[names, z].mean() for z in NULLS)), 2)
    found["consistency_top_k"] = k
    found["consistency_chance_overlap"] = round(k / n_train, 2)
    return found


def rule(
    runs: Mapping, ntk_names: Sequence[str], top_k: int, seed: int, with_robustness: bool = True
) -> claims.ClaimResult:
    """``claims.claim4`` on one comparison: the training kernels of the named NTKs against
    the null kernels, at k = min(top_k, N − 1), with every kernel's features' robustness
    if ``with_robustness``."""
    ntks = {n: runs[n].predictor.k_train_train for n in ntk_names}
    nulls = {n: runs[n].predictor.k_train_train for n in NULLS}
    robust = {n: runs[n].scores.robustness for n in runs} if with_robustness else None
    return claims.claim4(ntks, nulls, min(top_k, len(next(iter(ntks.values()))) - 1), robustness=robust, seed=seed)


def prefixed(result: claims.ClaimResult, prefix: str) -> claims.ClaimResult:
    """``result`` with ``prefix`` put before the name of each of its parts."""
    return result._replace(parts=tuple(p._replace(name=prefix + p.name) for p in result.parts))


def resolution_text(result: claims.ClaimResult) -> str:
    """A sentence on the half-widths of the parts' intervals: what this size can resolve."""
    widths = [(p.high - p.low) / 2 for p in result.parts]
    return (
        "What this size can resolve: the parts' intervals are "
        + ", ".join(f"±{w:.3f}" for w in widths)
        + " wide around their estimates; an excess smaller than that cannot be told from 0."
    )
