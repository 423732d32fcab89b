"""Claims 3, 5 and 6: the eigen-features, robust and non-robust, and what truncation and early
stopping trade."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ntk_notes import stats
from ntk_notes.claims.parts import ALPHA, NON_ROBUST, ClaimResult, Part, all_of, assemble, check_rate, interval_part


def _check_matrix(name: str, value, n: int | None = None) -> np.ndarray:
    value = np.asarray(value)
    if value.ndim != 2 or (n is not None and value.shape[1] != n):
        want = "(F, n)" if n is None else f"(F, {n})"
        raise ValueError(
            f"{name} must have shape {want}: one row per candidate, one column per test example; got {value.shape}"
        )
    return value.astype(bool)


def _feature_outcomes(clean, attacked) -> tuple[np.ndarray, np.ndarray]:
    clean = _check_matrix("clean", clean)
    return clean, _check_matrix("attacked", attacked, clean.shape[1])


def useful_robust_p(clean, attacked, majority: float) -> np.ndarray:
    """Per feature, the p-value of "useful and robust": clean accuracy and accuracy under
    attack both above the majority rate (the larger of the two one-sided p-values)."""
    return np.maximum(stats.p_above(clean, majority), stats.p_above(attacked, majority))


def useful_non_robust_p(clean, attacked, majority: float, non_robust: float = NON_ROBUST) -> np.ndarray:
    """Per feature, the p-value of "useful but non-robust": clean accuracy above the majority
    rate and accuracy under attack below ``non_robust``."""
    return np.maximum(stats.p_above(clean, majority), stats.p_below(attacked, non_robust))


class SignificantFeatures(NamedTuple):
    """Single features that pass a test after Holm's correction over the features tested."""

    indices: np.ndarray  # rows that passed, most significant first
    adjusted_p: np.ndarray  # Holm-adjusted p-value of every feature tested
    tested: np.ndarray  # the rows tested


def significant_features(p_values, candidates=None) -> SignificantFeatures:
    """The candidates whose Holm-adjusted p-value (over the candidates only) is below α."""
    p_values = np.asarray(p_values, np.float64)
    tested = np.arange(len(p_values)) if candidates is None else np.asarray(candidates)
    adjusted = stats.holm(p_values[tested])
    order = np.argsort(adjusted, kind="stable")
    return SignificantFeatures(tested[order][adjusted[order] < ALPHA], adjusted, tested)


def claim3_features(
    top_clean, top_attacked, deep_clean, deep_attacked, full_clean, majority: float, non_robust: float = NON_ROBUST
) -> ClaimResult:
    """The eigen-features split into a robust part and a useful-but-non-robust part, and
    kernel regression relies on both.

    Features in the paper's sense include sums over sets of eigen-features; the rule tests
    the two sets the claim is about, which have the power single features lack: the top
    part φ_1..k and the deep part f_∞ − φ_1..k. All arguments are per-example outcomes (n,):
    ``top_*`` and ``deep_*`` clean and under the attack aimed at that part, ``full_clean``
    f_∞'s clean outcomes. Single features are tested by ``significant_features``.

    For example, on 200 test images, a top part right on 150 clean and 140 attacked, a deep
    part right on 160 clean and none attacked, f_∞ right on 190:

    >>> import numpy as np
    >>> from ntk_notes import claims
    >>> first = np.arange(200)
    >>> none = np.zeros(200, bool)
    >>> claims.claim3_features(first < 150, first < 140, first >= 40, none, first < 190,
    ...                        majority=0.5).verdict
    'reproduced'
    """
    majority = check_rate("majority", majority)
    top = all_of(
        "the top part φ_1..k is useful and robust (clean and attacked accuracy above the majority rate)",
        [
            interval_part("clean", stats.accuracy(top_clean), majority),
            interval_part("attacked", stats.accuracy(top_attacked), majority),
        ],
    )
    deep = all_of(
        f"the deep part f_∞ − φ_1..k is useful and non-robust (clean accuracy above the majority "
        f"rate, attacked below {non_robust:g})",
        [
            interval_part("clean", stats.accuracy(deep_clean), majority),
            interval_part("attacked", stats.accuracy(deep_attacked), non_robust, above=False),
        ],
    )
    both = all_of(
        "kernel regression relies on both: f_∞ is more accurate than either part alone (clean "
        "accuracy difference above 0)",
        [
            interval_part("minus the top part", stats.paired_difference(full_clean, top_clean), 0.0),
            interval_part("minus the deep part", stats.paired_difference(full_clean, deep_clean), 0.0),
        ],
    )
    return assemble("3 (features)", [top, deep, both])


def claim6(
    clean, attacked, majority: float, non_robust: float = NON_ROBUST, seed: int = 0, candidates=None
) -> ClaimResult:
    """Useful non-robust features can be identified: the feature chosen on one half of the
    test set as the most useful among the non-robust ones is, on the other half, still useful
    and non-robust. ``candidates`` (indices) limits the search, e.g. to features beyond the
    top ones. ``details["feature"]`` is the feature identified (an index into the rows).

    For example, on 100 test images: a robust feature, a useful non-robust one and a useless
    one (rows; columns are the test images):

    >>> import numpy as np
    >>> from ntk_notes import claims
    >>> first = np.arange(100)
    >>> clean = np.stack([first < 80, first < 90, first < 50])
    >>> attacked = np.stack([first < 80, np.zeros(100, bool), np.zeros(100, bool)])
    >>> result = claims.claim6(clean, attacked, majority=0.5)
    >>> result.verdict, result.details["feature"]
    ('reproduced', 1)
    """
    clean, attacked = _feature_outcomes(clean, attacked)
    majority = check_rate("majority", majority)
    candidates = np.arange(len(clean)) if candidates is None else np.asarray(candidates)
    first = stats.halves(clean.shape[1], seed)
    eligible = candidates[attacked[candidates][:, first].mean(1) < non_robust]
    if len(eligible) == 0:
        part = Part("a non-robust feature exists on the selection half", 0.0, 0.0, 0.0, 1.0, "failed")
        return assemble("6", [part], {"feature": None, "clean": None, "attacked": None})
    chosen = int(eligible[np.argmax(clean[eligible][:, first].mean(1))])
    held_out = {"clean": stats.accuracy(clean[chosen, ~first]), "attacked": stats.accuracy(attacked[chosen, ~first])}
    parts = [
        all_of(
            f"the feature chosen on one half of the test set is, on the other half, useful and "
            f"non-robust (clean accuracy above the majority rate, attacked below {non_robust:g})",
            [
                interval_part("clean", held_out["clean"], majority),
                interval_part("attacked", held_out["attacked"], non_robust, above=False),
            ],
        )
    ]
    return assemble("6", parts, {"feature": chosen, **held_out})


