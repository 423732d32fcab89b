"""Infinite-width kernels as matrices (in batches, or in resumable blocks) and the kernel
predictor. The architectures and their ``kernel_fn`` come from ``ntk_notes.architectures``.

Training-time convention (the same as ``neural_tangents.predict.gradient_descent_mse``):
the loss is 0.5 * mean((f(X) - Y)^2) over all N x C entries, and ``t`` is
learning rate x number of steps, so gradient flow gives

    f_t(x) = Θ(x, X) Θ⁻¹ (I - exp(-Θ t / (N C))) Y,    f_∞(x) = Θ(x, X) Θ⁻¹ Y.
"""

from __future__ import annotations

import warnings
from functools import cached_property, lru_cache
from pathlib import Path

import jax
import jax.numpy as jnp
import neural_tangents as nt
import numpy as np
import scipy.linalg
from jax.tree_util import Partial

from ntk_notes import checkpoints
from ntk_notes.attacks import is_correct
from ntk_notes.progress import progress


@lru_cache(maxsize=32)
def _jitted_kernel_fn(kernel_fn):
    return jax.jit(kernel_fn, static_argnames="get")


@lru_cache(maxsize=32)
def _batched_kernel_fn(kernel_fn, batch_size: int):
    """``kernel_fn`` jit-compiled and batched by ``nt.batch`` over all local devices."""
    return nt.batch(_jitted_kernel_fn(kernel_fn), batch_size=batch_size, device_count=-1, store_on_device=False)


def _pad_rows(x, multiple: int):
    """x with its last row repeated so that its length is a multiple of ``multiple``."""
    extra = -len(x) % multiple
    return x if extra == 0 else jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)])


def kernel_block(kernel_fn, x1, x2, batch_size: int = 256, get: str = "ntk") -> np.ndarray:
    """Θ(x1, x2) as a host array, computed by ``nt.batch`` in batches of ``batch_size`` spread
    over every local accelerator.

    ``nt.batch`` needs both sizes to be multiples of the batch size (times the device count for
    x1); ragged inputs are padded with a repeated row and the padding is cropped off, so at most
    one batch per side is wasted. Inputs that fit one batch skip the batching machinery.
    """
    devices = jax.local_device_count()
    if len(x1) <= batch_size and len(x2) <= batch_size:
        return np.asarray(_jitted_kernel_fn(kernel_fn)(x1, x2, get=get))
    size = _batch_size_for(len(x1), len(x2), batch_size, devices)
    padded = _batched_kernel_fn(kernel_fn, size)(_pad_rows(x1, size * devices), _pad_rows(x2, size), get=get)
    return np.asarray(padded)[: len(x1), : len(x2)]


