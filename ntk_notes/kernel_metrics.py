"""Metrics of a sequence of kernels K_0 … K_T (PAPER.md, "Kernel dynamics"), and when it settles.

With ⟨A, B⟩ = Tr(ABᵀ) and ‖·‖ the Frobenius norm: similarity s(K₁, K₂) = ⟨K₁, K₂⟩ /
(‖K₁‖ ‖K₂‖), kernel distance S = 1 − s, velocity S(K_t, K_{t+1}), the polar trajectory,
top-k spectral mass, relative change, kernel–target alignment and the label energy of the
top eigenvectors (``spectral.label_energy``), gathered by ``kernel_metrics``; and three
tests of when a kernel settles (``settling_epoch``, ``direction_and_norm_settling``,
``settling_summary``).

Kernel layout (``ntk_notes.empirical``): a traced kernel is (n, n); a full kernel of C
outputs is (n·C, n·C), row ``i·C + c`` being example i, output c, with targets Y (n, C)
flattened the same way. Every metric computes in float64.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import numpy as np
import pandas as pd

from ntk_notes import attacks, spectral
from ntk_notes.kernels import eigendecomposition


def _matrix(kernel) -> np.ndarray:
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"a kernel must be a square matrix, got shape {k.shape}")
    return k


def _series(kernels, at_least: int = 1) -> list:
    """A list of float64 square matrices of one shape, from a list or a stacked array."""
    series = [_matrix(k) for k in kernels]
    if len(series) < at_least:
        raise ValueError(f"need at least {at_least} kernels, got {len(series)}")
    shapes = {k.shape for k in series}
    if len(shapes) > 1:
        raise ValueError(f"kernels must all have one shape, got {sorted(shapes)}")
    return series


def similarity(k1, k2) -> float:
    """s(K₁, K₂) = ⟨K₁, K₂⟩ / (‖K₁‖ ‖K₂‖), the cosine of the angle between two kernels."""
    k1, k2 = _matrix(k1), _matrix(k2)
    return float(np.vdot(k1, k2) / (np.linalg.norm(k1) * np.linalg.norm(k2)))


def kernel_distance(k1, k2) -> float:
    """S(K₁, K₂) = 1 − s(K₁, K₂) (Fort et al. 2020): 0 for proportional kernels."""
    return 1.0 - similarity(k1, k2)


def distance_matrix(kernels) -> np.ndarray:
    """S(K_i, K_j) for every pair of kernels of a sequence, (T, T): symmetric, 0 on the
    diagonal (the authors' epoch × epoch heat map). One kernel is held at a time besides
    the pair being compared."""
    series = _series(kernels)
    norms = [np.linalg.norm(k) for k in series]
    out = np.zeros((len(series), len(series)))
    for i in range(len(series)):
        for j in range(i):
            out[i, j] = out[j, i] = 1.0 - np.vdot(series[i], series[j]) / (norms[i] * norms[j])
    return out


def velocity(kernels) -> np.ndarray:
    """Kernel velocity S(K_t, K_{t+1}) for t = 0 … T−1, shape (T,) for T + 1 kernels."""
    series = _series(kernels, at_least=2)
    return np.array([kernel_distance(a, b) for a, b in itertools.pairwise(series)])


def relative_change(a, b) -> float:
    """‖b − a‖ / ‖a‖ over all leaves of two pytrees (two kernels, or two sets of
    parameters), in float64: how far b moved from a, norm included."""
    leaves_a = [np.asarray(u, dtype=np.float64) for u in jax.tree.leaves(a)]
    leaves_b = [np.asarray(v, dtype=np.float64) for v in jax.tree.leaves(b)]
    diff = sum(float(np.sum((u - v) ** 2)) for u, v in zip(leaves_a, leaves_b))
    norm = sum(float(np.sum(u**2)) for u in leaves_a)
    return (diff / norm) ** 0.5


def cosine_distance(kernels) -> np.ndarray:
    """S(K_t, K_0) per kernel, (T,): how far the kernel's direction moved, whatever its norm
    (a kernel can grow a hundredfold while this stays near 0)."""
    series = _series(kernels)
    return np.array([kernel_distance(k, series[0]) for k in series])


def truncate(kernel, k: int, eigen=None) -> tuple[np.ndarray, np.ndarray]:
    """(top, rest): the rank-k truncation Σ_{i≤k} λ_i v_i v_iᵀ of a symmetric kernel (its
    top-k eigenspace, float64 eigendecomposition) and the rest K − top."""
    kernel = _matrix(kernel)
    _check_k(k, len(kernel))
    values, vectors = eigendecomposition(kernel) if eigen is None else eigen
    top = (vectors[:, :k] * values[:k]) @ vectors[:, :k].T
    return top, kernel - top


class Polar(NamedTuple):
    radius: np.ndarray  # (T,) r_t = ‖K_t − K_0‖ / ‖K_T − K_0‖: 0 at t = 0, 1 at t = T
    angle: np.ndarray  # (T,) α_t = arccos s(K_t, K_0), radians (the authors call it θ_t)


class PolarTrajectory(NamedTuple):
    whole: Polar
    top: Polar  # of the rank-k truncations (each kernel's own top-k eigenspace)
    rest: Polar  # of K_t minus its rank-k truncation


def polar(kernels) -> Polar:
    """Radius r_t = ‖K_t − K_0‖ / ‖K_T − K_0‖ and angle α_t = arccos s(K_t, K_0) of a sequence
    (PAPER.md). A kernel that never moves has an undefined radius: NaN."""
    series = _series(kernels, at_least=2)
    moved = np.array([np.linalg.norm(k - series[0]) for k in series])
    with np.errstate(invalid="ignore", divide="ignore"):
        radius = moved / moved[-1]
    angle = np.arccos(np.clip([similarity(k, series[0]) for k in series], -1.0, 1.0))
    return Polar(radius, angle)


def polar_trajectory(kernels, k: int = 20, eigen=None) -> PolarTrajectory:
    """``polar`` of the whole kernels, of their rank-k truncations and of the rest, as the
    authors' metrics script (top-20 eigenspace). ``eigen``: precomputed
    ``kernels.eigendecomposition`` of each kernel."""
    series = _series(kernels, at_least=2)
    parts = [truncate(kern, k, None if eigen is None else eigen[t]) for t, kern in enumerate(series)]
    return PolarTrajectory(polar(series), polar([p[0] for p in parts]), polar([p[1] for p in parts]))


def centre(kernel, n_outputs: int = 1) -> np.ndarray:
    """HKH with H = (I_n − 11ᵀ/n) ⊗ I_C: the kernel of the outputs with their mean over the n
    examples removed (for each pair of outputs of a full (n·C, n·C) kernel; H = I − 11ᵀ/n
    for one output or a traced kernel). Float64."""
    kernel = _matrix(kernel)
    if not attacks.is_count(n_outputs) or len(kernel) % n_outputs:
        raise ValueError(
            f"n_outputs must be a positive integer dividing the kernel's size {len(kernel)}, got {n_outputs!r}"
        )
    n, c = len(kernel) // n_outputs, n_outputs
    k = kernel.reshape(n, c, n, c)
    k = k - k.mean(axis=0, keepdims=True)
    k = k - k.mean(axis=2, keepdims=True)
    return k.reshape(n * c, n * c)


def _check_k(k, size: int):
    if not (attacks.is_count(k) and k <= size):
        raise ValueError(f"k must be an integer in 1..{size} (the kernel's size), got {k!r}")


MASS_RTOL = 1e-10  # below this share of ‖K‖² the remaining spectrum is rounding noise


def _mass(values, k: int, skip_top: bool, scale: float) -> float:
    """Σ_{i≤k} λ_i² / Σ_i λ_i² over the eigenvalues (descending), after the top one with
    ``skip_top``; NaN when the spectrum counted holds no mass (e.g. a centred constant)."""
    squares = np.asarray(values)[1:] ** 2 if skip_top else np.asarray(values) ** 2
    total = squares.sum()
    return float(squares[:k].sum() / total) if total > (MASS_RTOL * scale) ** 2 else float("nan")


def spectral_mass(kernels, k: int, centred: bool = False, skip_top: bool = False, n_outputs: int = 1) -> np.ndarray:
    """Top-k spectral mass M_k = Σ_{i≤k} λ_i² / Σ_i λ_i² of each kernel, (T,), eigenvalues
    in descending order (float64 eigendecomposition).

    ``centred``: of HKH (``centre``) rather than K, removing the constant mode that holds
    nearly all the mass of a one-output network's uncentred kernel. ``skip_top``: over
    λ_2, λ_3, … (the top eigenvalue set aside): Σ_{2≤i≤k+1} λ_i² / Σ_{i≥2} λ_i². When the
    spectrum counted is zero to rounding (relative ``MASS_RTOL`` of ‖K‖), M_k is NaN.
    """
    out = []
    for kern in _series(kernels):
        _check_k(k, len(kern) - skip_top)
        matrix = centre(kern, n_outputs) if centred else kern
        out.append(_mass(np.linalg.eigvalsh(matrix)[::-1], k, skip_top, np.linalg.norm(kern)))
    return np.array(out)


def _targets(targets, size: int) -> np.ndarray:
    """Y as a (size, columns) float64 matrix: (n, C) targets flattened to (n·C, 1) for a full
    kernel of size n·C, kept as (n, C) for a kernel of size n."""
    y = np.asarray(targets, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.shape[0] != size:
        y = y.reshape(-1, 1)
    if y.shape[0] != size:
        raise ValueError(
            f"targets of shape {np.shape(targets)} do not fit a kernel of size {size}: give "
            f"(n, C) targets for an (n, n) or (n·C, n·C) kernel"
        )
    return y


def target_alignment(kernels, targets, centred: bool = False, n_outputs: int = 1) -> np.ndarray:
    """Kernel–target alignment ⟨K, YYᵀ⟩ / (‖K‖ ‖YYᵀ‖) of each kernel, (T,) (Cristianini et
    al. 2002). For a full (n·C, n·C) kernel Y is the n·C vector of the flattened (n, C)
    targets (one-hot or ±1), for a traced (n, n) kernel the (n, C) matrix itself.
    ``centred``: with HKH and H YYᵀ H (Cortes et al. 2012), so the mean mode counts for
    nothing; ``n_outputs`` as in ``centre`` (C for a full kernel, 1 for a traced one)."""
    out = []
    for kern in _series(kernels):
        y = _targets(targets, len(kern))
        if centred:
            kern = centre(kern, n_outputs)
            y = centre(y @ y.T, n_outputs)
            target_norm = np.linalg.norm(y)
            out.append(np.vdot(kern, y) / (np.linalg.norm(kern) * target_norm))
            continue
        out.append(np.sum(y * (kern @ y)) / (np.linalg.norm(kern) * np.linalg.norm(y.T @ y)))
    return np.array(out)


def top_label_energy(kernels, targets, k: int, eigen=None) -> np.ndarray:
    """Share of the targets' energy in each kernel's top-k eigenvectors,
    Σ_{i≤k} ‖v_iᵀ Y‖² / ‖Y‖², (T,) (``spectral.label_energy`` at k; Y as in
    ``target_alignment``). ``eigen``: precomputed ``kernels.eigendecomposition`` of each kernel."""
    out = []
    for t, kern in enumerate(_series(kernels)):
        _check_k(k, len(kern))
        _, vectors = eigendecomposition(kern) if eigen is None else eigen[t]
        out.append(spectral.label_energy(vectors, _targets(targets, len(kern)))[k - 1])
    return np.array(out)


def kernel_metrics(kernels, targets, ks=(10, 20), n_outputs: int = 1, epochs=None) -> pd.DataFrame:
    """Every per-kernel metric of a sequence in one table, one row per kernel (``epochs``
    labels them), each kernel eigendecomposed once: ``relative_change`` (to K_0),
    ``cosine_distance``, ``velocity`` (S(K_{t−1}, K_t); NaN in the first row),
    ``alignment`` and ``alignment_centred``, and for each k: ``mass_top{k}`` (raw),
    ``mass_top{k}_centred``, ``mass_top{k}_after_first`` (top eigenvalue set aside) and
    ``label_energy_top{k}`` (``top_label_energy``). ``n_outputs``: C for full (n·C, n·C) kernels, 1 for traced ones."""
    series = _series(kernels)
    table = pd.DataFrame({"epoch": np.arange(len(series)) if epochs is None else np.asarray(epochs)})
    table["relative_change"] = [relative_change(series[0], kern) for kern in series]
    table["cosine_distance"] = cosine_distance(series)
    table["velocity"] = np.concatenate([[np.nan], velocity(series)]) if len(series) > 1 else np.nan
    table["alignment"] = target_alignment(series, targets)
    table["alignment_centred"] = target_alignment(series, targets, centred=True, n_outputs=n_outputs)
    eigen = [eigendecomposition(k) for k in series]
    centred_values = [np.linalg.eigvalsh(centre(k, n_outputs))[::-1] for k in series]
    for k in ks:
        _check_k(k, len(series[0]) - 1)
        norms = [np.linalg.norm(kern) for kern in series]
        table[f"mass_top{k}"] = [_mass(e[0], k, False, s) for e, s in zip(eigen, norms)]
        table[f"mass_top{k}_centred"] = [_mass(v, k, False, s) for v, s in zip(centred_values, norms)]
        table[f"mass_top{k}_after_first"] = [_mass(e[0], k, True, s) for e, s in zip(eigen, norms)]
        table[f"label_energy_top{k}"] = top_label_energy(series, targets, k, eigen=eigen)
    return table


# ------------------------------------------------------------------------- when does the kernel settle


def settling_epoch(kernels, epochs=None, threshold: float = 0.01) -> float:
    """The first recorded epoch t after which the kernel stays within ``threshold`` of its
    final direction: S(K_u, K_T) < threshold for every u ≥ t (S the kernel distance).
    NaN when the kernel never was that far from K_T (it did not move measurably, so there
    is nothing to settle). ``epochs`` labels the kernels (default 0, 1, …)."""
    series = _series(kernels, at_least=2)
    epochs = np.arange(len(series)) if epochs is None else np.asarray(epochs)
    distance = np.array([kernel_distance(k, series[-1]) for k in series])
    return _first_settled(distance < threshold, epochs)


def _first_settled(within, epochs) -> float:
    """The first epoch from which ``within`` is True to the end; NaN if it always was."""
    within = np.asarray(within, bool)
    if within.all():
        return float("nan")
    return float(epochs[np.flatnonzero(~within)[-1] + 1])


def direction_and_norm_settling(kernels, epochs=None, tolerance: float = 0.1) -> tuple[float, float]:
    """Two separate settling epochs of a kernel sequence: of its direction, the first epoch
    after which the cosine distance to K_0, S(K_t, K_0), stays within ``tolerance`` (relative)
    of its final value, and of its size, after which ‖K_t‖ stays within a factor
    1 ± ``tolerance`` of ‖K_T‖. NaN for a quantity that never left that band (it did not move)."""
    series = _series(kernels, at_least=2)
    epochs = np.arange(len(series)) if epochs is None else np.asarray(epochs)
    turned = cosine_distance(series)
    norms = np.array([np.linalg.norm(k) for k in series])
    if turned[-1] <= 0:
        direction = float("nan")
    else:
        direction = _first_settled(np.abs(turned - turned[-1]) <= tolerance * turned[-1], epochs)
    size = _first_settled(np.abs(norms / norms[-1] - 1) <= tolerance, epochs)
    return direction, size


def settling_summary(
    kernels, epochs=None, threshold: float = 0.01, tolerance: float = 0.1, k: int = 10, n_outputs: int = 1
) -> dict:
    """The settling measurements of one kernel sequence, as a row: ``settling_epoch``
    (test 1), ``direction_epoch`` and ``norm_epoch`` (``direction_and_norm_settling``) and
    ``direction_and_norm_epoch``, the later of the two (test 2; NaN if either is), how far
    the kernel turned, ``turned`` = S(K_0, K_T), its size change ``norm_ratio`` = ‖K_T‖ / ‖K_0‖,
    and ``outside_top{k}``, the centred spectral mass outside the top-k eigenspace,
    1 − M_k(HKH), at the first and last kernels (``_start``, ``_end``; test 4)."""
    series = _series(kernels, at_least=2)
    direction, size = direction_and_norm_settling(series, epochs, tolerance)
    outside = 1 - spectral_mass([series[0], series[-1]], k, centred=True, n_outputs=n_outputs)
    return {
        "settling_epoch": settling_epoch(series, epochs, threshold),
        "direction_epoch": direction,
        "norm_epoch": size,
        "direction_and_norm_epoch": float(np.max([direction, size])),
        "turned": kernel_distance(series[0], series[-1]),
        "norm_ratio": float(np.linalg.norm(series[-1]) / np.linalg.norm(series[0])),
        f"outside_top{k}_start": float(outside[0]),
        f"outside_top{k}_end": float(outside[1]),
    }
