"""Intervals and tests for accuracies measured on a finite test set.

Every accuracy in the book is a proportion of n test examples, so its uncertainty is
binomial. The claim rules (``ntk_notes.claims``) build on these: Wilson intervals for one
accuracy, Newcombe's interval for the difference of two accuracies on the same examples,
exact binomial tests with Holm's correction when many features are tested at once, and
cross-fitting when the best of several candidates must be picked without flattering it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats as _scipy_stats

LEVEL = 0.95


class Estimate(NamedTuple):
    """A measured value with its two-sided confidence interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"confidence level must lie strictly between 0 and 1, got {level!r}")
    return float(_scipy_stats.norm.ppf(0.5 + level / 2))


def _as_correct(correct, name: str = "correct") -> np.ndarray:
    correct = np.asarray(correct)
    if correct.ndim < 1 or correct.shape[-1] == 0:
        raise ValueError(f"{name} must hold at least one example, got shape {correct.shape}")
    if correct.dtype != bool and not np.isin(correct, (0, 1)).all():
        raise ValueError(f"{name} must be booleans (or 0 / 1): whether each example was classified correctly")
    return correct.astype(bool)


def wilson(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson's score interval for a proportion: well behaved near 0 and 1, unlike p ± z·se."""
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got successes={successes!r}, n={n!r}")
    z, p = _z(level), successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def accuracy(correct, level: float = LEVEL) -> Estimate:
    """The accuracy of per-example outcomes (n,) with its Wilson interval."""
    correct = _as_correct(correct)
    if correct.ndim != 1:
        raise ValueError(f"correct must have shape (n,), got {correct.shape}")
    return Estimate(float(correct.mean()), *wilson(int(correct.sum()), len(correct), level))


def accuracy_text(accuracy: float, n: int, digits: int = 3, level: float = LEVEL) -> str:
    """An accuracy measured on n examples as text with its Wilson interval, e.g.
    '0.885 [0.834, 0.922]'."""
    successes = int(round(float(accuracy) * n))
    if n < 1 or abs(successes - float(accuracy) * n) > 1e-6 * n:
        raise ValueError(f"an accuracy on n={n!r} examples must be a multiple of 1/n, got {accuracy!r}")
    low, high = wilson(successes, n, level)
    return f"{accuracy:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def paired_difference(correct_a, correct_b, level: float = LEVEL) -> Estimate:
    """accuracy(a) − accuracy(b) measured on the same n examples, with Newcombe's (1998,
    method 10) score interval, which uses the pairing and stays inside [−1, 1]."""
    a, b = _as_correct(correct_a, "correct_a"), _as_correct(correct_b, "correct_b")
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired outcomes need equal shapes (n,), got {a.shape} and {b.shape}")
    n = len(a)
    both, only_a, only_b = np.sum(a & b), np.sum(a & ~b), np.sum(~a & b)
    neither = n - both - only_a - only_b
    p1, p2 = a.mean(), b.mean()
    l1, u1 = wilson(int(a.sum()), n, level)
    l2, u2 = wilson(int(b.sum()), n, level)
    denominator = float((both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither))
    phi = 0.0 if denominator == 0 else float(both * neither - only_a * only_b) / np.sqrt(denominator)
    below = np.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    above = np.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    difference = float(p1 - p2)
    return Estimate(difference, max(-1.0, difference - below), min(1.0, difference + above))


def p_above(correct, rate: float) -> np.ndarray:
    """One-sided exact binomial p-values for "accuracy > rate", for outcomes (..., n)."""
    correct = _as_correct(correct)
    n, successes = correct.shape[-1], correct.sum(-1)
    return _scipy_stats.binom.sf(successes - 1, n, rate)  # P(X >= successes)


def p_below(correct, rate: float) -> np.ndarray:
    """One-sided exact binomial p-values for "accuracy < rate", for outcomes (..., n)."""
    correct = _as_correct(correct)
    return _scipy_stats.binom.cdf(correct.sum(-1), correct.shape[-1], rate)  # P(X <= successes)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment: reject where the adjusted p < α and the chance of any
    false rejection among all the tests stays at most α, whatever their dependence."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or len(p) == 0:
        raise ValueError(f"p_values must be a non-empty vector, got shape {p.shape}")
    order = np.argsort(p)
    adjusted = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values: rejecting where they are below α keeps the
    expected share of false discoveries among the rejections at most α (for independent or
    positively dependent tests), and, when nothing is there to find, the chance of any
    rejection at most α. More discoveries than Holm's when many effects are real."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or len(p) == 0:
        raise ValueError(f"p_values must be a non-empty vector, got shape {p.shape}")
    order = np.argsort(p)
    scaled = p[order] * len(p) / np.arange(1, len(p) + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def spearman_permutation(x, y, permutations: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Spearman's ρ of x and y and the one-sided permutation p-value for ρ > 0 (the share of
    random pairings, the observed one included, with a ρ at least as large)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 3:
        raise ValueError(f"need two vectors of equal length >= 3, got shapes {x.shape} and {y.shape}")
    rx, ry = _scipy_stats.rankdata(x), _scipy_stats.rankdata(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return float("nan"), 1.0
    rx, ry = (rx - rx.mean()) / np.linalg.norm(rx - rx.mean()), (ry - ry.mean()) / np.linalg.norm(ry - ry.mean())
    rho = float(rx @ ry)
    rng = np.random.default_rng(seed)
    shuffled = np.array([ry[rng.permutation(len(ry))] for _ in range(permutations)])
    return rho, float((1 + np.sum(shuffled @ rx >= rho - 1e-12)) / (permutations + 1))


def halves(n: int, seed: int = 0) -> np.ndarray:
    """A seeded random split of n examples into two halves: a boolean mask of the first."""
    if n < 2:
        raise ValueError(f"splitting needs at least 2 examples, got {n}")
    mask = np.zeros(n, bool)
    mask[np.random.default_rng(seed).permutation(n)[: n // 2]] = True
    return mask


def cross_fit(scores, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pick the best of K candidates without letting chance pick it.

    ``scores`` (K, n) are per-example scores of each candidate (e.g. whether it classifies
    each test example correctly under attack). The examples are split in two halves; the
    candidate with the highest mean score on one half is used for the examples of the other
    half. Returns (per-example chosen candidate (n,), the two choices), so that
    ``scores[chosen, arange(n)]`` is an honest, out-of-sample score of "the best candidate".
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] < 1:
        raise ValueError(f"scores must have shape (K, n), got {scores.shape}")
    first = halves(scores.shape[1], seed)
    pick_on_first = int(np.argmax(scores[:, first].mean(1)))
    pick_on_second = int(np.argmax(scores[:, ~first].mean(1)))
    chosen = np.where(first, pick_on_second, pick_on_first)
    return chosen, np.array([pick_on_first, pick_on_second])


def detectable_difference(n: int, rate: float, level: float = LEVEL, power: float = 0.8) -> float:
    """The smallest true accuracy above ``rate`` that a one-sided test at (1 − level)/2 on n
    examples detects with the given power (normal approximation)."""
    if n < 1 or not 0 < rate < 1:
        raise ValueError(f"need n >= 1 and 0 < rate < 1, got n={n!r}, rate={rate!r}")
    z_alpha, z_power = _z(level), float(_scipy_stats.norm.ppf(power))
    low, high = rate, 1.0
    for _ in range(60):  # bisection on the true accuracy p
        p = (low + high) / 2
        if (p - rate) * np.sqrt(n) >= z_alpha * np.sqrt(rate * (1 - rate)) + z_power * np.sqrt(p * (1 - p)):
            high = p
        else:
            low = p
    return float(high - rate)