def _batch_size_for(n1: int, n2: int, batch_size: int, devices: int, call_cost: int = 64**2) -> int:
    """The batch size (at most ``batch_size``) that minimises the padded kernel entries plus a
    fixed cost per call (counted in entries): 50 test points against 800 training points
    are better done as 16 batches of 50 than padded to 256 x 1024."""

    def cost(size):
        rows, cols = -(-n1 // (size * devices)) * size * devices, -(-n2 // size) * size
        return rows * cols + call_cost * (rows // size) * (cols // size)

    candidates = (
        {batch_size}
        | {n for n in (n1, n2) if n < batch_size}
        | {2**p for p in range(4, batch_size.bit_length()) if 2**p < batch_size}
    )
    return min(sorted(candidates, reverse=True), key=cost)


class BlockedKernel:
    """Θ(x1, x2) split into square blocks that can be computed one at a time, anywhere.

    Block (i, j) covers rows ``i*block_size ...`` and columns ``j*block_size ...``; for a
    symmetric kernel (``x2=None``) only blocks with j >= i are computed and the rest mirrored.
    With a ``directory`` every block is saved as ``block-i-j.npz`` holding the block and the
    configuration (the caller's ``config`` plus shapes, block size and a sha256 of the inputs),
    written atomically, so several processes, GPUs or machines sharing the directory can each
    ``compute`` their own blocks, ``run`` resumes a half-finished kernel, and ``assemble``
    builds the matrix once every block is there. A block saved under another configuration
    is refused; an unreadable one is recomputed.
    """

    def __init__(
        self,
        kernel_fn,
        x1,
        x2=None,
        block_size: int | None = None,
        batch_size: int = 256,
        get: str = "ntk",
        directory=None,
        config: dict | None = None,
    ):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        unit = batch_size * jax.local_device_count()
        block_size = 8 * unit if block_size is None else block_size
        if not isinstance(block_size, int) or block_size < 1 or block_size % unit:
            raise ValueError(
                f"block_size must be a positive multiple of batch_size x device count ({unit}), got {block_size!r}"
            )
        self.symmetric = x2 is None
        self.kernel_fn, self.x1, self.x2 = kernel_fn, x1, (x1 if x2 is None else x2)
        self.block_size, self.batch_size, self.get = block_size, batch_size, get
        self.shape = (len(self.x1), len(self.x2))
        self.directory = None if directory is None else Path(directory)
        self.config = None
        if self.directory is not None:
            self.config = {
                **(config or {}),
                "get": get,
                "shape": list(self.shape),
                "block_size": block_size,
                "symmetric": self.symmetric,
                "x1_sha256": checkpoints.digest({"x": self.x1}),
                "x2_sha256": checkpoints.digest({"x": self.x2}),
            }
            self.config = checkpoints.canonical(self.config)  # as it reads back; fails now if unsavable

    @property
    def blocks(self) -> list[tuple[int, int]]:
        rows = range(-(-self.shape[0] // self.block_size))
        cols = range(-(-self.shape[1] // self.block_size))
        return [(i, j) for i in rows for j in cols if not (self.symmetric and j < i)]

    def _slices(self, i: int, j: int):
        b = self.block_size
        return slice(i * b, min((i + 1) * b, self.shape[0])), slice(j * b, min((j + 1) * b, self.shape[1]))

    def path(self, i: int, j: int) -> Path:
        return self.directory / f"block-{i:05d}-{j:05d}.npz"

    def load(self, i: int, j: int) -> np.ndarray | None:
        """The saved block (i, j), or None if it is absent or unreadable (``checkpoints``:
        truncated, garbage, checksum mismatch; a warning says so); a block saved under
        another configuration raises ValueError."""
        if self.directory is None or not self.path(i, j).exists():
            return None
        try:
            arrays, config = checkpoints.read_npz(self.path(i, j))
        except checkpoints.UnreadableCheckpoint as error:
            return checkpoints.distrust(self.path(i, j), str(error))
        if config != self.config:
            raise ValueError(
                f"{self.path(i, j)} was computed under another configuration (differs in "
                f"{', '.join(checkpoints.changed_keys(self.config, config))}); use another "
                "directory or delete it"
            )
        rows, cols = self._slices(i, j)
        block = arrays.get("kernel")
        if block is None or block.shape != (rows.stop - rows.start, cols.stop - cols.start):
            return checkpoints.distrust(self.path(i, j), "holds a block of another shape")
        return block

    def compute(self, i: int, j: int) -> np.ndarray:
        """Compute block (i, j) (and save it when there is a directory)."""
        if (i, j) not in self.blocks:
            raise ValueError(
                f"no block ({i}, {j}); blocks are {self.blocks[:1]} ... {self.blocks[-1:]}"
                + (" with j >= i (symmetric kernel)" if self.symmetric else "")
            )
        rows, cols = self._slices(i, j)
        block = kernel_block(self.kernel_fn, self.x1[rows], self.x2[cols], self.batch_size, self.get)
        if self.directory is not None:  # atomic, private temporary name: see checkpoints.save_npz
            checkpoints.save_npz(self.path(i, j), {"kernel": block}, self.config)
        return block

    def missing(self) -> list[tuple[int, int]]:
        return [(i, j) for i, j in self.blocks if self.load(i, j) is None]

    def assemble(self) -> np.ndarray:
        """The whole matrix from saved blocks; every block must be there."""
        if self.directory is None:
            raise ValueError("assemble() reads saved blocks: give the BlockedKernel a directory")
        return self._fill(compute_missing=False, show_progress=False)

    def run(self, show_progress: bool | None = None) -> np.ndarray:
        """The whole matrix: saved blocks are loaded, the others computed (and saved)."""
        return self._fill(compute_missing=True, show_progress=show_progress)

    def _fill(self, compute_missing: bool, show_progress: bool | None) -> np.ndarray:
        out = None
        if show_progress is None and len(self.blocks) <= 8:
            show_progress = False
        desc = f"{self.get} kernel {self.shape[0]}x{self.shape[1]}"
        for i, j in progress(self.blocks, desc=desc, enabled=show_progress):
            block = self.load(i, j)
            if block is None:
                if not compute_missing:
                    raise ValueError(
                        f"block ({i}, {j}) is missing from {self.directory}; "
                        f"{len(self.missing())} of {len(self.blocks)} blocks are missing"
                    )
                block = self.compute(i, j)
            if out is None:
                out = np.empty(self.shape, dtype=block.dtype)
            rows, cols = self._slices(i, j)
            out[rows, cols] = block
            if self.symmetric and j > i:
                out[cols, rows] = block.T
        return out


def kernel_matrix(
    kernel_fn,
    x1,
    x2=None,
    batch_size: int = 256,
    block_size: int | None = None,
    show_progress: bool | None = None,
    get: str = "ntk",
    directory=None,
    config: dict | None = None,
) -> np.ndarray:
    """Θ(x1, x2) (Θ(x1, x1) if ``x2`` is None) as a host array of the kernel's dtype (float32,
    or float64 with ``jax_enable_x64`` and float64 inputs), computed block by block
    (see ``BlockedKernel``; with ``directory`` the blocks are saved and a rerun resumes).

    A progress bar is shown for more than a handful of blocks (``show_progress=None``),
    always (True) or never (False).
    """
    job = BlockedKernel(kernel_fn, x1, x2, block_size, batch_size, get, directory, config)
    return job.run(show_progress)


def eigendecomposition(kernel) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues in descending order and the matching eigenvectors (columns), float64."""
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"kernel must be a square matrix, got shape {kernel.shape}")
    values, vectors = np.linalg.eigh(kernel)
    return values[::-1], vectors[:, ::-1]


def fitted_fraction(values, t: float, n_outputs: int = 1) -> np.ndarray:
    """1 − e^{−λ t / (N C)} for each eigenvalue λ of Θ(X, X) (a negative one counts as 0): the
    share of each eigen-direction of the targets that gradient flow has fitted by time t, in
    this module's time convention. ``values`` must be all N eigenvalues: N is their number."""
    values = np.asarray(values, dtype=np.float64)
    rate = np.maximum(values, 0.0) / (len(values) * n_outputs)
    return -np.expm1(-rate * t)


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


def accuracy(outputs, labels) -> float:
    """Accuracy of outputs (n, 1) thresholded at 0, or (n, C) by argmax, against class indices."""
    return float(np.mean(is_correct(np.asarray(outputs), labels)))
