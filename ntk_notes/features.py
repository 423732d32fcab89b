"""The eigen-feature experiments of the book, one call each: the FC kernel predictor on each
draw of a task, every feature scored under FGSM and PGD, the two parts of f_∞, the top-k and
early-stopping trade-off per draw, the tables of accuracies with intervals and the recurring
figures of the chapters *Features from the neural tangent kernel* and *The robustness
trade-off*.

``cfg`` is a chapter's settings (``ntk_notes.chapter.begin``): ``dataset``, ``classes``,
``n_train``, ``n_test``, ``image_size``, ``seed``, ``seeds`` and ``data_dir``.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ntk_notes import architectures, attacks, data, plotting, predictors, spectral, stats

# The authors' CIFAR-10 airplane vs automobile scores (usefulness, FGSM robustness at 8/255)
# of a few features, by index from 1, on their 100 test images.
AUTHORS_REPORTED = {
    1: (0.50, 0.50),
    2: (0.68, 0.49),
    3: (0.54, 0.47),
    4: (0.61, 0.44),
    11: (0.59, 0.25),
    26: (0.51, 0.07),
    1501: (0.47, 0.00),
    1988: (0.57, 0.00),
}


def majority_rate(labels) -> float:
    """The accuracy of always guessing the more frequent of two classes (labels 0 / 1)."""
    return max(np.mean(labels), 1 - np.mean(labels))


@lru_cache(maxsize=8)
def _fit(dataset, classes, n_train, n_test, seed, image_size, data_dir, n_out):
    task = data.make_task(
        dataset, classes=classes, n_train=n_train, n_test=n_test, seed=seed, image_size=image_size, data_dir=data_dir
    )
    _, _, kernel_fn = architectures.architecture("fc", depth=1, n_out=n_out)
    return task, predictors.KernelPredictor(kernel_fn, task.x_train, task.y_train)


def fc_predictor(cfg, seed: int | None = None, n_out: int = 1, **changes):
    """(task, predictor): the task of the settings ``cfg`` drawn with ``seed`` (default
    ``cfg.seed``) and the kernel predictor f_∞ of the FC NTK with one hidden ReLU layer on it
    (``n_out`` outputs). ``changes`` replace settings (dataset, classes, n_train, n_test,
    image_size, data_dir). Cached: a draw used twice (the main task is often the first draw)
    is fitted once."""
    s = dict(
        dataset=cfg.dataset,
        classes=cfg.classes,
        n_train=cfg.n_train,
        n_test=cfg.n_test,
        image_size=cfg.image_size,
        data_dir=getattr(cfg, "data_dir", None),
    )
    unknown = set(changes) - set(s)
    if unknown:
        raise ValueError(f"fc_predictor changes no setting named {sorted(unknown)}; allowed: {', '.join(s)}")
    s.update(changes)
    classes = None if s["classes"] is None else tuple(s["classes"])
    return _fit(
        s["dataset"],
        classes,
        s["n_train"],
        s["n_test"],
        cfg.seed if seed is None else seed,
        s["image_size"],
        s["data_dir"],
        n_out,
    )


def draws(cfg, rule) -> dict:
    """``rule(task, predictor)`` on every draw of the training and test sets (``fc_predictor``
    with each seed of ``cfg.seeds``): {seed: what the rule returns}."""
    return {seed: rule(*fc_predictor(cfg, seed)) for seed in cfg.seeds}


class ScoredFeatures(NamedTuple):
    table: pd.DataFrame  # index i = 1..F: eigenvalue, usefulness, robustness (FGSM), robustness (PGD)
    fgsm: spectral.FeatureScores
    pgd: spectral.FeatureScores
    seconds: dict  # {"FGSM": seconds, "PGD": seconds} to score every feature


def score_every_feature(predictor, weights, x, labels, epsilon: float, pgd_steps: int) -> ScoredFeatures:
    """The first F features, ``weights`` (N, F, C) (``spectral.feature_weights``), scored at
    (x, labels): usefulness, and robustness under FGSM and under PGD with ``pgd_steps`` steps,
    each aimed at the feature itself."""
    scores, seconds = {}, {}
    for method, steps in [("fgsm", 10), ("pgd", pgd_steps)]:
        start = time.perf_counter()
        scores[method] = spectral.feature_scores(predictor, weights, x, labels, epsilon, method, steps=steps)
        seconds[method.upper()] = time.perf_counter() - start
    fgsm, pgd = scores["fgsm"], scores["pgd"]
    values = predictor.eigen[0][: len(fgsm.usefulness)]
    table = pd.DataFrame(
        {
            "index": np.arange(1, len(values) + 1),
            "eigenvalue": values,
            "usefulness": fgsm.usefulness,
            "robustness (FGSM)": fgsm.robustness,
            "robustness (PGD)": pgd.robustness,
        }
    ).set_index("index")
    return ScoredFeatures(table, fgsm, pgd, seconds)


def band_summary(table) -> str:
    """One sentence: the mean usefulness and PGD robustness of the features of ``table`` in
    bands of the index (``plotting.index_bands``)."""
    bands = plotting.index_bands(len(table))
    by_band = table.groupby(pd.cut(table.index, bands, right=False), observed=True)[
        ["usefulness", "robustness (PGD)"]
    ].mean()
    return (
        "Mean usefulness and PGD robustness of the features in bands of the index, in this "
        "build: "
        + "; ".join(
            f"i in [{b.left}, {b.right}): {row.usefulness:.2f} / {row['robustness (PGD)']:.2f}"
            for b, row in by_band.iterrows()
        )
        + "."
    )


def interval_table(indices, columns: dict) -> pd.DataFrame:
    """Accuracies with 95% Wilson intervals, as text: one row per feature index (from 1) of
    ``indices``, one column per name of ``columns`` (name -> (F, n) bool outcomes)."""
    return pd.DataFrame(
        {name: [str(stats.accuracy(correct[i - 1])) for i in indices] for name, correct in columns.items()},
        index=pd.Index(indices, name="index"),
    )


def accuracy_rows(named_outcomes, **columns) -> pd.DataFrame:
    """One row per (name, outcomes (n,) bool): ``columns``, the name, the accuracy and its
    95% interval (``stats.accuracy``: value, low, high)."""
    return pd.DataFrame([{**columns, "name": name, **stats.accuracy(o)._asdict()} for name, o in named_outcomes])


class TwoParts(NamedTuple):
    """Per-example outcomes (n,) bool of the two parts of f_∞ split at k, in the order of
    ``claims.claim3_features``'s arguments."""

    top_clean: np.ndarray  # the top part φ_1..k, clean
    top_pgd: np.ndarray  # ... under PGD aimed at it
    deep_clean: np.ndarray  # the deep part f_∞ − φ_1..k
    deep_pgd: np.ndarray
    full_clean: np.ndarray  # f_∞, clean
    majority: float  # the majority-class rate of the test set


