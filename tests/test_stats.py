"""The intervals and tests of ntk_notes.stats, checked by simulation and against scipy.

What is checked, and against what:
- Wilson's interval covers the true accuracy with probability at least 0.93 at n = 100
  (nominal 95%), near 0, at 0.5 and near 1: exactly, and in 2000 simulated test sets;
- Newcombe's paired-difference interval covers the true difference on correlated paired
  outcomes, stays inside [−1, 1], and handles identical and all-equal outcomes;
- the exact one-sided binomial p-values equal ``scipy.stats.binomtest``'s;
- Holm's adjustment on a hand-computed example, and its family-wise error on 1000 sets of
  50 true null hypotheses;
- Spearman's permutation test: ρ equals scipy's, p is about uniform under independence
  (false-positive rate at 0.05 within 0.07 over 300 seeds) and small for a monotone relation;
- cross-fitting scores the best of 20 pure-noise candidates without bias, where the naive
  best-of-20 is flattered;
- the detectable difference shrinks with n and is about 0.1 at n = 200, rate 0.5;
- bad inputs raise ValueError naming the bad value.
"""

import numpy as np
import pytest
import scipy.stats

from ntk_notes import stats

# ---------------------------------------------------------------------------- helpers


def paired_outcomes(rng, n, p_both, p_only_a, p_only_b):
    """Paired per-example outcomes (a, b) of two predictors on the same n examples, from the
    joint law P(both right) = p_both, P(only a) = p_only_a, P(only b) = p_only_b (the rest:
    both wrong). Large p_both and small p_only_* make the two strongly correlated, as two
    predictors of one kernel are."""
    cell = rng.choice(4, size=n, p=[p_both, p_only_a, p_only_b, 1 - p_both - p_only_a - p_only_b])
    return (cell == 0) | (cell == 1), (cell == 0) | (cell == 2)


# ---------------------------------------------------------------------------- Wilson


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9])
def test_wilson_covers_the_true_proportion(p):
    # Wilson's coverage oscillates with p: exactly 0.966, 0.943 and 0.936 at these three for
    # n = 100. The exact coverage (the binomial probability of the counts whose interval
    # covers p) must be at least 0.93; 2000 simulated draws estimate it within ±0.011 (two
    # standard errors), so the simulated coverage must be at least 0.92.
    rng = np.random.default_rng(0)
    n, draws = 100, 2000
    intervals = np.array([stats.wilson(k, n) for k in range(n + 1)])
    covers = (intervals[:, 0] <= p) & (p <= intervals[:, 1])
    exact = scipy.stats.binom.pmf(np.arange(n + 1), n, p)[covers].sum()
    simulated = covers[rng.binomial(n, p, size=draws)].mean()
    print(f"Wilson coverage at n = {n}, p = {p}: exact {exact:.3f}, simulated ({draws} draws) {simulated:.3f}")
    assert exact >= 0.93
    assert simulated >= 0.92
    assert np.all((0 <= intervals) & (intervals <= 1)) and np.all(intervals[:, 0] <= intervals[:, 1])


def test_wilson_at_the_edges_and_accuracy_agrees():
    low, high = stats.wilson(0, 50)
    assert low == 0.0 and 0 < high < 0.1
    low, high = stats.wilson(50, 50)
    assert high == 1.0 and 0.9 < low < 1
    correct = np.array([True] * 70 + [False] * 30)
    estimate = stats.accuracy(correct)
    assert estimate.value == 0.7 and (estimate.low, estimate.high) == stats.wilson(70, 100)
    assert estimate.low < 0.7 < estimate.high
    # A wider level gives a wider interval.
    wide = stats.accuracy(correct, level=0.99)
    assert wide.low < estimate.low and wide.high > estimate.high


# ---------------------------------------------------------------------------- Newcombe


