"""Infinite-width kernels as matrices (in batches, or in resumable blocks), their
eigendecomposition and the share of each eigen-direction gradient flow has fitted. The
architectures and their ``kernel_fn`` come from ``ntk_notes.architectures``; the kernel
predictor (and the training-time convention) lives in ``ntk_notes.predictors``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from functools import lru_cache
from pathlib import Path

import jax
import jax.numpy as jnp
import neural_tangents as nt
import numpy as np

from ntk_notes import block_workers, checkpoints
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
    is refused; an unreadable one is recomputed. ``run(executor=...)`` hands the missing
    blocks to the workers of any ``concurrent.futures.Executor`` (a process pool, a Dask
    cluster: see ``ntk_notes.block_workers``).
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

    def run(self, show_progress: bool | None = None, executor=None, xla_threads: int | None = None) -> np.ndarray:
        """The whole matrix: saved blocks are loaded, the others computed (and saved).

        ``executor``: a ``concurrent.futures.Executor`` (or a ``dask.distributed.Client``)
        whose workers compute the missing blocks, as many at once as it has workers. With a
        directory (which every worker must see at the same path) the workers save the blocks
        there and this process reads them back: a run cut short (a worker killed, the driver
        stopped) leaves only whole blocks, and the next run computes the rest. Without one the
        blocks come back as results. ``xla_threads``: the size of each worker process's XLA CPU
        thread pool (``block_workers.limit_xla_threads``; None: XLA's default, one thread per
        CPU): with several worker processes per machine, the machine's cores divided among them.
        """
        if executor is None:
            if xla_threads is not None:
                raise ValueError(f"xla_threads={xla_threads!r} sizes the workers' XLA: give an executor too")
            return self._fill(compute_missing=True, show_progress=show_progress)
        return self._run_on(block_workers.as_executor(executor), show_progress, xla_threads)

    def _run_on(self, executor, show_progress: bool | None, xla_threads: int | None) -> np.ndarray:
        parcel = block_workers.Parcel(
            compute=kernel_block,
            kernel_fn=block_workers.pickled(self.kernel_fn),
            batch_size=self.batch_size,
            get=self.get,
            x64=bool(jax.config.jax_enable_x64),
            xla_threads=block_workers.check_xla_threads(xla_threads),
            inputs=None,
            inputs_config=None,
            block_config=self.config,
        )
        if self.directory is not None:
            inputs_config = {key: self.config[key] for key in ("x1_sha256", "x2_sha256", "symmetric")}
            x2 = None if self.symmetric else self.x2  # a symmetric kernel's inputs are saved once
            path = block_workers.write_inputs(self.directory, self.x1, x2, inputs_config)
            parcel = dataclasses.replace(parcel, inputs=path, inputs_config=inputs_config)
        out, pending = None, {}
        with self._progress(None, show_progress) as bar:
            try:
                for i, j in self.blocks:
                    block = self.load(i, j)
                    if block is not None:
                        out = self._place(out, i, j, block)
                        bar.update()
                        continue
                    rows, cols = self._slices(i, j)
                    if self.directory is None:  # no shared inputs file: the slices travel with the task
                        args = (None, rows, cols, np.asarray(self.x1[rows]), np.asarray(self.x2[cols]))
                    else:
                        args = (str(self.path(i, j)), rows, cols)
                    pending[executor.submit(block_workers.compute_block, parcel, *args)] = (i, j)
                for future in concurrent.futures.as_completed(pending):
                    out = self._place(out, *pending[future], self._collected(future, *pending[future]))
                    bar.update()
            finally:
                for future in pending:
                    future.cancel()  # after a failure: the blocks not started yet are not needed
        return out

    def _collected(self, future, i: int, j: int) -> np.ndarray:
        """Block (i, j) from its finished future: read back from the directory if there is one."""
        try:
            block = future.result()
        except Exception as error:
            kept = "" if self.directory is None else f"; the blocks saved so far stay in {self.directory}"
            raise RuntimeError(
                f"block ({i}, {j}) failed on the executor ({type(error).__name__}: {error}){kept}; "
                "a rerun computes only the missing blocks"
            ) from error
        if self.directory is None:
            return block
        block = self.load(i, j)
        if block is None:
            raise RuntimeError(
                f"a worker saved block ({i}, {j}) at {self.path(i, j)}, but it cannot be read here: the directory "
                "must be shared by this process and every worker, at the same path"
            )
        return block

    def _place(self, out, i: int, j: int, block: np.ndarray) -> np.ndarray:
        """``out`` (created at the first block, of its dtype) with block (i, j) written in, and
        mirrored for a symmetric kernel."""
        if out is None:
            out = np.empty(self.shape, dtype=block.dtype)
        rows, cols = self._slices(i, j)
        out[rows, cols] = block
        if self.symmetric and j > i:
            out[cols, rows] = block.T
        return out

    def _progress(self, iterable, show_progress: bool | None):
        """A bar over the blocks, shown by default only for more than a handful of them."""
        if show_progress is None and len(self.blocks) <= 8:
            show_progress = False
        desc = f"{self.get} kernel {self.shape[0]}x{self.shape[1]}"
        return progress(iterable, total=len(self.blocks), desc=desc, enabled=show_progress)

    def _fill(self, compute_missing: bool, show_progress: bool | None) -> np.ndarray:
        out = None
        for i, j in self._progress(self.blocks, show_progress):
            block = self.load(i, j)
            if block is None:
                if not compute_missing:
                    raise ValueError(
                        f"block ({i}, {j}) is missing from {self.directory}; "
                        f"{len(self.missing())} of {len(self.blocks)} blocks are missing"
                    )
                block = self.compute(i, j)
            out = self._place(out, i, j, block)
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
    the time convention of ``ntk_notes.predictors``. ``values`` must be all N eigenvalues: N is their number."""
    values = np.asarray(values, dtype=np.float64)
    rate = np.maximum(values, 0.0) / (len(values) * n_outputs)
    return -np.expm1(-rate * t)