def two_parts(task, predictor, top_k: int, epsilon: float, steps: int) -> TwoParts:
    """The two parts of f_∞ split at ``top_k`` (``spectral.split_at``) scored on ``task``'s
    test set, clean and under PGD (``steps`` steps) aimed at each part, and f_∞ clean."""
    labels = task.labels_test
    two = spectral.feature_scores(
        predictor, spectral.split_at(predictor, top_k), task.x_test, labels, epsilon, "pgd", steps=steps
    )
    full_clean = np.asarray(attacks.is_correct(two.clean_outputs.sum(0), labels))
    return TwoParts(
        two.clean_correct[0],
        two.robust_correct[0],
        two.clean_correct[1],
        two.robust_correct[1],
        full_clean,
        majority_rate(labels),
    )


def parts_table(parts: dict, top_k: int) -> pd.DataFrame:
    """Accuracies with intervals of ``two_parts`` per draw ({seed: TwoParts}): one row per
    (seed, predictor, condition)."""
    rows = [
        {"seed": seed, "predictor": name, "condition": condition, **stats.accuracy(outcome)._asdict()}
        for seed, p in parts.items()
        for name, clean, attacked in [
            (f"top φ_1..{top_k}", p.top_clean, p.top_pgd),
            ("deep part", p.deep_clean, p.deep_pgd),
            ("f_∞", p.full_clean, None),
        ]
        for condition, outcome in [("clean", clean), ("PGD", attacked)]
        if outcome is not None
    ]
    return pd.DataFrame(rows)


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


