"""Claim 2: the kernel's adversarial examples transfer to lazy networks, and less out of the lazy
regime."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.stats

from ntk_notes import stats, transfer
from ntk_notes.claims.parts import ALPHA, DROP, ClaimResult, Part, all_of, assemble, interval_part


def _fisher_interval(z: float, variance: float) -> tuple[float, float]:
    half = 1.96 * np.sqrt(variance)
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def laziness_correlation(
    runs: Sequence[transfer.TransferRun], permutations: int = 2000, seed: int = 0, value=lambda run: run.ratio
) -> tuple[float, float, float, float, float]:
    """How the transfer ratio (or another ``value`` of a run, e.g. its ratio at matched
    robustness) moves with the kernel's cosine distance, within seeds: the
    Fisher-z mean of each seed's Spearman ρ, its 95% interval (Fisher's z with Fieller's
    variance 1.06 / (k − 3) per seed of k runs) and two one-sided p-values from permuting
    the ratios within each seed (for ρ < 0 and for ρ > 0). A seed effect on the ratio
    (one seed's nets all transfer more) cancels. Returns (ρ, low, high, p_below, p_above).
    Runs with an undefined ratio (a white-box attack that removes nothing) are left out;
    every seed needs at least 4 runs."""
    groups: dict[int, list] = {}
    for run in runs:
        if np.isfinite(value(run)):
            groups.setdefault(run.seed, []).append((run.distance, value(run)))
    if not groups or min(len(g) for g in groups.values()) < 4:
        raise ValueError(
            "the laziness correlation needs at least 4 runs with a defined transfer ratio per seed; "
            f"got {sorted(len(g) for g in groups.values())}"
        )
    unit = []
    for group in groups.values():
        d, r = np.array(group).T
        rd, rr = scipy.stats.rankdata(d), scipy.stats.rankdata(r)
        rd, rr = rd - rd.mean(), rr - rr.mean()
        norm = np.linalg.norm(rd) * np.linalg.norm(rr)
        unit.append((rd / max(np.linalg.norm(rd), 1e-300), rr / max(np.linalg.norm(rr), 1e-300), norm > 0))

    def z(rho):
        return np.arctanh(np.clip(rho, -0.999999, 0.999999))

    observed = float(np.mean([z(a @ b) if ok else 0.0 for a, b, ok in unit]))
    rng = np.random.default_rng(seed)
    null = np.zeros(permutations)
    for a, b, ok in unit:
        if ok:
            order = rng.permuted(np.tile(np.arange(len(b)), (permutations, 1)), axis=1)
            null += z(b[order] @ a)
    null /= len(unit)
    p_below = float((1 + np.sum(null <= observed + 1e-12)) / (permutations + 1))
    p_above = float((1 + np.sum(null >= observed - 1e-12)) / (permutations + 1))
    variance = sum(1.06 / (len(g) - 3) if len(g) > 3 else 1.06 for g in groups.values()) / len(groups) ** 2
    low, high = _fisher_interval(observed, variance)
    return float(np.tanh(observed)), low, high, p_below, p_above


CLEAN_TOLERANCE = 0.05  # claim 2: nets whose clean accuracy differs more from their control are not compared


def _weakens_part(name: str, runs, permutations: int, seed: int, value) -> tuple[Part, dict]:
    """A within-seed Spearman test of ``value`` against the cosine distance (held:
    one-sided permutation p < 0.025, the level of a two-sided 95% test; failed: as
    significantly above 0)."""
    seeds = sorted({r.seed for r in runs})
    defined = [sum(np.isfinite(value(r)) for r in runs if r.seed == s) for s in seeds]
    if not seeds or min(defined) < 4:  # e.g. a white-box attack that removes nothing
        nan = float("nan")
        return (
            Part(
                name,
                nan,
                nan,
                nan,
                0.0,
                "inconclusive",
                above=False,
                weakest=f"only {min(defined, default=0)} nets of a seed with a defined value",
            ),
            {"rho": nan, "p_below": nan, "p_above": nan},
        )
    rho, low, high, p_below, p_above = laziness_correlation(runs, permutations, seed, value)
    outcome = "held" if p_below < ALPHA / 2 else "failed" if p_above < ALPHA / 2 else "inconclusive"
    return (
        Part(name, rho, low, high, 0.0, outcome, p_below, above=False),
        {"rho": rho, "p_below": p_below, "p_above": p_above},
    )


def _ratio_gap(control: transfer.TransferRun, resamples: int, seed: int) -> stats.Estimate:
    """How much higher the transfer ratio of the surrogate's examples is than that of the
    baseline surrogate's, on one net: (baseline − transfer) / (clean − white-box), with a
    paired bootstrap interval over the test images."""
    clean, moved, base, white = (
        np.asarray(v, np.float64) for v in (control.clean, control.transfer, control.baseline, control.white_box)
    )
    indices = np.random.default_rng(seed).integers(0, len(clean), (resamples, len(clean)))

    def gap(index):
        removed = clean[index].mean(-1) - white[index].mean(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(removed > 0, (base[index].mean(-1) - moved[index].mean(-1)) / removed, np.nan)

    observed = float(gap(np.arange(len(clean))))
    replicates = gap(indices)
    if not np.isfinite(replicates).any():
        return stats.Estimate(observed, float("nan"), float("nan"))
    low, high = np.nanpercentile(replicates, [2.5, 97.5])
    return stats.Estimate(observed, float(low), float(high))


def claim2(
    runs: Sequence[transfer.TransferRun],
    controls: Sequence[transfer.TransferRun],
    checks_passed: int,
    checks_total: int,
    drop: float = DROP,
    permutations: int = 2000,
    seed: int = 0,
    clean_tolerance: float = CLEAN_TOLERANCE,
    resamples: int = 1000,
) -> ClaimResult:
    """The kernel's adversarial examples transfer to networks trained in the lazy regime, and
    less as training leaves it.

    ``runs``: every trained network (several output scales α per seed, at least 4 per seed,
    and at least 3 seeds), each with its kernel's cosine distance and per-example outcomes
    on the same test images (``transfer.TransferRun``: clean, strongest white-box, f_∞'s
    examples, noise; and its ``matched_ratio``, the transfer ratio at matched white-box
    robustness). ``controls``: the linearised networks (maximally lazy), one per seed, with
    their outcomes on a ``baseline`` surrogate's examples (one that knows nothing of the
    kernel). ``checks_passed`` of ``checks_total``: nets on which white-box is at least as
    strong as transfer. Nets whose clean accuracy differs from their seed's control by more
    than ``clean_tolerance`` are not compared (``details["excluded"]``).

    Gates (a failed gate: "not tested"):
    - the white-box attack is at least as strong as transfer on every net (else unsound);
    - the experiment can see transfer: f_∞'s examples remove at least ``drop`` more
      accuracy than noise from every linearised net;
    - the experiment can see transfer *weaken* (the positive control of a weakening): on
      every linearised net the baseline surrogate's examples have a transfer ratio
      significantly below f_∞'s (paired bootstrap). A net whose kernel departs from the
      surrogate's must show a lower ratio; a measurement that cannot tell f_∞ from a model
      that ignores the kernel could not see that.
    Parts, in this order:
    - transfer weakens out of the lazy regime: the within-seed Spearman ρ of cosine
      distance and transfer ratio is below 0 (permutation test within seeds);
    - the lazy limit transfers best: no trained net transfers significantly better than the
      linearised net of its seed (paired bootstrap, Holm over the nets): a prediction of the
      claim, and the issue's control, which can fail;
    - transfer weakens at matched white-box robustness: the same test on ``matched_ratio``,
      which separates "transfer weakens" from "the net became harder to attack";
    - transfer exists: f_∞'s examples remove more than noise from the laziest net of every
      seed (Newcombe interval of the paired difference above 0).

    For example, three seeds of four nets on 100 test images, each net right on every clean
    image and on none under its white-box attack; f_∞'s examples fool the first ``fooled``
    images, fewer the farther the kernel turned, and the baseline's 40 on the linearised
    nets:

    >>> import numpy as np
    >>> from ntk_notes import claims, transfer
    >>> def net(seed, distance, fooled, baseline=None):
    ...     right, first = np.ones(100, bool), np.arange(100)
    ...     return transfer.TransferRun(seed, distance, right, ~right, first >= fooled, right,
    ...                                 None if baseline is None else first >= baseline,
    ...                                 matched_ratio=fooled / 100)
    >>> steps = [(0.01, 85), (0.03, 70), (0.1, 55), (0.3, 40)]
    >>> runs = [net(s, d, fooled) for s in range(3) for d, fooled in steps]
    >>> controls = [net(s, 0.0, 90, baseline=40) for s in range(3)]
    >>> result = claims.claim2(runs, controls, 15, 15, permutations=200, resamples=200)
    >>> result.verdict, round(result.details["rho"], 2)
    ('reproduced', -1.0)
    """
    runs, controls = list(runs), list(controls)
    if not runs or not controls:
        raise ValueError("claim 2 needs trained runs and linearised controls")
    if len({r.seed for r in runs}) < 3:
        raise ValueError(f"claim 2 needs runs of at least 3 seeds, got {len({r.seed for r in runs})}")
    if not 0 <= checks_passed <= checks_total or checks_total < 1:
        raise ValueError(
            f"need 0 <= checks_passed <= checks_total, checks_total >= 1; got {checks_passed}, {checks_total}"
        )
    if any(c.baseline is None for c in controls):
        raise ValueError(
            "every linearised control needs its outcomes on the baseline surrogate's examples (TransferRun.baseline)"
        )
    if not 0 <= clean_tolerance <= 1:
        raise ValueError(f"clean_tolerance must lie in [0, 1], got {clean_tolerance!r}")
    share = checks_passed / checks_total
    sound = Part(
        "white-box at least as strong as transfer on every net",
        share,
        share,
        share,
        1.0,
        "held" if checks_passed == checks_total else "failed",
        voids="the white-box attack is weaker than transfer (attack unsound)",
    )
    control = all_of(
        f"positive control: f_∞'s examples remove at least {drop:g} more accuracy than noise from every "
        "linearised net (noise minus transfer accuracy)",
        [interval_part(f"seed {c.seed}", stats.paired_difference(c.noise, c.transfer), drop) for c in controls],
        [f"seed {c.seed}" for c in controls],
    )._replace(voids="the experiment cannot see transfer")
    sensitive = all_of(
        "positive control of a weakening: on every linearised net, the baseline surrogate's examples "
        "transfer less than f_∞'s (transfer ratio of f_∞ minus the baseline's)",
        [interval_part(f"seed {c.seed}", _ratio_gap(c, resamples, seed + i), 0.0) for i, c in enumerate(controls)],
        [f"seed {c.seed}" for c in controls],
    )._replace(voids="the experiment cannot see transfer weaken")
    clean_of = {c.seed: float(np.mean(c.clean)) for c in controls}
    compared = [r for r in runs if abs(float(np.mean(r.clean)) - clean_of.get(r.seed, np.nan)) <= clean_tolerance]
    laziest = {}
    for run in runs:
        if run.seed not in laziest or run.distance < laziest[run.seed].distance:
            laziest[run.seed] = run
    described = f"within seeds ({len(compared)} nets of comparable clean accuracy, {len(laziest)} seeds), below 0"
    weakens, found = _weakens_part(
        f"transfer weakens out of the lazy regime: Spearman ρ of kernel cosine distance and transfer ratio {described}",
        compared,
        permutations,
        seed,
        lambda r: r.ratio,
    )
    lazy_limit = _lazy_limit_transfers_best(compared, controls, resamples, seed)
    matched, matched_found = _weakens_part(
        "transfer weakens at matched white-box robustness: Spearman ρ of cosine "
        f"distance and matched transfer ratio {described}",
        compared,
        permutations,
        seed + 1,
        lambda r: r.matched_ratio,
    )
    exists = all_of(
        "transfer exists: f_∞'s examples remove more accuracy than noise from the laziest net of "
        "every seed (noise minus transfer accuracy, above 0)",
        [interval_part(f"seed {s}", stats.paired_difference(r.noise, r.transfer), 0.0) for s, r in laziest.items()],
        [f"seed {s}" for s in laziest],
    )
    details = {
        **found,
        "matched": matched_found,
        "excluded": len(runs) - len(compared),
        "ratios": [r.ratio for r in runs],
        "control_ratios": [c.ratio for c in controls],
    }
    # The contested half first: when every part holds, the report's summary shows it.
    return assemble("2", [sound, control, sensitive, weakens, lazy_limit, matched, exists], details)


def _bootstrap_ratios(nets, indices) -> np.ndarray:
    """Transfer ratios (B, nets) of nets on the same test images, on resampled images."""

    def means(field):
        return np.stack([np.asarray(getattr(net, field), np.float64)[indices].mean(1) for net in nets], axis=1)

    clean, moved = means("clean"), means("transfer")
    removed = clean - means("white_box")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(removed > 0, (clean - moved) / removed, np.nan)


def _lazy_limit_transfers_best(runs, controls, resamples: int = 1000, seed: int = 0) -> Part:
    """A prediction of "transfer weakens": the linearised network, the lazy limit,
    transfers at least as well as every trained network of its seed. For each trained net,
    a paired bootstrap over the test images gives the one-sided p-value of "its transfer
    ratio exceeds the linearised net's"; Holm's correction runs over all trained nets. The
    part fails if some net transfers significantly better than the lazy limit. Shown: the
    largest excess over the lazy limit, with its bootstrap interval."""
    rng = np.random.default_rng(seed)
    p_values, excesses, labels = [], [], []
    for control in controls:
        trained = [r for r in runs if r.seed == control.seed]
        if not trained:
            continue
        n = len(control.clean)
        ratios = _bootstrap_ratios([control, *trained], rng.integers(0, n, (resamples, n)))
        observed = _bootstrap_ratios([control, *trained], np.arange(n)[None])[0]
        for j, run in enumerate(trained, start=1):
            excess = ratios[:, j] - ratios[:, 0]
            p_values.append((1 + np.sum(~(excess > 0))) / (resamples + 1))
            low, high = np.nanpercentile(excess, [2.5, 97.5]) if np.isfinite(excess).any() else (np.nan, np.nan)
            excesses.append(stats.Estimate(float(observed[j] - observed[0]), float(low), float(high)))
            labels.append(f"seed {control.seed}, cosine distance {run.distance:.2g}")
    name = (
        "the lazy limit transfers best: no trained net transfers significantly better than the linearised "
        "net of its seed (transfer ratio excess over the lazy limit; bootstrap, Holm over the nets)"
    )
    if not p_values:
        return Part(name, float("nan"), float("nan"), float("nan"), 0.0, "inconclusive")
    adjusted = stats.holm(p_values)
    finite = [i for i, e in enumerate(excesses) if np.isfinite(e.value)]
    worst = max(finite, key=lambda i: excesses[i].value) if finite else 0
    e = excesses[worst]
    return Part(
        name,
        e.value,
        e.low,
        e.high,
        0.0,
        "failed" if adjusted.min() < ALPHA else "held",
        float(adjusted[worst]),
        above=False,
        weakest=labels[worst],
    )
