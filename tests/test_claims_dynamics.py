"""The claim-7 rule (``claims.claim7``) on null data and on a planted effect.

Its input is, for each test of "settles earlier" (``claims.SETTLING_TESTS``), one settling
epoch per seed for the standard run and for each adversarial run (3 seeds, 40 epochs, as in
the chapter). Null kinds:

- *exchangeable*: every run's epoch of a test is drawn from one distribution, whatever
  the training; drawn independently for each test, and (the worst case for the rule)
  *the same* exchangeable epochs for all three tests, as if the tests measured one thing;
- *no motion*: the kernel never moves, so tests 1 and 2 are undefined (NaN) and a
  linearised continuation matches from epoch 0 in every run;
- *boundary*: the adversarial runs settle exactly when the standard ones do (ties).

Planted: the adversarial runs settle clearly earlier (around epoch 8 against around 25,
with a spread of a few epochs over seeds, and an undefined epoch now and then).
Every null test prints ``FPR claim7 <kind>: x/n`` and needs at most 5%; the planted test
prints ``power claim7 planted: x/n`` and needs 80%.
"""

import numpy as np
import pytest

from ntk_notes import claims

SEEDS = range(1000)  # the rule is cheap: a thousand draws make the printed rates tight
N_RUN_SEEDS = 3
EPOCHS = 40
MODES = ("standard", "fgsm", "pgd")
MAX_FPR = 0.05
MIN_POWER = 0.8


def exchangeable(rng):
    """Settling epochs (integers 0..40) of every mode and seed from one distribution."""
    return {mode: rng.integers(0, EPOCHS + 1, N_RUN_SEEDS).astype(float) for mode in MODES}


def null_independent(seed):
    rng = np.random.default_rng(seed)
    return {test: exchangeable(rng) for test in claims.SETTLING_TESTS}


def null_same_for_every_test(seed):
    epochs = exchangeable(np.random.default_rng(seed))
    return {test: epochs for test in claims.SETTLING_TESTS}


def null_no_motion(seed):
    nan = {mode: np.full(N_RUN_SEEDS, np.nan) for mode in MODES}
    return {
        "settling epoch": nan,
        "direction and norm": nan,
        "linearisation": {mode: np.zeros(N_RUN_SEEDS) for mode in MODES},
    }


def null_ties(seed):
    rng = np.random.default_rng(seed)
    out = {}
    for test in claims.SETTLING_TESTS:
        epochs = rng.integers(5, EPOCHS + 1, N_RUN_SEEDS).astype(float)
        out[test] = {mode: epochs.copy() for mode in MODES}
    return out


def planted(seed):
    """Adversarial runs settle around epoch 8 (sd 3), standard ones around 25 (sd 6); each
    epoch is undefined with probability 0.05."""
    rng = np.random.default_rng(seed)
    out = {}
    for test in claims.SETTLING_TESTS:
        epochs = {
            mode: np.clip(
                np.round(rng.normal(25 if mode == "standard" else 8, 6 if mode == "standard" else 3, N_RUN_SEEDS)),
                0,
                EPOCHS,
            )
            for mode in MODES
        }
        for values in epochs.values():
            values[rng.random(N_RUN_SEEDS) < 0.05] = np.nan
        out[test] = epochs
    return out


@pytest.mark.parametrize(
    "kind,generator",
    [
        ("exchangeable", null_independent),
        ("exchangeable, same for every test", null_same_for_every_test),
        ("no motion", null_no_motion),
        ("ties", null_ties),
    ],
)
def test_claim7_null(kind, generator):
    results = [claims.claim7(generator(seed)) for seed in SEEDS]
    passes = sum(r.verdict == "reproduced" for r in results)
    print(f"FPR claim7 {kind}: {passes}/{len(results)}")
    assert passes <= MAX_FPR * len(results)


def test_claim7_null_no_motion_is_inconclusive_not_refuted():
    result = claims.claim7(null_no_motion(0))
    assert [p.outcome for p in result.parts] == ["inconclusive", "inconclusive", "inconclusive", "failed"]
    assert result.verdict == "inconclusive at this size"


def test_claim7_planted():
    results = [claims.claim7(planted(seed)) for seed in SEEDS]
    passes = sum(r.verdict == "reproduced" for r in results)
    print(f"power claim7 planted: {passes}/{len(results)}")
    assert passes >= MIN_POWER * len(results)


def test_claim7_planted_the_other_way_is_not_reproduced():
    """Standard runs settling clearly earlier (the issue's probe (c)) refute the claim."""
    reversed_ = {
        test: {"standard": v["fgsm"], "fgsm": v["standard"], "pgd": v["standard"]} for test, v in planted(1).items()
    }
    assert claims.claim7(reversed_).verdict == "not reproduced"


