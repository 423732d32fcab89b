"""The spectrum of a kernel matrix and how the labels sit in it."""

from __future__ import annotations

import numpy as np


def eigendecomposition(kernel) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues in descending order and the matching eigenvectors (columns), float64."""
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"kernel must be a square matrix, got shape {kernel.shape}")
    values, vectors = np.linalg.eigh(kernel)
    return values[::-1], vectors[:, ::-1]


def label_energy(vectors, targets) -> np.ndarray:
    """Cumulative share of the targets' energy in the top-k eigenvectors, for k = 1..N:
    E_k = Σ_{i≤k} ‖v_iᵀ Y‖² / ‖Y‖²."""
    targets = np.asarray(targets, dtype=np.float64).reshape(len(vectors), -1)
    projections = np.sum((np.asarray(vectors).T @ targets) ** 2, axis=1)
    return np.cumsum(projections) / np.sum(targets ** 2)
