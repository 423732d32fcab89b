"""Kernel regression with a kernel and its gradient flow f_t: ``KernelPredictor`` fits once
and predicts f_∞ or f_t anywhere, and gives the attacks a differentiable ``logits_fn``.

Training-time convention (the same as ``neural_tangents.predict.gradient_descent_mse``):
the loss is 0.5 * mean((f(X) - Y)^2) over all N x C entries, and ``t`` is
learning rate x number of steps, so gradient flow gives

    f_t(x) = Θ(x, X) Θ⁻¹ (I - exp(-Θ t / (N C))) Y,    f_∞(x) = Θ(x, X) Θ⁻¹ Y.
"""

from __future__ import annotations

import warnings
from functools import cached_property, lru_cache

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax.tree_util import Partial

from ntk_notes.kernels import eigendecomposition, fitted_fraction, kernel_block, kernel_matrix
from ntk_notes.progress import progress


class KernelPredictor:
    """Kernel regression with a fixed training set: fit once, predict f_∞ or f_t anywhere.

    The training system is solved once (Cholesky in float64 on the host, with a jitter that
    starts at zero and grows only if the factorisation fails); the eigendecomposition needed
    by f_t is computed on first use. ``logits_fn(t)`` gives a jax function of the inputs
    alone, whose gradient costs one pass through Θ(x, X): attacks never re-solve anything.

    With the kernel 1 + x·x′ on two points, f_∞ is the line through them; f_t at t = 4 has
    fitted only part of the targets (the small eigenvalue, 0.38, is barely fitted):

    >>> import numpy as np
    >>> kernel_fn = lambda x1, x2, get="ntk": 1.0 + x1 @ x2.T  # any kernel_fn(x1, x2, get)
    >>> predictor = KernelPredictor(kernel_fn, np.array([[0.0], [1.0]]), np.array([[-1.0], [1.0]]))
    >>> x = np.array([[0.0], [0.75]])
    >>> predictor.predict(x).round(6).tolist(), predictor.predict(x, t=4.0).round(3).tolist()
    ([[-1.0], [0.5]], [[-0.456], [0.382]])
    >>> predictor.eigen[0].round(3).tolist(), predictor.logits_fn()(x).tolist()
    ([2.618, 0.382], [[-1.0], [0.5]])
    """

    def __init__(self, kernel_fn, x_train, y_train, k_train_train=None, batch_size: int = 256, float64: bool = False):
        if float64 and not jax.config.jax_enable_x64:
            raise ValueError(
                "float64=True needs 64-bit jax: call jax.config.update('jax_enable_x64', True) "
                "before building the predictor"
            )
        self.dtype = jnp.float64 if float64 else jnp.float32
        x_train, y_train = jnp.asarray(x_train, self.dtype), np.asarray(y_train, dtype=np.float64)
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

    @property
    def n_outputs(self) -> int:
        return self.y_train.shape[1]

    def check_inputs(self, x) -> jnp.ndarray:
        """``x`` as an array of the predictor's dtype, or a ValueError if its images do not have
        the training images' shape."""
        x = jnp.asarray(x, self.dtype)
        if x.shape[1:] != self.x_train.shape[1:]:
            raise ValueError(
                f"inputs of shape {x.shape} do not match the training images: "
                f"expected (n,) + {tuple(self.x_train.shape[1:])}"
            )
        return x

    def _factorise(self):
        scale = float(np.mean(np.diag(self.k_train_train)))
        for jitter in [0.0] + [scale * 10.0**p for p in range(-10, -1)]:
            try:
                factor = scipy.linalg.cho_factor(self.k_train_train + jitter * np.eye(len(self.k_train_train)))
            except np.linalg.LinAlgError:
                continue
            if jitter:
                warnings.warn(
                    f"the training kernel is not numerically positive definite; added a jitter "
                    f"of {jitter:.3g} ({jitter / scale:.0e} x its mean diagonal) to its diagonal",
                    stacklevel=3,
                )
            self.jitter = jitter
            return factor
        raise np.linalg.LinAlgError(
            "the training kernel could not be factorised even with a jitter of "
            f"1e-2 x its mean diagonal ({scale * 1e-2:.3g})"
        )

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
        # (1 - e^{-λt/NC}) / λ without cancellation for small λt; t / NC at λ ≤ 0.
        positive = values > 0
        gain = np.where(
            positive,
            fitted_fraction(values, t, self.n_outputs) / np.where(positive, values, 1.0),
            t / self.y_train.size,
        )
        return vectors @ (gain[:, None] * (vectors.T @ targets))

    def logits_fn(self, t: float | None = None) -> Partial:
        """x -> f_t(x) (or f_∞(x)), jit-compiled and differentiable in x. Its cost is one pass
        through Θ(x, X): the training system was solved once, in ``__init__``.

        It is a ``jax.tree_util.Partial`` holding X and the weights as its leaves, so a jitted
        attack receives them as arguments instead of baking them in as constants.
        """
        return Partial(
            _kernel_logits(self.kernel_fn, self.dtype), self.x_train, jnp.asarray(self.weights(t), dtype=self.dtype)
        )

    def predict(
        self,
        x,
        t: float | None = None,
        k_test_train=None,
        f0_train=None,
        f0_test=None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """f_t(x) for a whole test set, shape (n, C), float64.

        The test set goes through in batches of ``batch_size`` (a progress bar for more than a
        handful), so memory stays at one batch's kernel; a precomputed ``k_test_train`` skips that.
        With a network's initial outputs ``f0_train`` = f_0(X) and ``f0_test`` = f_0(x), this is
        the infinite-width limit of *that* network trained for time t (its linearisation with
        Θ): f_0(x) + Θ(x, X) Θ⁻¹ (I - e^{-Θt/(NC)}) (Y - f_0(X)). Without them f_0 = 0, the
        mean over initialisations.
        """
        if (f0_train is None) != (f0_test is None):
            raise ValueError("give both f0_train and f0_test, or neither")
        weights = (
            self.weights(t)
            if f0_train is None
            else self.weights(t, self.y_train - np.asarray(f0_train, dtype=np.float64))
        )
        offset = 0.0 if f0_test is None else np.asarray(f0_test, dtype=np.float64)
        if k_test_train is not None:
            k_test_train = np.asarray(k_test_train, dtype=np.float64)
            if k_test_train.ndim != 2 or k_test_train.shape[1] != len(self.x_train):
                raise ValueError(
                    f"k_test_train has shape {k_test_train.shape}; the predictor needs (n, "
                    f"{len(self.x_train)}), one column per training point"
                )
            return offset + k_test_train @ weights
        x = self.check_inputs(x)
        starts = range(0, len(x), self.batch_size)
        if show_progress is None and len(starts) <= 8:
            show_progress = False
        out = np.empty((len(x), self.n_outputs))
        for i in progress(starts, desc=f"predicting {len(x)} inputs", enabled=show_progress):
            block = kernel_block(self.kernel_fn, x[i : i + self.batch_size], self.x_train, self.batch_size)
            out[i : i + self.batch_size] = np.asarray(block, dtype=np.float64) @ weights
        return offset + out


@lru_cache(maxsize=32)
def _kernel_logits(kernel_fn, dtype):
    @jax.jit
    def logits(x_train, weights, x):
        if x.shape[1:] != x_train.shape[1:]:  # shapes are static: this runs at trace time
            raise ValueError(
                f"images of shape {tuple(x.shape[1:])} do not match the training images' {tuple(x_train.shape[1:])}"
            )
        return kernel_fn(x.astype(dtype), x_train, "ntk").astype(dtype) @ weights

    return logits
