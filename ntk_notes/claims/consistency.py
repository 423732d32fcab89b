"""Claim 4: the features of different architectures' kernels agree."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.stats

from ntk_notes import stats
from ntk_notes.claims.parts import ClaimResult, assemble, interval_part


def _overlaps(spaces) -> np.ndarray:
    """‖V_aᵀ V_b‖²_F / k for every pair of k-dimensional orthonormal bases."""
    return np.array([[np.sum((a.T @ b) ** 2) / a.shape[1] for b in spaces] for a in spaces])


def _rank_correlations(scores) -> np.ndarray:
    """Spearman's ρ between every pair of rows; a constant row correlates 0 with everything."""
    ranks = scipy.stats.rankdata(scores, axis=1)
    ranks = ranks - ranks.mean(1, keepdims=True)
    norms = np.linalg.norm(ranks, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    return np.where(np.outer(norms > 0, norms > 0), (ranks @ ranks.T) / np.outer(safe, safe), 0.0)


def _excess(similarity, n_family: int) -> float:
    """From a similarity matrix whose first ``n_family`` rows are the family and the rest
    nulls: the mean similarity within the family minus the largest mean similarity of the
    family to one null. Above 0 when the family agrees more with itself than with any null."""
    family = similarity[:n_family, :n_family]
    within = family[~np.eye(n_family, dtype=bool)].mean()
    return float(within - similarity[:n_family, n_family:].mean(0).max())


def claim4(
    kernels: Mapping[str, np.ndarray],
    null_kernels: Mapping[str, np.ndarray],
    k: int,
    robustness: Mapping[str, np.ndarray] | None = None,
    resamples: int = 200,
    seed: int = 0,
) -> ClaimResult:
    """The features of different architectures' kernels agree, more than with kernels that are
    not neural tangent kernels.

    ``kernels`` (at least two) and ``null_kernels`` (at least one; e.g. linear and RBF) are
    training kernel matrices (N, N) on the same images. Eigenspaces: the excess of the top-k
    eigenspace overlap within the NTKs over their overlap with the best-matching null
    kernel (or a random k-dimensional subspace), with an interval from half-samples of the
    training points. ``robustness`` (optional) maps every kernel of both sets to its features'
    robustness (F,): the same excess for the index-by-index rank correlation, with a
    bootstrap over features.
    """
    if len(kernels) < 2 or len(null_kernels) < 1:
        raise ValueError(
            f"claim 4 needs at least two kernels and one null kernel, got {len(kernels)} and {len(null_kernels)}"
        )
    matrices = [np.asarray(m, np.float64) for m in [*kernels.values(), *null_kernels.values()]]
    n = matrices[0].shape[0]
    if any(m.shape != (n, n) for m in matrices):
        raise ValueError(
            f"every kernel must be a (N, N) training kernel on the same N points; got shapes "
            f"{[m.shape for m in matrices]}"
        )
    if not 1 <= k < n:
        raise ValueError(f"k must lie in 1..{n - 1}, got {k!r}")
    rng = np.random.default_rng(seed)
    n_family = len(kernels)

    def eigenspace_excesses(indices) -> np.ndarray:
        """The excess on each subset of training points (rows of ``indices``); numpy's
        eigh on a stack of matrices runs them in one call."""
        rows, cols = indices[:, :, None], indices[:, None, :]
        spaces = [np.linalg.eigh(m[rows, cols])[1][..., ::-1][..., :k] for m in matrices]
        excesses = []
        for b in range(len(indices)):
            random_space = np.linalg.qr(rng.standard_normal((indices.shape[1], k)))[0]
            excesses.append(_excess(_overlaps([s[b] for s in spaces] + [random_space]), n_family))
        return np.array(excesses)

    observed = float(eigenspace_excesses(np.arange(n)[None])[0])
    # Half-samples without replacement: duplicated points (a bootstrap) distort eigenspaces.
    # The spread of a statistic over half-samples estimates its spread over fresh draws.
    halves = np.sort(np.array([rng.choice(n, n // 2, replace=False) for _ in range(resamples)]), axis=1)
    replicates = eigenspace_excesses(halves)
    parts = [
        interval_part(
            f"top-{k} eigenspaces: overlap between NTKs minus overlap with the closest null kernel, above 0",
            _percentile_estimate(observed, replicates),
            0.0,
        )
    ]
    if robustness is not None:
        names = [*kernels, *null_kernels]
        missing = [name for name in names if name not in robustness]
        if missing:
            raise ValueError(f"robustness is missing for the kernels {missing}")
        scores = [np.asarray(robustness[name], np.float64) for name in names]
        f = len(scores[0])
        if any(s.shape != (f,) for s in scores):
            raise ValueError("every kernel's robustness must have the same shape (F,)")
        scores = np.stack(scores)

        def rank_excess(index) -> float:
            return _excess(_rank_correlations(scores[:, index]), n_family)

        observed = rank_excess(np.arange(f))
        replicates = [rank_excess(rng.integers(0, f, f)) for _ in range(resamples)]
        parts.append(
            interval_part(
                "robustness ranks, index by index: Spearman ρ between NTKs minus ρ with the "
                "closest null kernel, above 0",
                _percentile_estimate(observed, replicates),
                0.0,
            )
        )
    return assemble("4", parts)


def _percentile_estimate(observed: float, replicates) -> stats.Estimate:
    """The observed value with the central 95% of the replicates' deviations from their own
    mean around it (so a replicate scheme with a bias of its own does not shift it)."""
    replicates = np.asarray(replicates, np.float64)
    low, high = np.percentile(
        replicates - replicates.mean(), [100 * (1 - stats.LEVEL) / 2, 100 * (1 + stats.LEVEL) / 2]
    )
    return stats.Estimate(float(observed), float(observed + low), float(observed + high))