@pytest.mark.parametrize(
    "p_both,p_only_a,p_only_b",
    [
        (0.55, 0.25, 0.05),  # accuracies 0.80 and 0.60, positively correlated
        (0.88, 0.07, 0.02),  # 0.95 and 0.90: near 1, strongly correlated
        (0.30, 0.10, 0.10),  # equal accuracies 0.40: true difference 0
    ],
)
def test_newcombe_covers_the_true_paired_difference(p_both, p_only_a, p_only_b):
    rng = np.random.default_rng(1)
    truth = p_only_a - p_only_b
    draws, n = 2000, 100
    covered = 0
    for _ in range(draws):
        a, b = paired_outcomes(rng, n, p_both, p_only_a, p_only_b)
        estimate = stats.paired_difference(a, b)
        assert -1 <= estimate.low <= estimate.value <= estimate.high <= 1
        covered += estimate.low <= truth <= estimate.high
    print(f"Newcombe coverage, true difference {truth:.2f}: {covered / draws:.3f}")
    assert covered / draws >= 0.93


def test_newcombe_stays_in_range_and_handles_equal_outcomes():
    n = 40
    ones, zeros = np.ones(n, bool), np.zeros(n, bool)
    # All right versus all wrong: the difference is ±1 and the interval stays inside [−1, 1].
    estimate = stats.paired_difference(ones, zeros)
    assert estimate.value == 1.0 and estimate.high == 1.0 and 0.8 < estimate.low < 1.0
    estimate = stats.paired_difference(zeros, ones)
    assert estimate.value == -1.0 and estimate.low == -1.0 and -1.0 < estimate.high < -0.8
    # All equal (and identical) outcomes: difference 0, a finite interval around it.
    for same in (ones, zeros):
        estimate = stats.paired_difference(same, same)
        assert estimate.value == 0.0 and -0.2 < estimate.low <= 0.0 <= estimate.high < 0.2
    mixed = np.arange(n) % 3 == 0
    estimate = stats.paired_difference(mixed, mixed)
    assert estimate.value == 0.0 and estimate.low < 0 < estimate.high and np.isfinite(estimate.low)
    # Pairing narrows the interval: correlated outcomes give a narrower one than independent ones
    # with the same two accuracies.
    rng = np.random.default_rng(2)
    a = rng.random(200) < 0.8
    b_correlated = a & (rng.random(200) < 0.8)
    b_independent = rng.permutation(b_correlated)
    paired = stats.paired_difference(a, b_correlated)
    unpaired = stats.paired_difference(a, b_independent)
    assert paired.value == unpaired.value
    assert paired.high - paired.low < unpaired.high - unpaired.low


# ---------------------------------------------------------------------------- exact binomial p-values


def test_exact_p_values_equal_scipy_binomtest():
    rng = np.random.default_rng(3)
    n = 60
    correct = rng.random((12, n)) < rng.uniform(0.05, 0.95, size=(12, 1))
    for rate in (0.1, 0.5, 0.62):
        above, below = stats.p_above(correct, rate), stats.p_below(correct, rate)
        assert above.shape == below.shape == (12,)
        for row, p_a, p_b in zip(correct, above, below):
            k = int(row.sum())
            assert p_a == pytest.approx(scipy.stats.binomtest(k, n, rate, alternative="greater").pvalue, rel=1e-9)
            assert p_b == pytest.approx(scipy.stats.binomtest(k, n, rate, alternative="less").pvalue, rel=1e-9)
    # Extremes: everything right is very significant above 0.5, and not at all below it.
    assert stats.p_above(np.ones(20, bool), 0.5) == pytest.approx(0.5**20)
    assert stats.p_below(np.ones(20, bool), 0.5) == pytest.approx(1.0)
    assert stats.p_above(np.zeros(20, bool), 0.5) == pytest.approx(1.0)


# ---------------------------------------------------------------------------- Holm


def test_holm_matches_a_hand_example():
    # Sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → monotone 0.06.
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(stats.holm([0.5, 0.9]), [1.0, 1.0])  # capped at 1
    np.testing.assert_allclose(stats.holm([0.2]), [0.2])


