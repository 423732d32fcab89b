"""The infinite-width NNGP and NTK of fully connected ReLU networks in closed form.

neural-tangents' ``kernel_fn`` of Flatten → depth x [Dense, Relu] → Dense spends most of its
time in one elementwise arc-cosine pass over the N1 x N2 entries (``benchmarks/bench_kernel.py``),
because XLA's ``arctan2``/``arccos`` on CPU is not vectorised. ``FcReluKernel`` computes the
same kernels from the Gram matrix X1 X2ᵀ by the arc-cosine recursion (Cho & Saul 2009; Jacot et
al. 2018), with a vectorisable polynomial arc-cosine in float32 (Abramowitz & Stegun 4.4.46) and
the exact ``jnp.arccos`` in float64. With cos θ = K12 / sqrt(K11 K22), J1 = sin θ + (π − θ) cos θ
and J0 = π − θ, each ReLU followed by Dense maps

    K12 → W² sqrt(K11 K22) J1 / (2π) + b²,   K11 → W² K11 / 2 + b²,
    Θ   → K' + W² Θ J0 / (2π)                                (NTK parameterization),
    Θ   → n_in sqrt(K11 K22) J1 / (2π) + W² Θ J0 / (2π) + 1   (standard; n_in its fan-in),

from the first Dense layer's K = W² x1·x2 / d + b² and Θ = K (standard: Θ = x1·x2 + 1).
Derivatives follow neural-tangents' conventions: dJ1/d cos θ = J0 (finite everywhere), and
dθ/d cos θ = −1/sin θ except at cos θ = ±1 (coincident or opposite inputs), where it is 0.
cos θ within ``SNAP`` ulp of 1 counts as 1: a point with itself then gets its exact kernel
(neural-tangents' is off by up to ~2e-4 in float32 there, from rounding amplified by arccos).

``architectures.architecture("fc", ...)`` returns an ``FcReluKernel`` as its ``kernel_fn``;
any call it does not cover (``get`` other than "nngp", "ntk" or a tuple of them, a
neural-tangents ``Kernel`` as input, extra keyword arguments) goes to neural-tangents'
``kernel_fn`` unchanged, which stays the reference (tests/test_fc_kernel.py).
"""

from __future__ import annotations

import collections
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np

KINDS = ("nngp", "ntk")
SNAP = 16  # cos θ within this many ulp of 1 counts as 1 (see _relu_moments)
# Abramowitz & Stegun 4.4.46: arccos(x) = sqrt(1 - x) * poly(x) on [0, 1], |error| <= 2e-8 in
# exact arithmetic (~5e-7 after float32 rounding); highest power first, for Horner's rule.
_ARCCOS_POLY = (
    -0.0012624911,
    0.0066700901,
    -0.0170881256,
    0.0308918810,
    -0.0501743046,
    0.0889789874,
    -0.2145988016,
    1.5707963050,
)


def polynomial_arccos(c):
    """arccos(c) for c in [-1, 1] by Abramowitz & Stegun 4.4.46, reflected for c < 0
    (arccos(c) = π − arccos(−c)): one square root and 8 multiply-adds, which vectorise; max
    error ~5e-7 in float32. Returns an array of c's shape and dtype."""
    a = jnp.abs(c)
    poly = jnp.zeros_like(a)
    for coefficient in _ARCCOS_POLY:
        poly = poly * a + coefficient
    half = jnp.sqrt(1 - a) * poly
    return jnp.where(c < 0, jnp.pi - half, half)


def _root_and_inverse(variance):
    """sqrt(variance) and 1 / sqrt(variance), both 0 where the variance is 0 (a zero input
    without bias), with finite derivatives there."""
    positive = variance > 0
    root = jnp.sqrt(jnp.where(positive, variance, 1))
    return jnp.where(positive, root, 0), jnp.where(positive, 1 / root, 0)


def _relu_moments(k12, k11, k22, polynomial):
    (r1, inv1), (r2, inv2) = _root_and_inverse(k11), _root_and_inverse(k22)
    cos = k12 * inv1[:, None] * inv2[None, :]
    # A point with itself comes out within ±4 ulp of cos θ = 1 (the Gram entry and the norms
    # round differently), and arccos turns that into θ ~ sqrt(ulp): up to 2e-4 of the float32
    # NTK. Within SNAP ulp of 1 it is taken as 1: angles below sqrt(2 SNAP ulp) (2e-3 in
    # float32, 6e-8 in float64) are not resolved by a Gram matrix anyway.
    cos = jnp.where(cos > 1 - SNAP * jnp.finfo(cos.dtype).eps, 1, jnp.clip(cos, -1, 1))
    j0 = jnp.pi - (polynomial_arccos(cos) if polynomial else jnp.arccos(cos))
    spread = (r1[:, None] * r2[None, :]) * jnp.sqrt(1 - cos * cos)  # sqrt(k11 k22) sin θ
    # sqrt(k11 k22) J1 = spread + J0 k12: k12 rather than sqrt(k11 k22) cos θ, exact at |cos θ| = 1
    return (spread + j0 * k12) * (1 / (2 * np.pi)), j0 * (1 / (2 * np.pi)), (cos, spread, inv1, inv2)


