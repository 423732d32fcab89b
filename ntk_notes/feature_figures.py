"""The figures of the eigen-feature chapters (*Features from the neural tangent kernel* and
*The robustness trade-off*), from what ``ntk_notes.features`` computes: per-feature curves
against the index, the two parts of f_∞, the features' loss gradients, the top-k and
early-stopping trade-off and robustness against the index. Each returns its figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ntk_notes import features, plotting, spectral, stats


def accuracy_rows(named_outcomes, **columns) -> pd.DataFrame:
    """One row per (name, outcomes (n,) bool): ``columns``, the name, the accuracy and its
    95% interval (``stats.accuracy``: value, low, high)."""
    return pd.DataFrame([{**columns, "name": name, **stats.accuracy(o)._asdict()} for name, o in named_outcomes])


def parts_figure(table, seed: int, majority: float, epsilon: float):
    """Bars with intervals of the two parts and f_∞ on the draw ``seed`` of ``parts_table``."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    plotting.interval_bars(
        table[table.seed == seed],
        x="predictor",
        hue="condition",
        ax=ax,
        reference=majority,
        reference_label="majority-class rate",
    )
    ax.set(title=f"the two parts of f_∞ (first draw, ε = {epsilon:g}, 95% intervals)")
    return fig


def curves_figure(table, reference: float, reference_label: str, ylabel: str, title: str, figsize=(9, 4.2)):
    """Per-feature scores (columns of ``table``, index from 1) against the index
    (``plotting.feature_curves``), with a reference line."""
    fig, ax = plt.subplots(figsize=figsize)
    plotting.feature_curves(table, ax=ax, reference=reference, reference_label=reference_label)
    ax.set(ylabel=ylabel, title=title)
    return fig


def every_feature_figure(table, majority: float, epsilon: float):
    """Usefulness and FGSM and PGD robustness of every feature (``features.score_every_feature``'s
    table) against the index, with the majority-class rate."""
    return curves_figure(
        table[["usefulness", "robustness (FGSM)", "robustness (PGD)"]],
        majority,
        "majority-class rate",
        "test accuracy of sign φᵢ",
        f"every eigen-feature of the FC NTK, ε = {epsilon:g}",
    )


def ten_classes_figure(cfg):
    """Usefulness and FGSM robustness of every feature on ten classes (``features.ten_classes``)
    against the index, with the chance rate 0.1."""
    return curves_figure(
        features.ten_classes(cfg), 0.1, "chance", "accuracy of argmax φᵢ", "ten classes", figsize=(9, 3.6)
    )


def gradient_figure(predictor, weights, table, x, labels, class_names, identified=None, n_images: int = 6):
    """The loss gradients (``spectral.feature_gradients``) of the top three features, one
    from the middle, feature ``identified`` (0-based; None: none) and the last, at the first
    ``n_images`` images, each row labelled with the feature's usefulness and PGD robustness."""
    n = len(table)
    shown = [1, 2, 3, n // 2, n] if identified is None else [1, 2, 3, n // 2, identified + 1, n]
    shown = list(dict.fromkeys(i for i in shown if 1 <= i <= n))
    grads = spectral.feature_gradients(predictor, weights[:, [i - 1 for i in shown]], x[:n_images], labels[:n_images])
    rows = [f"φ_{i}\nuseful {table.usefulness[i]:.2f}\nrobust {table['robustness (PGD)'][i]:.2f}" for i in shown]
    return plotting.gradient_grid(grads, rows, [f"digit {class_names[c]}" for c in labels[:n_images]])


def _curves(named_outcomes, xs) -> pd.DataFrame:
    return pd.concat(
        [
            accuracy_rows([(x, outcome[j])], condition=condition)
            for condition, outcome in named_outcomes
            for j, x in enumerate(xs)
        ]
    )


def topk_figure(outcomes, majority: float, epsilon: float):
    """Accuracy of the top-k predictors against k, clean and under FGSM and PGD, with
    intervals; black lines: f_∞ clean and under PGD."""
    o = outcomes
    curve = _curves([("clean", o.top_clean), ("FGSM", o.top_fgsm), ("PGD", o.top_pgd)], o.ks)
    fig, ax = plt.subplots(figsize=(8, 4))
    plotting.interval_lines(
        curve, x="name", hue="condition", ax=ax, reference=majority, reference_label="majority-class rate"
    )
    for condition, outcome in [("clean", o.full_clean), ("PGD", o.full_pgd)]:
        ax.axhline(outcome.mean(), color="black", lw=0.8, ls=":" if condition == "PGD" else "-")
    ax.set(
        xscale="log",
        xlabel="k: the predictor uses the top k eigen-features",
        ylabel="test accuracy",
        title=f"top-k predictors, ε = {epsilon:g} (black: f_∞ clean and under PGD)",
    )
    return fig


def time_figure(outcomes, majority: float):
    """Left: accuracy of f_t against τ, clean and under FGSM and PGD, with intervals. Right:
    f_t at k(τ) beside the top-k predictors at k, clean and under PGD."""
    o = outcomes
    over_time = _curves([("clean", o.ft_clean), ("FGSM", o.ft_fgsm), ("PGD", o.ft_pgd)], o.taus)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    plotting.interval_lines(
        over_time, x="name", hue="condition", ax=axes[0], reference=majority, reference_label="majority-class rate"
    )
    axes[0].set(xscale="log", xlabel="τ = λ₁ t / N", ylabel="test accuracy of f_t", title="f_t through training")
    for condition, top, ft, colour in [("clean", o.top_clean, o.ft_clean, "C0"), ("PGD", o.top_pgd, o.ft_pgd, "C2")]:
        axes[1].plot(o.ks, top.mean(1), color=colour, label=f"top-k, {condition}")
        axes[1].plot(
            np.maximum(o.fitted, 1),
            ft.mean(1),
            color=colour,
            ls="--",
            marker="o",
            ms=4,
            label=f"f_t at k(τ), {condition}",
        )
    axes[1].set(xscale="log", xlabel="k, or k(τ) for f_t", ylabel="test accuracy", title="early stopping vs truncation")
    axes[1].legend(fontsize="small")
    fig.tight_layout()
    return fig


def index_figure(robustness, useful):
    """FGSM robustness of every feature against its index (log axis), the features of
    ``useful`` (0-based indices: the significantly useful ones) highlighted."""
    robustness = np.asarray(robustness)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.scatter(np.arange(1, len(robustness) + 1), robustness, s=6, alpha=0.3, color="grey", label="every feature")
    ax.scatter(
        np.asarray(useful) + 1, robustness[useful], s=14, color="C3", label="significantly useful (Benjamini–Hochberg)"
    )
    ax.set(
        xscale="log",
        xlabel="eigen-index i",
        ylabel="FGSM robustness of φᵢ",
        title="robustness against the index (first draw)",
    )
    ax.legend(fontsize="small")
    return fig