def test_holm_controls_the_family_wise_error():
    rng = np.random.default_rng(4)
    sets, m = 1000, 50
    any_rejected = sum(bool(np.any(stats.holm(rng.random(m)) < 0.05)) for _ in range(sets))
    print(f"Holm family-wise error over {sets} sets of {m} true nulls: {any_rejected}/{sets}")
    assert any_rejected / sets <= 0.065
    # Without the adjustment nearly every set has a "discovery".
    assert np.mean([np.any(rng.random(m) < 0.05) for _ in range(200)]) > 0.8


# ---------------------------------------------------------------------------- Spearman


def test_spearman_rho_equals_scipys():
    rng = np.random.default_rng(5)
    x = rng.normal(size=30)
    y = x + rng.normal(size=30)
    rho, _ = stats.spearman_permutation(x, y, permutations=100)
    assert rho == pytest.approx(scipy.stats.spearmanr(x, y)[0], abs=1e-12)
    # With ties (rounded values), scipy's tie-averaged ranks.
    x, y = np.round(x), np.round(y)
    rho, _ = stats.spearman_permutation(x, y, permutations=100)
    assert rho == pytest.approx(scipy.stats.spearmanr(x, y)[0], abs=1e-12)


def test_spearman_p_is_about_uniform_under_independence():
    seeds = 300
    p_values = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        p_values.append(
            stats.spearman_permutation(rng.normal(size=20), rng.normal(size=20), permutations=200, seed=seed)[1]
        )
    p_values = np.array(p_values)
    rejected = int(np.sum(p_values < 0.05))
    print(f"FPR spearman_permutation independence: {rejected}/{seeds}")
    assert rejected / seeds <= 0.07
    assert 0.4 <= np.mean(p_values < 0.5) <= 0.6
    assert 0.15 <= np.mean(p_values < 0.2) <= 0.25


def test_spearman_p_is_small_for_a_monotone_relation_and_one_sided():
    rng = np.random.default_rng(6)
    x = rng.normal(size=25)
    rho, p = stats.spearman_permutation(x, np.exp(x), permutations=500)
    assert rho == pytest.approx(1.0) and p == pytest.approx(1 / 501)
    rho, p = stats.spearman_permutation(x, x + 0.5 * rng.normal(size=25), permutations=500)
    assert rho > 0.6 and p < 0.01
    rho, p = stats.spearman_permutation(x, -x, permutations=500)  # the opposite direction is not evidence
    assert rho == pytest.approx(-1.0) and p == 1.0
    rho, p = stats.spearman_permutation(x, np.ones(25))  # a constant: no evidence, no crash
    assert np.isnan(rho) and p == 1.0


# ---------------------------------------------------------------------------- halves and cross-fitting


def test_halves_split_evenly_and_deterministically():
    mask = stats.halves(101, seed=3)
    assert mask.dtype == bool and mask.sum() == 50
    np.testing.assert_array_equal(mask, stats.halves(101, seed=3))
    assert not np.array_equal(mask, stats.halves(101, seed=4))


def test_cross_fit_uses_the_other_halfs_choice():
    rng = np.random.default_rng(7)
    scores = rng.random((5, 40)) < 0.5
    chosen, picks = stats.cross_fit(scores, seed=2)
    first = stats.halves(40, seed=2)
    assert picks[0] == np.argmax(scores[:, first].mean(1)) and picks[1] == np.argmax(scores[:, ~first].mean(1))
    np.testing.assert_array_equal(chosen[first], picks[1])
    np.testing.assert_array_equal(chosen[~first], picks[0])


def test_cross_fit_scores_the_best_of_noise_without_bias():
    seeds, k, n = 400, 20, 200
    honest, naive = [], []
    for seed in range(seeds):
        scores = np.random.default_rng(seed).random((k, n)) < 0.5
        chosen, _ = stats.cross_fit(scores, seed=seed)
        honest.append(scores[chosen, np.arange(n)].mean())
        naive.append(scores.mean(1).max())
    print(f"best of {k} pure-noise candidates: cross-fitted {np.mean(honest):.4f}, naive {np.mean(naive):.4f}")
    assert abs(np.mean(honest) - 0.5) < 0.006  # standard error 0.0018
    assert np.mean(naive) > 0.54  # E[max of 20 binomial means] ≈ 0.5 + 1.87·0.035