def ten_classes(cfg) -> pd.DataFrame:
    """Usefulness and FGSM robustness of every feature of the FC kernel on all ten classes
    (one-hot targets, sizes ``cfg.multiclass``), indexed by i from 1."""
    task, predictor = fc_predictor(
        cfg, n_out=10, classes=None, n_train=cfg.multiclass["n_train"], n_test=cfg.multiclass["n_test"]
    )
    scores = spectral.feature_scores(
        predictor, spectral.feature_weights(predictor), task.x_test, task.labels_test, cfg.epsilon, "fgsm"
    )
    return pd.DataFrame(
        {"usefulness": scores.usefulness, "robustness (FGSM)": scores.robustness},
        index=pd.RangeIndex(1, len(scores.usefulness) + 1, name="index"),
    )


def authors_comparison(cfg, table, n_test: int) -> pd.DataFrame:
    """The authors' CIFAR-10 scores (``AUTHORS_REPORTED``) beside ours: under
    ``cfg.authors_setting`` (the paper profile) their setting rerun (FGSM at 8/255), and this
    build's ``table`` (``score_every_feature``, ``n_test`` test images) at ε = ``cfg.epsilon``."""

    def both(u, r, n):
        return f"{stats.accuracy_text(u, n, 2)} / {stats.accuracy_text(r, n, 2)}"

    reported = AUTHORS_REPORTED
    comparison = pd.DataFrame(
        {"authors, CIFAR-10 (useful / robust)": [both(u, r, 100) for u, r in reported.values()]},
        index=pd.Index(list(reported), name="index"),
    )
    setting = cfg.authors_setting
    if setting:
        task, predictor = fc_predictor(
            cfg,
            dataset=setting["dataset"],
            classes=setting["classes"],
            n_train=setting["n_train"],
            n_test=setting["n_test"],
            image_size=None,
            data_dir=None,
        )
        indices = [i for i in reported if i <= len(task.x_train)]
        ours = spectral.feature_scores(
            predictor,
            spectral.feature_weights(predictor, [i - 1 for i in indices]),
            task.x_test,
            task.labels_test,
            8 / 255,
            "fgsm",
        )
        scored = {i: both(u, r, len(task.labels_test)) for i, u, r in zip(indices, ours.usefulness, ours.robustness)}
        comparison[f"ours, {task.dataset} (useful / robust)"] = [scored.get(i, "beyond N") for i in reported]
    else:
        comparison["ours, CIFAR-10"] = f"not run under {cfg.profile} (paper profile)"
    name = f"ours, {cfg.dataset} {cfg.classes[0]} vs {cfg.classes[1]}, ε = {cfg.epsilon:g} (useful / robust)"
    comparison[name] = [
        both(table.usefulness[i], table["robustness (FGSM)"][i], n_test) if i <= len(table) else "beyond N"
        for i in reported
    ]
    return comparison


def tradeoff_grid(values, n_ks: int, n_times: int) -> tuple[np.ndarray, np.ndarray]:
    """(ks, taus) for ``spectral.tradeoff_outcomes`` given all N eigenvalues ``values``: about
    ``n_ks`` values of k log-spaced in 1..N − 1 (k = N is f_∞), and ``n_times`` times τ
    log-spaced from 0.3 to 10 λ₁ / λ_N (λ_N at least 1e-7 λ₁), when every feature is fitted."""
    n = len(values)
    ks = np.unique(np.geomspace(1, n, n_ks).round().astype(int))
    taus = np.geomspace(0.3, 10 * values[0] / max(values[-1], values[0] * 1e-7), n_times)
    return ks[ks < n], taus


class TradeoffDraw(NamedTuple):
    task: data.Task
    predictor: predictors.KernelPredictor
    outcomes: spectral.TradeoffOutcomes  # top-k predictors, f_t and f_∞, clean and attacked
    every: spectral.FeatureScores  # every feature, usefulness and FGSM robustness
    majority: float  # the majority-class rate of the test set


def tradeoff_draw(task, predictor, epsilon: float, ks, taus, steps: int) -> TradeoffDraw:
    """The trade-off on one draw: ``spectral.tradeoff_outcomes`` at ``ks`` and ``taus`` (PGD
    with ``steps`` steps) and every feature scored under FGSM, on ``task``'s test set."""
    x, labels = task.x_test, task.labels_test
    outcomes = spectral.tradeoff_outcomes(predictor, x, labels, epsilon, ks, taus, steps=steps)
    every = spectral.feature_scores(predictor, spectral.feature_weights(predictor), x, labels, epsilon, "fgsm")
    return TradeoffDraw(task, predictor, outcomes, every, majority_rate(labels))


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
