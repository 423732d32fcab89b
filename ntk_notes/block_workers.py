"""What a worker of another process or machine needs to compute blocks of a
``kernels.BlockedKernel``: the parcel the driver sends with every block, and the function a
worker runs (``compute_block``).

Any ``concurrent.futures.Executor`` runs the blocks: a process pool, Dask's
``distributed.Client(...).get_executor()`` (or the ``Client`` itself), Ray's. What travels:

- the kernel function, pickled once by cloudpickle (neural-tangents' ``kernel_fn`` is a
  closure, which plain pickle refuses; for ``architecture('conv', 1)`` it is about 120 KB) and
  sent as bytes, so that an executor that uses plain pickle (a process pool) can send it too.
  A worker unpickles it once and keeps it, so its jit-compiled code is reused across blocks;
- the inputs: with a directory they are written once to ``inputs.npz`` there (checksummed,
  like the blocks) and each worker process reads them once; without a directory each task
  carries its two slices;
- the results: with a directory each worker saves its block there (atomically, see
  ``checkpoints.save_npz``) and returns nothing, and the driver reads it back, so the
  directory stays the one source of truth and a killed run resumes; without one the block
  is returned.

XLA's CPU backend sizes its thread pool by the CPUs the process may run on, and has no flag
for it: two worker processes on a two-core machine would each run two compute threads.
``xla_threads`` makes each worker's pool that many threads (see ``limit_xla_threads``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import socket
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Callable

import jax
import numpy as np

from ntk_notes import checkpoints

INPUTS_FILE = "inputs.npz"


@dataclasses.dataclass(frozen=True)
class Parcel:
    """What every block task of one kernel shares; picklable with plain pickle."""

    compute: Callable  # kernels.kernel_block, pickled by reference: (kernel_fn, x1, x2, batch_size, get) -> block
    kernel_fn: bytes  # cloudpickle of the kernel function
    batch_size: int
    get: str
    x64: bool  # the driver's jax_enable_x64: float64 inputs stay float64 on the workers
    xla_threads: int | None
    inputs: str | None  # path of inputs.npz in the shared directory; None: slices travel with each task
    inputs_config: dict | None  # the inputs' checksums, which the file must carry
    block_config: dict | None  # the configuration saved with every block (None: blocks are returned)
    # A fresh id per run: Dask names a task by its arguments, and would answer a rerun with the
    # failed task of the run before while anything (a notebook's last exception) still holds it.
    run_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)


def as_executor(executor) -> concurrent.futures.Executor:
    """``executor`` itself, or the executor of a ``dask.distributed.Client``; TypeError for
    anything else."""
    if isinstance(executor, concurrent.futures.Executor):
        return executor
    if callable(getattr(executor, "get_executor", None)):  # a dask.distributed Client
        return executor.get_executor()
    raise TypeError(
        f"executor must be a concurrent.futures.Executor (a process pool, a Dask Client's "
        f"get_executor(), Ray's...) or a dask.distributed Client, got {executor!r}"
    )


def pickled(kernel_fn) -> bytes:
    """The kernel function as cloudpickle bytes; TypeError naming it if it cannot be sent."""
    try:
        import cloudpickle  # comes with the `distributed` extra (Dask uses it)
    except ImportError as error:
        raise ImportError("blocks on an executor need cloudpickle: pip install 'ntk-notes[distributed]'") from error
    try:
        return cloudpickle.dumps(kernel_fn)
    except Exception as error:  # cloudpickle raises whatever the object's reduction raises
        raise TypeError(
            f"kernel_fn {kernel_fn!r} cannot be sent to the workers: cloudpickle fails "
            f"({type(error).__name__}: {error}); it must not hold locks, open files or devices' buffers"
        ) from error


def write_inputs(directory: Path, x1, x2, config: dict) -> str:
    """Save the inputs once in the shared directory (``x2`` None for a symmetric kernel);
    returns the file's path. A file already holding these inputs is kept."""
    path = Path(directory) / INPUTS_FILE
    if path.exists():
        try:
            if checkpoints.read_npz(path)[1] == checkpoints.canonical(config):
                return str(path)
        except checkpoints.UnreadableCheckpoint:
            pass  # a damaged or foreign file: written again below
    arrays = {"x1": np.asarray(x1)} | ({} if x2 is None else {"x2": np.asarray(x2)})
    checkpoints.save_npz(path, arrays, config)
    return str(path)


