"""Claim 1: the NTK gives adversarial examples without training."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from ntk_notes import stats
from ntk_notes.claims.parts import DROP, ClaimResult, Part, all_of, assemble, check_rate, interval_part


class AttackOutcomes(NamedTuple):
    """Per-example outcomes (n,) of one predictor: clean, under the attack, under noise of the
    same size; and the majority-class rate of its test set."""

    clean: np.ndarray
    attacked: np.ndarray
    noise: np.ndarray
    majority: float


def claim1(
    predictors: Mapping[str, AttackOutcomes], checks_passed: int, checks_total: int, drop: float = DROP
) -> ClaimResult:
    """The NTK gives adversarial examples without training: every kernel predictor is accurate,
    the attack removes at least ``drop`` of its accuracy, and beats random noise of the same
    size by at least ``drop``. The sanity checks of the evaluation gate the claim: if any
    fails, the attack is unsound and the claim is not tested.

    For example, a predictor right on 95 of 100 test images, on 10 under the attack and on
    90 under noise:

    >>> import numpy as np
    >>> from ntk_notes import claims
    >>> first = np.arange(100)
    >>> outcomes = claims.AttackOutcomes(first < 95, first < 10, first < 90, majority=0.5)
    >>> claims.claim1({"f_∞": outcomes}, checks_passed=4, checks_total=4).verdict
    'reproduced'
    >>> claims.claim1({"f_∞": outcomes}, checks_passed=3, checks_total=4).verdict
    'not tested: attack unsound'
    """
    if not predictors:
        raise ValueError("claim 1 needs at least one predictor's outcomes")
    if not 0 <= checks_passed <= checks_total or checks_total < 1:
        raise ValueError(
            f"need 0 <= checks_passed <= checks_total, checks_total >= 1; got {checks_passed}, {checks_total}"
        )
    share = checks_passed / checks_total
    gate = Part(
        "sanity checks of the attack evaluation pass",
        share,
        share,
        share,
        1.0,
        "held" if checks_passed == checks_total else "failed",
        voids="attack unsound",
    )
    accurate, removed, beats_noise = [], [], []
    for name, o in predictors.items():
        accurate.append(interval_part(name, stats.accuracy(o.clean), check_rate("majority", o.majority)))
        removed.append(interval_part(name, stats.paired_difference(o.clean, o.attacked), drop))
        beats_noise.append(interval_part(name, stats.paired_difference(o.noise, o.attacked), drop))
    # Adversarial examples of a predictor no better than a constant one test nothing.
    accuracy_gate = all_of(
        "every kernel predictor is accurate: clean accuracy above the majority rate", accurate
    )._replace(voids="a kernel predictor is no better than the majority rate")
    parts = [
        gate,
        accuracy_gate,
        all_of(f"the attack removes at least {drop:g} of every predictor's accuracy", removed),
        all_of(f"the attack beats random noise of the same size by at least {drop:g} of accuracy", beats_noise),
    ]
    return assemble("1", parts)
