"""Coding exercises that check themselves: in a chapter the reader writes one function and
runs ``check(name, function)``, which calls it on small fixed problems and compares the
result with the book's own computation, within a tolerance. An answer still raising
``NotImplementedError`` is reported as not attempted, so a chapter runs before its
exercises are done; a wrong one raises ``AssertionError`` saying where it is wrong.

The solutions sit folded under each exercise; ``tests/test_exercises.py`` runs every check
against them, and against a wrong answer, which it must refuse."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import scipy.linalg

from ntk_notes import kernel_metrics, spectral

RTOL = 1e-6


def _kernel_problem(seed: int = 0, n_train: int = 12, n_test: int = 5):
    """A positive-definite training kernel with distinct eigenvalues, a test-train kernel
    from the same features, and ±1 targets."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n_train + n_test, n_train + 4))
    gram = features @ features.T / features.shape[1] + 0.05 * np.eye(n_train + n_test)
    y = np.where(rng.random(n_train) < 0.5, -1.0, 1.0)
    return gram[n_train:, :n_train], gram[:n_train, :n_train], y


def _close(name: str, answer, expected, what: str) -> None:
    answer = np.asarray(answer, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if answer.shape != expected.shape:
        raise AssertionError(f"{name}: {what} has shape {answer.shape}, expected {expected.shape}")
    if not np.allclose(answer, expected, rtol=RTOL, atol=RTOL):
        worst = np.max(np.abs(answer - expected))
        raise AssertionError(f"{name}: {what} is off by up to {worst:.3g} (tolerance {RTOL:g})")


def _flow_predictor(answer: Callable) -> None:
    k_test, k_train, y = _kernel_problem()
    n = len(y)
    top = np.linalg.eigvalsh(k_train)[-1]
    for tau in (0.1, 1.0, 30.0):  # times at which the top direction has relaxed by e^-tau
        t = tau * n / top
        expected = k_test @ np.linalg.solve(k_train, (np.eye(n) - scipy.linalg.expm(-k_train * t / n)) @ y)
        _close("flow_predictor", answer(k_test, k_train, y, t), expected, f"f_t at t = {t:.3g}")


def _fgsm_step(answer: Callable) -> None:
    rng = np.random.default_rng(1)
    x = np.clip(rng.random((3, 4, 4, 1)) * 1.2 - 0.1, 0.0, 1.0)  # some pixels at 0 and at 1
    gradient = rng.normal(size=x.shape) * (rng.random(x.shape) < 0.8)  # some exactly zero
    for epsilon in (0.05, 0.3):
        expected = np.clip(x + epsilon * np.sign(gradient), 0.0, 1.0)
        _close("fgsm_step", answer(x, gradient, epsilon), expected, f"the image at ε = {epsilon}")


def _as_predictor(k_train, y) -> SimpleNamespace:
    """What spectral's feature functions read of a KernelPredictor: eigenpairs, largest first."""
    values, vectors = np.linalg.eigh(k_train)
    return SimpleNamespace(eigen=(values[::-1], vectors[:, ::-1]), y_train=y[:, None])


def _eigen_features(answer: Callable) -> None:
    k_test, k_train, y = _kernel_problem()
    expected = k_test @ spectral.feature_weights(_as_predictor(k_train, y))[:, :, 0]
    features = answer(k_test, k_train, y)
    _close("eigen_features", features, expected, "the features φᵢ(x), largest eigenvalue first")
    _close("eigen_features", np.sum(features, axis=1), k_test @ np.linalg.solve(k_train, y), "Σᵢ φᵢ(x) = f_∞(x)")


def _top_k_predictor(answer: Callable) -> None:
    k_test, k_train, y = _kernel_problem(seed=2)
    weights = spectral.top_k_weights(_as_predictor(k_train, y), [1, 3, len(y)])[:, :, 0]
    for column, k in enumerate((1, 3, len(y))):
        _close("top_k_predictor", answer(k_test, k_train, y, k), k_test @ weights[:, column], f"φ_1..k at k = {k}")


def _eigenspace_overlap(answer: Callable) -> None:
    rng = np.random.default_rng(3)
    a = np.linalg.qr(rng.normal(size=(10, 10)))[0]
    rotation = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    rotated = a.copy()
    rotated[:, :4] = a[:, :4] @ rotation  # the same top-4 subspace, other eigenvectors
    unrelated = np.linalg.qr(rng.normal(size=(10, 10)))[0]
    for other, what in ((rotated, "a rotated basis of the same subspace"), (unrelated, "an unrelated basis")):
        expected = spectral.eigenspace_overlap(a, other, 4)
        _close("eigenspace_overlap", answer(a, other, 4), expected, f"the overlap with {what}")


def _kernel_distance(answer: Callable) -> None:
    _, k1, _ = _kernel_problem(seed=4)
    _, k2, _ = _kernel_problem(seed=5)
    for other, what in ((k2, "two different kernels"), (3.0 * k1, "a kernel and 3 times itself")):
        _close("kernel_distance", answer(k1, other), kernel_metrics.kernel_distance(k1, other), f"S for {what}")


def _transfer_ratio(answer: Callable) -> None:
    clean, transfer, white_box = np.array([0.9, 0.8, 0.95]), np.array([0.5, 0.8, 0.2]), np.array([0.1, 0.3, 0.0])
    expected = (clean - transfer) / (clean - white_box)
    _close("transfer_ratio", answer(clean, transfer, white_box), expected, "the ratios")


TASKS: dict[str, Callable[[Callable], None]] = {
    "flow_predictor": _flow_predictor,
    "fgsm_step": _fgsm_step,
    "eigen_features": _eigen_features,
    "top_k_predictor": _top_k_predictor,
    "eigenspace_overlap": _eigenspace_overlap,
    "kernel_distance": _kernel_distance,
    "transfer_ratio": _transfer_ratio,
}


def check(name: str, answer: Callable) -> None:
    """Check the reader's ``answer`` to the exercise ``name``: a line saying it is correct,
    or a hint while it still raises NotImplementedError; AssertionError (naming the case
    that is wrong) otherwise. Returns nothing, so the chapter's cell shows only that line."""
    if name not in TASKS:
        raise ValueError(f"no exercise named {name!r}; the exercises are: {', '.join(TASKS)}")
    try:
        TASKS[name](answer)
    except NotImplementedError:
        print(f"{name}: not attempted yet. Write the function above, then run this cell again.")
        return
    print(f"{name}: correct.")