# Claims 3 (trade-off) and 5: truncation and early stopping ------------------------------


def _cross_fitted_best(clean, attacked, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-example clean and attacked outcomes of the candidate most robust on the other half."""
    clean, attacked = _feature_outcomes(clean, attacked)
    chosen, picks = stats.cross_fit(attacked, seed)
    rows = np.arange(clean.shape[1])
    return clean[chosen, rows], attacked[chosen, rows], picks


def claim3_tradeoff(clean, attacked, full_clean, full_attacked, majority: float, seed: int = 0) -> ClaimResult:
    """Keeping fewer eigen-features trades accuracy for robustness. ``clean``, ``attacked``
    (K, n): outcomes of the top-k predictors (k < N); ``full_*`` (n,): f_∞'s. The most
    robust k is chosen on one half of the test set and scored on the other (cross-fitted)."""
    best_clean, best_attacked, picks = _cross_fitted_best(clean, attacked, seed)
    majority = check_rate("majority", majority)
    robust = all_of(
        "the most robust top-k predictor (cross-fitted) is robust and more robust than f_∞ (attacked "
        "accuracy above the majority rate, and above f_∞'s)",
        [
            interval_part("against the majority rate", stats.accuracy(best_attacked), majority),
            interval_part("minus f_∞'s", stats.paired_difference(best_attacked, full_attacked), 0.0),
        ],
    )
    parts = [
        robust,
        interval_part(
            "it is less accurate than f_∞ on clean data (clean accuracy difference, f_∞ minus top-k, above 0)",
            stats.paired_difference(full_clean, best_clean),
            0.0,
        ),
    ]
    return assemble("3 (trade-off)", parts, {"picks": picks})


def claim5(
    clean_t,
    attacked_t,
    full_attacked,
    majority: float,
    eigenvalues,
    feature_clean,
    feature_attacked,
    seed: int = 0,
    permutations: int = 2000,
    min_features: int = 5,
) -> ClaimResult:
    """Robust features sit at the top of the spectrum, so they are learned first.

    Direct evidence: f_t at T training times (``clean_t``, ``attacked_t``, (T, n)) stopped at
    the most robust time (cross-fitted) is robust and more robust than f_∞
    (``full_attacked``, (n,)). Spectral evidence: among the features that are significantly
    useful (Benjamini–Hochberg at 5%), attacked accuracy rises with the eigenvalue (Spearman ρ, one-sided
    permutation p-value); with fewer than ``min_features`` useful features that part is
    inconclusive.
    """
    best_clean, best_attacked, picks = _cross_fitted_best(clean_t, attacked_t, seed)
    majority = check_rate("majority", majority)
    feature_clean, feature_attacked = _feature_outcomes(feature_clean, feature_attacked)
    eigenvalues = np.asarray(eigenvalues, np.float64)
    if eigenvalues.shape != (len(feature_clean),):
        raise ValueError(
            f"eigenvalues must have shape ({len(feature_clean)},), one per feature; got {eigenvalues.shape}"
        )
    useful = stats.benjamini_hochberg(stats.p_above(feature_clean, majority)) < ALPHA
    name = "among the useful features (Benjamini–Hochberg), attacked accuracy rises with the eigenvalue (Spearman ρ)"
    if useful.sum() < min_features:
        rank = Part(
            name,
            float("nan"),
            float("nan"),
            float("nan"),
            0.0,
            "inconclusive",
            weakest=f"only {int(useful.sum())} useful features",
        )
    else:
        rho, p = stats.spearman_permutation(eigenvalues[useful], feature_attacked[useful].mean(1), permutations, seed)
        # Fisher's z with Fieller's standard error for Spearman's ρ gives the interval.
        half = 1.96 * np.sqrt(1.06 / max(int(useful.sum()) - 3, 1))
        low, high = np.tanh(np.arctanh(np.clip(rho, -0.999999, 0.999999)) + np.array([-half, half]))
        outcome = "held" if p < ALPHA else "failed" if high < 0 else "inconclusive"
        rank = Part(name, rho, float(low), float(high), 0.0, outcome, p, weakest=f"{int(useful.sum())} useful features")
    early = all_of(
        "f_t stopped at its most robust time (cross-fitted) is robust and more robust than f_∞ "
        "(attacked accuracy above the majority rate, and above f_∞'s)",
        [
            interval_part("against the majority rate", stats.accuracy(best_attacked), majority),
            interval_part("minus f_∞'s", stats.paired_difference(best_attacked, full_attacked), 0.0),
        ],
    )
    parts = [early, rank]
    return assemble("5", parts, {"picks": picks, "useful_features": int(useful.sum())})