@partial(jax.custom_jvp, nondiff_argnums=(3,))
def relu_moments(k12, k11, k22, polynomial: bool = False):
    """(E[relu(u) relu(v)], E[relu'(u) relu'(v)]) = (sqrt(k11 k22) J1 / (2π), J0 / (2π)) for
    centred Gaussian (u, v) of covariance k12 (n1, n2) and variances k11 (n1,), k22 (n2,), with
    cos θ = k12 / sqrt(k11 k22) clipped to [-1, 1]; ``polynomial`` picks ``polynomial_arccos``
    over the exact ``jnp.arccos``. Returns two (n1, n2) arrays.

    Derivatives in closed form, without the cancellations of differentiating through cos θ:
    d(sqrt(k11 k22) J1) = J0 dk12 + sqrt(k11 k22) sin θ (dk11 / 2k11 + dk22 / 2k22), and
    dJ0 = d cos θ / sin θ, left out (0) where sin θ = 0, as neural-tangents does."""
    return _relu_moments(k12, k11, k22, polynomial)[:2]


@relu_moments.defjvp
def _relu_moments_jvp(polynomial, primals, tangents):
    (dk12, dk11, dk22) = tangents
    relu, dot, (cos, spread, inv1, inv2) = _relu_moments(*primals, polynomial)
    log_scale = (0.5 * inv1 * inv1 * dk11)[:, None] + (0.5 * inv2 * inv2 * dk22)[None, :]  # d log sqrt(k11 k22)
    d_relu = (2 * np.pi * dot * dk12 + spread * log_scale) * (1 / (2 * np.pi))
    d_cos = dk12 * inv1[:, None] * inv2[None, :] - cos * log_scale
    sin = jnp.sqrt(1 - cos * cos)
    inverse_sin = jnp.where(sin > 0, 1 / jnp.where(sin > 0, sin, 1), 0)
    return (relu, dot), (d_relu, d_cos * inverse_sin * (1 / (2 * np.pi)))


# Rows of x1 go through in blocks of about this many kernel entries (a 4096 x 4096 kernel in
# one piece): blocks bound the memory of large kernels, but cost speed (measured on 2 idle
# cores, N = 4000 MNIST, the NTK against the Gram X Xᵀ alone: 1.20x in one piece, 1.46x in
# blocks of 2^21 entries, 1.48x of 2^19, 1.87x of 2^17).
BLOCK_ENTRIES = 2**24


