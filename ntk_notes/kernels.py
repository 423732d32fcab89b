"""Architectures, their infinite-width kernels, and the kernel predictor.

Architectures follow the paper's authors: ReLU, W_std = sqrt(2), b_std = 0.1, NTK
parameterization. ``architecture`` returns the neural-tangents triple
``(init_fn, apply_fn, kernel_fn)``.

Training-time convention (the same as ``neural_tangents.predict.gradient_descent_mse``):
the loss is 0.5 * mean((f(X) - Y)^2) over all N x C entries, and ``t`` is
learning rate x number of steps, so gradient flow gives

    f_t(x) = Θ(x, X) Θ⁻¹ (I - exp(-Θ t / (N C))) Y,    f_∞(x) = Θ(x, X) Θ⁻¹ Y.
"""

from __future__ import annotations

import warnings
from functools import cached_property

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from neural_tangents import stax

from ntk_notes.progress import progress
from ntk_notes.spectral import eigendecomposition

ARCHITECTURES = ("fc", "conv", "myrtle")
MYRTLE_STAGES = {5: (2, 1, 1), 7: (2, 2, 2), 10: (3, 3, 3)}  # conv layers before each 2x2 pool
PARAMETERIZATIONS = ("ntk", "standard")


def architecture(name: str, depth: int = 1, width: int = 512, n_out: int = 1, W_std: float = 2 ** 0.5,
                 b_std: float = 0.1, parameterization: str = "ntk"):
    """The stax triple ``(init_fn, apply_fn, kernel_fn)`` of a named architecture.

    - ``fc``: Flatten -> depth x [Dense(width), Relu] -> Dense(n_out)
    - ``conv``: depth x [Conv(width, 3x3, SAME), Relu] -> Flatten -> Dense(n_out)
    - ``myrtle``: Myrtle-5/7/10 (Shankar et al. 2020), ``depth`` in 5, 7, 10: three stages
      of 3x3 conv + Relu layers, each followed by 2x2 average pooling, then global average
      pooling and Dense(n_out).
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; allowed: {', '.join(ARCHITECTURES)}")
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"unknown parameterization {parameterization!r}; allowed: {', '.join(PARAMETERIZATIONS)}")
    if name == "myrtle" and depth not in MYRTLE_STAGES:
        raise ValueError(f"Myrtle depth {depth!r} is not allowed: one of {', '.join(map(str, MYRTLE_STAGES))}")
    if name != "myrtle" and (not isinstance(depth, int) or depth < 1):
        raise ValueError(f"depth {depth!r} is not allowed: a positive integer")
    dense = lambda n: stax.Dense(n, W_std, b_std, parameterization=parameterization)  # noqa: E731
    conv = lambda: stax.Conv(width, (3, 3), padding="SAME", W_std=W_std, b_std=b_std,  # noqa: E731
                             parameterization=parameterization)
    if name == "fc":
        layers = [stax.Flatten()] + [dense(width), stax.Relu()] * depth + [dense(n_out)]
    elif name == "conv":
        layers = [conv(), stax.Relu()] * depth + [stax.Flatten(), dense(n_out)]
    else:
        layers = []
        for n_convs in MYRTLE_STAGES[depth]:
            layers += [conv(), stax.Relu()] * n_convs + [stax.AvgPool((2, 2), strides=(2, 2), padding="SAME")]
        layers += [stax.GlobalAvgPool(), dense(n_out)]
    return stax.serial(*layers)


def kernel_matrix(kernel_fn, x1, x2=None, batch_size: int = 256, show_progress: bool | None = None,
                  get: str = "ntk") -> np.ndarray:
    """Θ(x1, x2) computed in blocks of ``batch_size`` x ``batch_size``, as a host array of the
    kernel's dtype (float32, or float64 with ``jax_enable_x64`` and float64 inputs).

    A progress bar is shown for more than a handful of blocks (``show_progress=None``),
    always (True) or never (False).
    """
    x2_is_x1 = x2 is None
    x2 = x1 if x2_is_x1 else x2
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    compute = jax.jit(kernel_fn, static_argnames="get")
    rows = range(0, len(x1), batch_size)
    cols = range(0, len(x2), batch_size)
    blocks = [(i, j) for i in rows for j in cols if not (x2_is_x1 and j < i)]
    out = None
    if show_progress is None and len(blocks) <= 8:
        show_progress = False
    for i, j in progress(blocks, desc=f"{get} kernel {len(x1)}x{len(x2)}", enabled=show_progress):
        block = np.asarray(compute(x1[i:i + batch_size], x2[j:j + batch_size], get=get))
        if out is None:
            out = np.empty((len(x1), len(x2)), dtype=block.dtype)
        out[i:i + batch_size, j:j + batch_size] = block
        if x2_is_x1 and j > i:  # symmetric: fill the mirror block instead of computing it
            out[j:j + batch_size, i:i + batch_size] = block.T
    return out


class KernelPredictor:
    """Kernel regression with a fixed training set: fit once, predict f_∞ or f_t anywhere.

    The training system is solved once (Cholesky in float64 on the host, with a jitter that
    starts at zero and grows only if the factorisation fails); the eigendecomposition needed
    by f_t is computed on first use. ``logits_fn(t)`` gives a jax function of the inputs
    alone, whose gradient costs one pass through Θ(x, X): attacks never re-solve anything.
    """

    def __init__(self, kernel_fn, x_train, y_train, k_train_train=None, batch_size: int = 256):
        x_train, y_train = jnp.asarray(x_train), np.asarray(y_train, dtype=np.float64)
        if y_train.ndim != 2 or y_train.shape[0] != x_train.shape[0]:
            raise ValueError(f"y_train must have shape ({x_train.shape[0]}, C), got {y_train.shape}")
        self.kernel_fn, self.x_train, self.y_train = kernel_fn, x_train, y_train
        self.batch_size = batch_size
        if k_train_train is None:
            k_train_train = kernel_matrix(kernel_fn, x_train, batch_size=batch_size)
        self.k_train_train = np.asarray(k_train_train, dtype=np.float64)
        if self.k_train_train.shape != (len(x_train), len(x_train)):
            raise ValueError(f"k_train_train must have shape {(len(x_train),) * 2}, got {self.k_train_train.shape}")
        self.jitter = 0.0
        self._cholesky = self._factorise()

    def _factorise(self):
        scale = float(np.mean(np.diag(self.k_train_train)))
        for jitter in [0.0] + [scale * 10.0 ** p for p in range(-10, -1)]:
            try:
                factor = scipy.linalg.cho_factor(self.k_train_train + jitter * np.eye(len(self.k_train_train)))
            except np.linalg.LinAlgError:
                continue
            if jitter:
                warnings.warn(f"the training kernel is not numerically positive definite; added a jitter "
                              f"of {jitter:.3g} ({jitter / scale:.0e} x its mean diagonal) to its diagonal",
                              stacklevel=3)
            self.jitter = jitter
            return factor
        raise np.linalg.LinAlgError("the training kernel could not be factorised even with a jitter of "
                                    f"1e-2 x its mean diagonal ({scale * 1e-2:.3g})")

    @cached_property
    def alpha(self) -> np.ndarray:
        """Θ⁻¹ Y, the weights of f_∞ (float64, shape (N, C))."""
        return scipy.linalg.cho_solve(self._cholesky, self.y_train)

    @cached_property
    def eigen(self) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues (descending) and eigenvectors (columns) of Θ(X, X) + jitter, float64."""
        return eigendecomposition(self.k_train_train + self.jitter * np.eye(len(self.k_train_train)))

    def weights(self, t: float | None = None, targets=None) -> np.ndarray:
        """W with f_t(x) = Θ(x, X) W: Θ⁻¹ Y for t=None (f_∞), else Θ⁻¹ (I - e^{-Θt/(NC)}) Y.

        ``targets`` replaces Y (e.g. the residual Y - f_0(X) of a network's initial function).
        """
        targets = self.y_train if targets is None else np.asarray(targets, dtype=np.float64)
        if t is None:
            return self.alpha if targets is self.y_train else scipy.linalg.cho_solve(self._cholesky, targets)
        if t < 0:
            raise ValueError(f"training time t must be >= 0 or None, got {t!r}")
        values, vectors = self.eigen
        rate = np.maximum(values, 0.0) / self.y_train.size
        # (1 - e^{-λt/NC}) / λ without cancellation for small λt.
        gain = np.where(rate > 0, -np.expm1(-rate * t) / np.where(values > 0, values, 1.0), t / self.y_train.size)
        return vectors @ (gain[:, None] * (vectors.T @ targets))

    def logits_fn(self, t: float | None = None, dtype=jnp.float32):
        """A jit-compiled function x -> f_t(x) (or f_∞(x)), differentiable in x."""
        w = jnp.asarray(self.weights(t), dtype=dtype)
        x_train, kernel_fn = self.x_train, self.kernel_fn

        @jax.jit
        def logits(x):
            return kernel_fn(x, x_train, "ntk").astype(dtype) @ w

        return logits

    def predict(self, x, t: float | None = None, k_test_train=None, f0_train=None, f0_test=None) -> np.ndarray:
        """f_t(x) for a whole test set (in batches), shape (n, C).

        With a network's initial outputs ``f0_train`` = f_0(X) and ``f0_test`` = f_0(x), this is
        the infinite-width limit of *that* network trained for time t (its linearisation with
        Θ): f_0(x) + Θ(x, X) Θ⁻¹ (I - e^{-Θt/(NC)}) (Y - f_0(X)). Without them f_0 = 0, the
        mean over initialisations.
        """
        if (f0_train is None) != (f0_test is None):
            raise ValueError("give both f0_train and f0_test, or neither")
        if k_test_train is None:
            k_test_train = kernel_matrix(self.kernel_fn, jnp.asarray(x), self.x_train, batch_size=self.batch_size)
        k_test_train = np.asarray(k_test_train, dtype=np.float64)
        if f0_train is None:
            return k_test_train @ self.weights(t)
        residual = self.y_train - np.asarray(f0_train, dtype=np.float64)
        return np.asarray(f0_test, dtype=np.float64) + k_test_train @ self.weights(t, residual)


def accuracy(outputs, labels) -> float:
    """Accuracy of outputs (n, 1) thresholded at 0, or (n, C) by argmax, against class indices."""
    outputs = np.asarray(outputs)
    predicted = (outputs[:, 0] > 0).astype(np.int64) if outputs.shape[1] == 1 else outputs.argmax(axis=1)
    return float(np.mean(predicted == np.asarray(labels)))
