"""One rule per claim of the paper: from measured quantities to a verdict that can fail.

A rule takes what a chapter measured (per-example outcomes, not averages, so that every
estimate carries its uncertainty) and returns a ``ClaimResult``: its parts, each with the
estimate, its 95% interval, the threshold and the outcome, and the verdict.

An interval part *held* when its whole interval lies on the claimed side of the threshold,
*failed* when it lies wholly on the other side and is *inconclusive* when it straddles it.
Where the best of many noisy numbers is taken (features, values of k, stopping times) the
rules correct for it: Holm's (or Benjamini–Hochberg's) adjustment over every feature
tested, or cross-fitting (the best candidate is chosen on one half of the test set and
scored on the other).

Three conventions carry the book's definitions:
- *useful*: accuracy significantly above the majority-class rate, the accuracy of a
  constant predictor;
- *robust*: accuracy under the attack significantly above that same rate (a constant
  predictor is trivially robust, so being robust means beating it under attack);
- *non-robust*: accuracy under the attack significantly below ``NON_ROBUST`` (γ ≈ 0).

Every rule is tested on data with a planted effect and on null data (``tests/test_claims.py``;
claim 2's in ``tests/test_claims_transfer.py``).

The package gathers one module per idea; chapters and tests use the names below as
``claims.<name>``:

- ``parts``: a claim's ``Part``, the ``ClaimResult`` and how parts combine (``interval_part``,
  ``all_of``, ``across_seeds``, ``merge``) into a verdict (``assemble``);
- ``without_training``: claim 1, adversarial examples of the kernel itself;
- ``features``: claims 3, 5 and 6, the eigen-features and what truncation and early
  stopping trade;
- ``consistency``: claim 4, agreement across architectures;
- ``lazy_transfer``: claim 2, transfer to lazy networks;
- ``settling``: claim 7, the kernel settling earlier under adversarial training.
"""

from ntk_notes.claims.consistency import claim4
from ntk_notes.claims.features import (
    SignificantFeatures,
    claim3_features,
    claim3_tradeoff,
    claim5,
    claim6,
    significant_features,
    useful_non_robust_p,
    useful_robust_p,
)
from ntk_notes.claims.lazy_transfer import CLEAN_TOLERANCE, claim2, laziness_correlation
from ntk_notes.claims.parts import (
    ALPHA,
    DROP,
    NON_ROBUST,
    ClaimResult,
    Part,
    across_seeds,
    all_of,
    assemble,
    check_rate,
    interval_part,
    merge,
)
from ntk_notes.claims.settling import SETTLING_TESTS, RunOutcomes, claim7, earlier_part
from ntk_notes.claims.without_training import AttackOutcomes, claim1

__all__ = [
    "ALPHA",
    "CLEAN_TOLERANCE",
    "DROP",
    "NON_ROBUST",
    "SETTLING_TESTS",
    "AttackOutcomes",
    "ClaimResult",
    "Part",
    "RunOutcomes",
    "SignificantFeatures",
    "across_seeds",
    "all_of",
    "assemble",
    "check_rate",
    "claim1",
    "claim2",
    "claim3_features",
    "claim3_tradeoff",
    "claim4",
    "claim5",
    "claim6",
    "claim7",
    "earlier_part",
    "interval_part",
    "laziness_correlation",
    "merge",
    "significant_features",
    "useful_non_robust_p",
    "useful_robust_p",
]
