"""The rules of the trade-off chapter (``book/robustness_tradeoff.py``) applied to every draw
of ``features.draws``, and the sentences that report them."""

from __future__ import annotations

import numpy as np

from ntk_notes import claims, stats


def tradeoff_claims(runs: dict) -> tuple:
    """Claims 3 (trade-off) and 5 (robust features learned first), each over every draw of
    ``runs`` (seed -> ``features.tradeoff_draw`` result): (claim 3b, claim 5)."""
    tradeoff = claims.across_seeds(
        [
            claims.claim3_tradeoff(
                r.outcomes.top_clean, r.outcomes.top_pgd, r.outcomes.full_clean, r.outcomes.full_pgd, r.majority
            )
            for r in runs.values()
        ]
    )
    learned_first = claims.across_seeds(
        [
            claims.claim5(
                r.outcomes.ft_clean,
                r.outcomes.ft_pgd,
                r.outcomes.full_pgd,
                r.majority,
                r.predictor.eigen[0],
                r.every.clean_correct,
                r.every.robust_correct,
            )
            for r in runs.values()
        ]
    )
    return tradeoff, learned_first


def picks_text(runs: dict, tradeoff) -> str:
    """The most robust k chosen on each half of the test set, per draw, and f_∞'s clean and
    PGD accuracy on the first draw, with their intervals."""
    first = next(iter(runs.values())).outcomes
    picks = {seed: first.ks[d["picks"]] for seed, d in zip(runs, tradeoff.details["details"])}
    return (
        "The most robust k, chosen on each half of the test set, per draw: "
        + "; ".join(f"seed {seed}: k = {a} and {b}" for seed, (a, b) in picks.items())
        + f". f_∞ on the first draw: clean {stats.accuracy(first.full_clean)}, PGD "
        f"{stats.accuracy(first.full_pgd)} (95% intervals)."
    )


def useful_indices(every, majority: float) -> np.ndarray:
    """Indices of the features significantly more accurate than the majority rate
    (Benjamini–Hochberg over all features)."""
    return (stats.benjamini_hochberg(stats.p_above(every.clean_correct, majority)) < claims.ALPHA).nonzero()[0]


def power_text(n_test: int, majority: float) -> str:
    """The smallest excess over the majority rate detected with 80% power on ``n_test``."""
    return (
        f"With {n_test} test images, an accuracy is detected above the majority rate (80% power) "
        f"once it exceeds it by {stats.detectable_difference(n_test, majority):.3f}."
    )
