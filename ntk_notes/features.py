"""The eigen-feature experiments of the book, one call each: the FC kernel predictor on each
draw of a task, every feature scored under FGSM and PGD, the two parts of f_∞, the single
features of claim 6 with Holm's correction, the top-k and early-stopping trade-off per draw,
and the tables and sentences of the chapters *Features from the neural tangent kernel* and
*The robustness trade-off*. Their figures are in ``ntk_notes.feature_figures``.

``cfg`` is a chapter's settings (``ntk_notes.chapter.begin``): ``dataset``, ``classes``,
``n_train``, ``n_test``, ``image_size``, ``seed``, ``seeds`` and ``data_dir``.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import pandas as pd

from ntk_notes import architectures, attacks, claims, data, plotting, predictors, spectral, stats

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
DETAIL_INDICES = (1, 2, 3, 4, 11, 16, 26, 51, 101)  # the features shown one by one, from 1


def describe(cfg) -> str:
    """The one-line setting the chapter *Features from the neural tangent kernel* glues as
    ``features_setting``."""
    return (
        f"{cfg.dataset}, digits {cfg.classes[0]} vs {cfg.classes[1]}, "
        f"{cfg.image_size}² images, {cfg.n_train} train / {cfg.n_test} test; "
        f"FC kernel; ε = {cfg.epsilon:g}"
    )


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


def scoring_text(scored: ScoredFeatures, predictor, x, pgd_steps: int) -> str:
    """Two lines: the largest difference between Σᵢ φᵢ and f_∞ = ``predictor`` at ``x`` (the
    features add up to the predictor), and the seconds taken to score every feature."""
    gap = abs(scored.fgsm.clean_outputs.sum(0) - predictor.predict(x)).max()
    return (
        f"Σᵢ φᵢ = f_∞ on the test set: largest difference {gap:.1e}\n"
        f"all {len(scored.table)} features scored: FGSM in {scored.seconds['FGSM']:.1f} s, "
        f"PGD-{pgd_steps} in {scored.seconds['PGD']:.1f} s"
    )


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


def detail_table(scored: ScoredFeatures, indices=DETAIL_INDICES) -> pd.DataFrame:
    """``interval_table`` of the features of ``indices`` (from 1; those beyond the scored ones
    dropped): usefulness, and robustness under FGSM and under PGD."""
    picked = [i for i in indices if i <= len(scored.table)]
    return interval_table(
        picked,
        {
            "usefulness": scored.pgd.clean_correct,
            "robustness (FGSM)": scored.fgsm.robust_correct,
            "robustness (PGD)": scored.pgd.robust_correct,
        },
    )


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


def two_parts_draws(cfg) -> dict:
    """``two_parts`` split at ``cfg.top_k`` (PGD of ``cfg.pgd_steps`` steps at ``cfg.epsilon``) on
    every draw (``draws``): {seed: TwoParts}."""
    return draws(cfg, lambda task, predictor: two_parts(task, predictor, cfg.top_k, cfg.epsilon, cfg.pgd_steps))


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


class SingleFeatures(NamedTuple):
    """Claim 6's single features, with the multiple testing corrected (``single_features``)."""

    top_family: range  # the top 50 features (0-based), tested for useful and robust
    deep_family: range  # the features beyond the top k, tested for useful and non-robust
    robust_useful: claims.SignificantFeatures  # Holm over the top family
    fragile_useful: claims.SignificantFeatures  # Holm over the deep family
    claim6: claims.ClaimResult  # the feature chosen on one half, checked on the other
    n_half: int  # test images in the checking half
    detectable: float  # the usefulness above the majority rate the half detects (80% power)

    def glued(self) -> dict:
        """{glue key: value} of the counts and the detectable difference (the report's)."""
        return {
            "features_robust_useful": len(self.robust_useful.indices),
            "features_useful_nonrobust": len(self.fragile_useful.indices),
            "features_detectable": self.detectable,
        }


def single_features(scores, majority: float, top_k: int, seed: int, n_test: int) -> SingleFeatures:
    """From every feature's ``scores`` under PGD (``spectral.FeatureScores``): the useful and
    robust features among the top 50 and the useful and non-robust ones beyond the top
    ``top_k`` (``claims.significant_features``, Holm), and ``claims.claim6`` over the latter
    (the halves of the ``n_test`` test images drawn with ``seed``)."""
    n = len(scores.usefulness)
    top_family, deep_family = range(min(50, n)), range(top_k, n)
    clean, attacked = scores.clean_correct, scores.robust_correct
    robust_useful = claims.significant_features(claims.useful_robust_p(clean, attacked, majority), top_family)
    fragile_useful = claims.significant_features(claims.useful_non_robust_p(clean, attacked, majority), deep_family)
    claim6 = claims.claim6(clean, attacked, majority, seed=seed, candidates=deep_family)
    n_half = n_test - n_test // 2
    detectable = stats.detectable_difference(n_half, majority)
    return SingleFeatures(top_family, deep_family, robust_useful, fragile_useful, claim6, n_half, detectable)


def single_features_text(single: SingleFeatures, top_k: int) -> str:
    """``single_features`` in words: the counts after Holm's correction (with up to eight
    features named), the feature identified on one half and its scores on the other, and
    the usefulness the checking half can detect."""

    def listed(found):
        return ", ".join(f"φ_{i + 1}" for i in found.indices[:8]) or "none"

    details = single.claim6.details
    identified = details["feature"]
    return (
        f"After Holm's correction, {len(single.robust_useful.indices)} of the top "
        f"{len(single.top_family)} features are useful and robust ({listed(single.robust_useful)}) "
        f"and {len(single.fragile_useful.indices)} of the {len(single.deep_family)} features beyond "
        f"the top {top_k} are useful and non-robust ({listed(single.fragile_useful)}). "
        + (
            "No feature beyond the top k was non-robust on the selection half."
            if identified is None
            else f"The feature chosen on one half of the test set is φ_{identified + 1}; on the "
            f"other half its usefulness is {details['clean']} and its PGD robustness "
            f"{details['attacked']} (95% intervals)."
        )
        + f" On a half of {single.n_half} images, the test detects (with 80% power) a usefulness "
        f"{single.detectable:.3f} above the majority rate."
    )


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