def clear(standard=25.0, adversarial=8.0):
    """Every run of a mode settling at one epoch, the same in every test."""
    return {
        test: {mode: np.full(N_RUN_SEEDS, standard if mode == "standard" else adversarial) for mode in MODES}
        for test in claims.SETTLING_TESTS
    }


def test_claim7_two_tests_of_three_suffice():
    epochs = clear()
    epochs["linearisation"] = {mode: np.full(N_RUN_SEEDS, 10.0) for mode in MODES}  # ties: fails
    result = claims.claim7(epochs)
    assert [p.outcome for p in result.parts[1:]] == ["held", "held", "failed"]
    assert result.verdict == "reproduced"
    assert result.deciding is result.parts[0]  # the count decides, not the failed test
    assert result.parts[0].estimate == 2


def test_claim7_one_test_is_partly():
    epochs = clear()
    flat = {mode: np.full(N_RUN_SEEDS, 10.0) for mode in MODES}
    epochs["linearisation"], epochs["direction and norm"] = flat, flat
    assert claims.claim7(epochs).verdict == "partly reproduced"


def test_claim7_a_difference_within_the_standard_runs_spread_does_not_count():
    """An adversarial run earlier than its own seed's standard run, but not than another
    seed's, is not counted."""
    part = claims.earlier_part("t", [10, 30, 30], {"pgd": [20, 20, 20]}, 2 / 3, 5 / 6)
    assert part.estimate == 0 and part.outcome == "failed"


def test_claim7_one_contradicting_run_fails_a_test_and_undecided_runs_leave_it_open():
    earlier = [5.0, 6.0, 7.0]
    assert (
        claims.earlier_part("t", [20, 25, 30], {"fgsm": earlier, "pgd": [5, 6, 40]}, 2 / 3, 5 / 6).outcome == "failed"
    )
    one_open = claims.earlier_part("t", [20, 25, 30], {"fgsm": earlier, "pgd": [5, 6, np.nan]}, 2 / 3, 5 / 6)
    assert one_open.outcome == "held" and (one_open.low, one_open.high) == (5, 6)
    two_open = claims.earlier_part("t", [20, 25, 30], {"fgsm": earlier, "pgd": [5, np.nan, np.nan]}, 2 / 3, 5 / 6)
    assert two_open.outcome == "inconclusive"


def outcomes(rng, clean, robust, n=200):
    return claims.RunOutcomes(rng.random(n) < clean, rng.random(n) < robust)


def test_claim7_is_not_tested_when_a_run_does_not_work():
    """A collapsed run (clean accuracy at the majority rate) settles trivially: the gate
    stops the claim from being decided on it, whatever the settling epochs say."""
    rng = np.random.default_rng(0)
    working = {
        "standard": [outcomes(rng, 0.97, 0.3) for _ in range(3)],
        "fgsm": [outcomes(rng, 0.97, 0.9) for _ in range(3)],
        "pgd": [outcomes(rng, 0.97, 0.9) for _ in range(3)],
    }
    result = claims.claim7(clear(), working, 0.5)
    assert result.verdict == "reproduced" and [p.outcome for p in result.parts[:2]] == ["held", "held"]
    assert result.deciding is result.parts[2]
    half = np.arange(200) % 2 == 0  # exactly the majority rate: the gate cannot tell
    at_chance = dict(working, pgd=[claims.RunOutcomes(half, half)] + working["pgd"][1:])
    assert claims.claim7(clear(), at_chance, 0.5).verdict == "inconclusive at this size"
    collapsed = dict(working, pgd=[outcomes(rng, 0.2, 0.2)] + working["pgd"][1:])
    result = claims.claim7(clear(), collapsed, 0.5)
    assert result.verdict == "not tested: a training run does not learn"
    assert result.deciding is result.parts[0] and "pgd, seed #0" in result.parts[0].weakest
    not_robust = dict(working, fgsm=[outcomes(rng, 0.97, 0.1) for _ in range(3)])  # overfitted FGSM
    assert claims.claim7(clear(), not_robust, 0.5).verdict == "not tested: adversarial training does not work"


def test_claim7_bad_inputs_are_named():
    with pytest.raises(ValueError, match="missing"):
        claims.claim7({"settling epoch": {}})
    epochs = planted(0)
    epochs["linearisation"] = {"fgsm": [1, 2, 3], "pgd": [1, 2, 3]}
    with pytest.raises(ValueError, match="'standard'"):
        claims.claim7(epochs)
    epochs = planted(0)
    epochs["linearisation"]["pgd"] = [1.0, 2.0]
    with pytest.raises(ValueError, match="one per seed"):
        claims.claim7(epochs)
