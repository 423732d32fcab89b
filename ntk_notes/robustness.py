"""Accuracy under attack over ε, per-example outcomes, and the sanity checks of an attack.

Built on ``ntk_notes.attacks`` (the attacks themselves): ``sweep`` runs one attack at each ε,
``outcomes`` gives each example's result clean, attacked and under noise of the same size,
``accuracy_vs_epsilon`` tabulates accuracy per (method, ε), and ``sanity_checks`` runs the
checks of Carlini et al. (2019) that an attack evaluation is not broken.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pandas as pd

from ntk_notes.attacks import as_model, attack, is_correct


class Sweep(NamedTuple):
    method: str
    epsilons: np.ndarray  # (E,)
    accuracy: np.ndarray  # (E,)
    correct: np.ndarray  # (E, n) bool
    x_adv: np.ndarray | None  # (E, n, ...) adversarial images, if kept


def sweep(logits_fn, x, labels, epsilons, method: str = "pgd", keep_inputs: bool = True, **attack_args) -> Sweep:
    """``attack`` at each ε of ``epsilons`` (one compilation for all of them)."""
    epsilons = np.asarray(epsilons, dtype=np.float64)
    if epsilons.ndim != 1 or len(epsilons) == 0:
        raise ValueError(f"epsilons must be a non-empty list of numbers, got {epsilons!r}")
    results = [attack(logits_fn, x, labels, float(e), method, **attack_args) for e in epsilons]
    return Sweep(
        method,
        epsilons,
        np.array([r.accuracy for r in results]),
        np.stack([r.correct for r in results]),
        np.stack([r.x_adv for r in results]) if keep_inputs else None,
    )


class Outcomes(NamedTuple):
    """Per-example outcomes (n,) bool, True where the example is still classified correctly."""

    clean: np.ndarray
    attacked: np.ndarray
    noise: np.ndarray  # under random noise of the attack's size


def outcomes(logits_fn, x, labels, epsilon: float, method: str = "pgd", **attack_args) -> Outcomes:
    """Each example's outcome clean, under ``attack`` at ``epsilon`` and under random noise of
    the same size: the raw material of accuracies with intervals (``ntk_notes.stats``)."""
    logits_fn = as_model(logits_fn)
    attacked = attack(logits_fn, x, labels, epsilon, method, **attack_args)
    noise_args = {key: value for key, value in attack_args.items() if key in ("norm", "loss", "seed", "batch_size")}
    noise = attack(logits_fn, x, labels, epsilon, "noise", **noise_args)
    clean = np.asarray(is_correct(logits_fn(jnp.asarray(x)), labels))
    return Outcomes(clean, attacked.correct, noise.correct)


def accuracy_vs_epsilon(
    logits_fn, x, labels, epsilons, methods=("fgsm", "pgd", "noise"), **attack_args
) -> pd.DataFrame:
    """Accuracy against each method at each ε, one row per (method, ε): the data of an
    accuracy-vs-ε figure in one call."""
    rows = []
    for method in methods:
        result = sweep(logits_fn, x, labels, epsilons, method, keep_inputs=False, **attack_args)
        rows += [{"method": method, "epsilon": e, "accuracy": a} for e, a in zip(result.epsilons, result.accuracy)]
    return pd.DataFrame(rows)


def sanity_checks(
    logits_fn,
    x,
    labels,
    epsilon: float,
    epsilons=None,
    norm: str = "linf",
    loss: str | None = None,
    steps: int = 10,
    step_size: float | None = None,
    tolerance: float = 0.03,
    seed: int = 0,
) -> pd.DataFrame:
    """The checks of Carlini et al. (2019) that an attack evaluation is not broken, as a table
    (check, measured, criterion, passed):

    1. PGD at least as strong as FGSM per example: the fraction of examples FGSM fools but
       PGD does not is at most ``tolerance``.
    2. PGD accuracy does not increase with ε over ``epsilons`` (by more than ``tolerance``).
    3. An unbounded attack (PGD with the margin loss, ε covering the whole [0, 1] box,
       5 x the steps) reaches 0% accuracy.
    4. Random noise of size ε is much weaker: it removes at most half the accuracy PGD removes
       (and PGD removes more than ``tolerance``).
    5. Doubling PGD's steps changes its accuracy by at most ``tolerance``.
    """
    epsilons = np.linspace(0.0, 2 * epsilon, 5) if epsilons is None else np.asarray(epsilons, np.float64)
    common = dict(norm=norm, loss=loss, seed=seed)
    pgd_args = dict(common, steps=steps, step_size=step_size)
    clean = float(np.mean(np.asarray(is_correct(logits_fn(jnp.asarray(x)), labels))))
    fgsm = attack(logits_fn, x, labels, epsilon, "fgsm", **common)
    pgd_sweep = sweep(logits_fn, x, labels, epsilons, "pgd", keep_inputs=False, **pgd_args)
    curve = pgd_sweep.accuracy
    at_epsilon = np.flatnonzero(np.isclose(epsilons, epsilon, rtol=0, atol=1e-12))
    if len(at_epsilon):  # the same deterministic run as a separate call: reuse it
        pgd_correct = pgd_sweep.correct[at_epsilon[0]]
    else:
        pgd_correct = attack(logits_fn, x, labels, epsilon, "pgd", **pgd_args).correct
    pgd_accuracy = float(np.mean(pgd_correct))
    whole_box = 1.0 if norm == "linf" else float(np.sqrt(np.prod(np.shape(x)[1:])))
    unbounded = attack(logits_fn, x, labels, whole_box, "pgd", norm=norm, loss="margin", steps=5 * steps, seed=seed)
    noise = attack(logits_fn, x, labels, epsilon, "noise", **common)
    doubled = attack(
        logits_fn,
        x,
        labels,
        epsilon,
        "pgd",
        **dict(pgd_args, steps=2 * steps, step_size=None if step_size is None else step_size / 2),
    )
    fgsm_only = float(np.mean(~fgsm.correct & pgd_correct))
    rise = float(np.max(np.diff(curve), initial=0.0))
    pgd_drop, noise_drop = clean - pgd_accuracy, clean - noise.accuracy
    change = abs(doubled.accuracy - pgd_accuracy)
    checks = [
        (
            "PGD ≥ FGSM per example",
            f"{fgsm_only:.3f} of examples fooled by FGSM only",
            f"≤ {tolerance}",
            fgsm_only <= tolerance,
        ),
        (
            "accuracy non-increasing in ε",
            f"largest rise {rise:+.3f} over ε = " + ", ".join(f"{e:.3g}" for e in epsilons),
            f"≤ {tolerance}",
            rise <= tolerance,
        ),
        (
            "unbounded attack reaches 0%",
            f"accuracy {unbounded.accuracy:.3f} at ε = {whole_box:.3g}",
            "= 0",
            unbounded.accuracy == 0.0,
        ),
        (
            "random noise much weaker",
            f"noise removes {noise_drop:.3f}, PGD {pgd_drop:.3f}",
            f"noise ≤ PGD / 2, PGD > {tolerance}",
            pgd_drop > tolerance and noise_drop <= pgd_drop / 2,
        ),
        (
            "doubling PGD steps changes little",
            f"{pgd_accuracy:.3f} → {doubled.accuracy:.3f}",
            f"|change| ≤ {tolerance}",
            change <= tolerance,
        ),
    ]
    return pd.DataFrame(checks, columns=["check", "measured", "criterion", "passed"])