# ---------------------------------------------------------------------------- detectable difference


def test_detectable_difference_shrinks_with_n():
    sizes = [50, 100, 200, 400, 800, 3200]
    differences = [stats.detectable_difference(n, 0.5) for n in sizes]
    assert all(a > b for a, b in zip(differences, differences[1:]))
    assert 0.09 <= stats.detectable_difference(200, 0.5) <= 0.11
    # About halves when n quadruples (the normal approximation's 1 / √n).
    assert differences[-1] == pytest.approx(differences[2] / 4, rel=0.15)
    # It is the difference at which the test has 80% power: check by simulation.
    rng = np.random.default_rng(8)
    n, rate = 200, 0.5
    truth = rate + stats.detectable_difference(n, rate)
    successes = rng.binomial(n, truth, size=4000)
    power = np.mean(scipy.stats.binom.sf(successes - 1, n, rate) < 0.025)
    assert 0.75 <= power <= 0.85


# ---------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: stats.wilson(5, 3), r"successes=5, n=3"),
        (lambda: stats.wilson(-1, 3), r"successes=-1"),
        (lambda: stats.wilson(0, 0), r"n=0"),
        (lambda: stats.wilson(1, 3, level=1.5), r"1\.5"),
        (lambda: stats.accuracy([True, False], level=0.0), r"got 0\.0"),
        (lambda: stats.accuracy([]), r"\(0,\)"),
        (lambda: stats.accuracy([0, 2, 1]), r"correct must be booleans"),
        (lambda: stats.accuracy(np.ones((2, 3), bool)), r"\(2, 3\)"),
        (lambda: stats.paired_difference([True, False], [True]), r"\(2,\) and \(1,\)"),
        (lambda: stats.paired_difference([True, 3], [True, False]), r"correct_a"),
        (lambda: stats.p_above([0.5, 1], 0.5), r"booleans"),
        (lambda: stats.holm([]), r"\(0,\)"),
        (lambda: stats.holm([[0.1, 0.2]]), r"\(1, 2\)"),
        (lambda: stats.spearman_permutation([1, 2], [2, 1]), r"\(2,\) and \(2,\)"),
        (lambda: stats.spearman_permutation([1, 2, 3], [1, 2, 3, 4]), r"\(3,\) and \(4,\)"),
        (lambda: stats.halves(1), r"got 1"),
        (lambda: stats.cross_fit(np.ones(5)), r"\(5,\)"),
        (lambda: stats.detectable_difference(0, 0.5), r"n=0"),
        (lambda: stats.detectable_difference(100, 1.0), r"rate=1\.0"),
        (lambda: stats.detectable_difference(100, 0.5, level=2.0), r"2\.0"),
    ],
)
def test_bad_inputs_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_benjamini_hochberg_matches_a_hand_example_and_keeps_the_global_null_at_alpha():
    adjusted = stats.benjamini_hochberg([0.01, 0.04, 0.03, 0.5])
    np.testing.assert_allclose(adjusted, [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])
    rng = np.random.default_rng(7)
    any_rejection = sum(np.any(stats.benjamini_hochberg(rng.random(50)) < 0.05) for _ in range(1000))
    print(f"FPR benjamini_hochberg global null: {any_rejection}/1000")
    assert any_rejection <= 65  # α = 0.05 plus about three standard errors
    with pytest.raises(ValueError, match="non-empty vector"):
        stats.benjamini_hochberg([])


def test_accuracy_text_gives_the_wilson_interval_and_refuses_an_impossible_accuracy():
    low, high = stats.wilson(177, 200)
    assert stats.accuracy_text(0.885, 200) == f"0.885 [{low:.3f}, {high:.3f}]"
    with pytest.raises(ValueError, match="multiple of 1/n"):
        stats.accuracy_text(0.8851, 200)