def compute_block(parcel: Parcel, path: str | None, rows: slice, cols: slice, x1=None, x2=None):
    """Run on a worker: block ``x1[rows] x x2[cols]`` of the kernel (``x1``, ``x2``: the
    slices themselves when there is no inputs file). Saved at ``path`` and None returned when
    there is a directory; the block itself otherwise."""
    limit_xla_threads(parcel.xla_threads)
    if jax.config.jax_enable_x64 != parcel.x64:
        jax.config.update("jax_enable_x64", parcel.x64)
    kernel_fn = _unpickled(parcel.kernel_fn)
    if parcel.inputs is not None:
        x1, x2 = _inputs(parcel.inputs, checkpoints.config_text(parcel.inputs_config))
        x1, x2 = x1[rows], x2[cols]
    block = parcel.compute(kernel_fn, x1, x2, parcel.batch_size, parcel.get)
    if path is None:
        return block
    checkpoints.save_npz(path, {"kernel": block}, parcel.block_config)
    return None


@lru_cache(maxsize=2)  # one unpickled function per kernel, so that its compiled code is reused
def _unpickled(blob: bytes):
    import cloudpickle

    return cloudpickle.loads(blob)


@lru_cache(maxsize=1)  # each worker process reads the inputs once
def _inputs(path: str, config_text: str):
    if not Path(path).exists():
        raise FileNotFoundError(
            f"{path} is not there on worker {socket.gethostname()} (pid {os.getpid()}): the directory of a "
            "BlockedKernel run on an executor must be shared by the driver and every worker"
        )
    arrays, config = checkpoints.read_npz(path)
    if checkpoints.config_text(config) != config_text:
        raise ValueError(f"{path} holds other inputs than this kernel's (another run is using the directory?)")
    return arrays["x1"], arrays.get("x2", arrays["x1"])


def check_xla_threads(threads: int | None) -> int | None:
    """``threads`` if it is a valid ``xla_threads`` (a positive integer or None); ValueError otherwise."""
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"xla_threads must be a positive integer or None, got {threads!r}")
    return threads


_xla_threads_set: list[int] = []  # the pool size this process's XLA backend was created with


def limit_xla_threads(threads: int | None) -> None:
    """Make this process's XLA CPU thread pool ``threads`` threads (None: leave XLA's default,
    one per CPU the process may run on). XLA reads that count from the CPU affinity when its
    backend starts, so the backend is started here under an affinity of ``threads`` CPUs, and
    every thread is then allowed all CPUs again (the pool stays that size; the OS still places
    the threads freely). Linux only, and only before this process first used jax; a later
    call with another count raises."""
    if check_xla_threads(threads) is None:
        return
    if _xla_threads_set:
        if _xla_threads_set[0] != threads:
            raise ValueError(f"this process's XLA already runs {_xla_threads_set[0]} threads, not {threads}")
        return
    if not hasattr(os, "sched_setaffinity"):
        raise ValueError("xla_threads needs Linux (CPU affinity); give None on this system")
    everywhere = os.sched_getaffinity(0)
    if threads < len(everywhere):
        os.sched_setaffinity(0, sorted(everywhere)[:threads])  # this thread only; the pool's threads inherit it
        try:
            jax.devices()  # starts the backend, whose pool is sized now
        finally:
            for thread in os.listdir("/proc/self/task"):
                try:
                    os.sched_setaffinity(int(thread), everywhere)
                except ProcessLookupError:  # a thread that ended meanwhile
                    pass
    _xla_threads_set.append(threads)