def fc_relu_kernels(
    x1,
    x2=None,
    depth: int = 1,
    W_std: float = 2**0.5,
    b_std: float | None = 0.1,
    parameterization: str = "ntk",
    width: int = 512,
    ntk: bool = True,
    polynomial: bool | None = None,
    block_entries: int = BLOCK_ENTRIES,
):
    """(NNGP, NTK) of Flatten → depth x [Dense(width), Relu] → Dense, each (n1, n2) in the
    inputs' floating dtype, float32 for float32 inputs even under ``jax_enable_x64`` (where
    neural-tangents returns float64); NTK None when ``ntk`` is False. x2=None means x2 = x1
    (its diagonal, cos θ = 1 up to rounding, is snapped to 1: see ``SNAP``). ``width`` matters
    in the standard parameterization only. Inputs (n, ...) are flattened. ``polynomial``
    (default: in float32 only) picks ``polynomial_arccos`` over the exact ``jnp.arccos``.

    The rows of x1 go through in blocks of about ``block_entries`` entries (``lax.map``), so
    that a large kernel's intermediate N1 x N2 arrays never exist whole; below that size the
    kernel is one piece, which is faster (see ``BLOCK_ENTRIES``)."""
    dtype = jnp.promote_types(jnp.result_type(x1) if x2 is None else jnp.result_type(x1, x2), jnp.float32)
    a = jnp.reshape(x1, (len(x1), -1)).astype(dtype)
    b = a if x2 is None else jnp.reshape(x2, (len(x2), -1)).astype(dtype)
    dim = a.shape[1]
    polynomial = dtype == jnp.float32 if polynomial is None else polynomial
    w_var, b_var = W_std**2, (0.0 if b_std is None else b_std**2)
    bias_ntk = 0.0 if b_std is None else 1.0  # the standard parameterization's bias term
    k22 = [(w_var / dim) * jnp.sum(b * b, axis=1) + b_var]  # per layer: a vector, computed once
    for _ in range(depth):
        k22.append(w_var * k22[-1] / 2 + b_var)

    def rows(a_rows):
        gram = a_rows @ b.T
        k12 = (w_var / dim) * gram + b_var
        k11 = (w_var / dim) * jnp.sum(a_rows * a_rows, axis=1) + b_var
        theta = (k12 if parameterization == "ntk" else gram + bias_ntk) if ntk else None
        for layer in range(depth):
            relu, dot = relu_moments(k12, k11, k22[layer], polynomial)
            if ntk:
                carried = w_var * theta * dot
                theta = carried + (w_var * relu + b_var if parameterization == "ntk" else width * relu + bias_ntk)
            k12 = w_var * relu + b_var
            k11 = w_var * k11 / 2 + b_var
        return (k12,) if theta is None else (k12, theta)

    n1 = len(a)
    block = max(1, block_entries // max(len(b), 1))
    if n1 <= block:
        out = rows(a)
    else:
        n_blocks = -(-n1 // block)
        padded = jnp.concatenate([a, jnp.zeros((n_blocks * block - n1, dim), dtype)])
        stacked = jax.lax.map(rows, padded.reshape(n_blocks, block, dim))
        out = tuple(k.reshape(n_blocks * block, -1)[:n1] for k in stacked)
    return out[0].astype(dtype), out[1].astype(dtype) if ntk else None


@lru_cache(maxsize=8)
def _named(get: tuple):
    return collections.namedtuple("AnalyticKernel", get)  # the name neural-tangents uses


def _canonical_get(get):
    """("nngp",) / ("ntk",) / a tuple of both for a string or tuple ``get`` this module covers
    (with whether to unwrap a single result), else None."""
    if isinstance(get, str):
        return ((get.lower(),), True) if get.lower() in KINDS else None
    if isinstance(get, (tuple, list)) and get and all(isinstance(g, str) for g in get):
        kinds = tuple(g.lower() for g in get)
        if set(kinds) <= set(KINDS) and len(set(kinds)) == len(kinds):
            return kinds, False
    return None


class FcReluKernel:
    """A stax-compatible ``kernel_fn(x1, x2=None, get=None, **kwargs)`` for the FC ReLU
    architecture: "nngp", "ntk" or a tuple of them on array inputs are computed by
    ``fc_relu_kernels`` (a tuple as a namedtuple, as neural-tangents returns);
    every other call goes to ``reference``, neural-tangents' ``kernel_fn`` of the same network."""

    def __init__(self, reference, depth: int, W_std: float, b_std, parameterization: str, width: int):
        if parameterization not in ("ntk", "standard"):
            raise ValueError(f"unknown parameterization {parameterization!r}; allowed: ntk, standard")
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth {depth!r} is not allowed: a positive integer")
        self.reference = reference
        self.spec = dict(depth=depth, W_std=W_std, b_std=b_std, parameterization=parameterization, width=width)
        self.__name__ = f"fc_relu_kernel_depth{depth}"

    def __repr__(self):
        return "FcReluKernel(" + ", ".join(f"{k}={v!r}" for k, v in self.spec.items()) + ")"

    def __call__(self, x1, x2=None, get=None, **kwargs):
        """The kernel(s) named by ``get`` between x1 (n1, ...) and x2 (n2, ...) (x2=None: x1)."""
        kinds = _canonical_get(get)
        arrays = all(isinstance(x, (np.ndarray, jax.Array)) for x in (x1, x2) if x is not None)
        if kinds is None or kwargs or not arrays:
            return self.reference(x1, x2, get, **kwargs)
        kinds, single = kinds
        if np.ndim(x1) < 2 or (x2 is not None and np.ndim(x2) < 2):
            shapes = np.shape(x1) if x2 is None else (np.shape(x1), np.shape(x2))
            raise ValueError(f"inputs must be batches of shape (n, ...) with n >= 1 features, got {shapes}")
        if x2 is not None and np.shape(x1)[1:] != np.shape(x2)[1:]:
            raise ValueError(f"x1 of shape {np.shape(x1)} and x2 of shape {np.shape(x2)} differ beyond the batch axis")
        nngp, ntk = fc_relu_kernels(x1, x2, ntk="ntk" in kinds, **self.spec)
        values = {"nngp": nngp, "ntk": ntk}
        return values[kinds[0]] if single else _named(kinds)(*(values[k] for k in kinds))
