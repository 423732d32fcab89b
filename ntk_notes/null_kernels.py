"""Kernels that are no neural tangent kernel, as baselines: the linear and the RBF kernel.

Each has the signature of a stax ``kernel_fn(x1, x2, get)``, so every routine of
``ntk_notes.kernels`` and ``ntk_notes.spectral`` that takes a kernel takes them.
"""

from __future__ import annotations

from functools import lru_cache

import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

NULL_KERNELS = ("linear", "rbf")


def _linear_kernel(x1, x2, get="ntk"):
    a, b = x1.reshape(len(x1), -1), x2.reshape(len(x2), -1)
    return a @ b.T / a.shape[1]


def _rbf_kernel(bandwidth, x1, x2, get="ntk"):
    a, b = x1.reshape(len(x1), -1), x2.reshape(len(x2), -1)
    # ‖a − b‖² expanded, clipped at 0 against rounding; its gradient stays finite on the diagonal.
    squared = jnp.maximum(jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :] - 2 * a @ b.T, 0.0)
    return jnp.exp(-squared / (2 * bandwidth**2))


@lru_cache(maxsize=16)
def null_kernel(name: str, bandwidth: float | None = None):
    """A kernel that is no neural tangent kernel, for baselines, with the signature of a stax
    ``kernel_fn(x1, x2, get)`` so that every routine taking a kernel takes it (``get`` is
    ignored): ``linear``, x·x′ / d; ``rbf``, exp(−‖x − x′‖² / 2σ²) with σ = ``bandwidth``
    (``median_bandwidth`` gives the usual choice)."""
    if name not in NULL_KERNELS:
        raise ValueError(f"unknown null kernel {name!r}; allowed: {', '.join(NULL_KERNELS)}")
    if name == "linear":
        if bandwidth is not None:
            raise ValueError("the linear kernel takes no bandwidth")
        return _linear_kernel
    if bandwidth is None or not np.isfinite(bandwidth) or bandwidth <= 0:
        raise ValueError(f"the rbf kernel needs a positive bandwidth, got {bandwidth!r}")
    return Partial(_rbf_kernel, float(bandwidth))


def median_bandwidth(x) -> float:
    """The median distance between distinct images of ``x``: the usual RBF bandwidth."""
    flat = np.asarray(x, np.float64).reshape(len(x), -1)
    squared = np.sum(flat**2, 1)[:, None] + np.sum(flat**2, 1)[None, :] - 2 * flat @ flat.T
    return float(np.sqrt(np.median(np.maximum(squared[np.triu_indices(len(flat), 1)], 0.0))))
