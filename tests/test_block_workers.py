"""BlockedKernel.run(executor=...): a kernel's blocks computed by the workers of a Dask cluster
(2 worker processes of 1 thread on this machine), of a process pool, of a thread pool, equal
the kernel computed in this process; a worker killed while writing its block leaves only whole
blocks, and a rerun completes them to the same matrix.

Small random 6x6x1 images and float64 (the workers follow this process's jax_enable_x64), so
that "equal" means ~1e-7 and every compilation is cheap."""

import concurrent.futures
import multiprocessing
import os
import threading

import dask
import jax.numpy as jnp
import numpy as np
import pytest
from distributed import Client, LocalCluster

from ntk_notes import architectures, block_workers, checkpoints, kernels


@pytest.fixture(scope="module")
def cluster():
    # allowed-failures 0: a task whose worker dies fails at once (the kill test) instead of
    # being retried on the restarted worker.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        ) as cluster:
            yield cluster


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def fc_kernel_fn():
    return architectures.architecture("fc", 1)[2]


def images(n, seed):
    return np.random.default_rng(seed).uniform(size=(n, 6, 6, 1))


def job(kernel_fn, x1, x2=None, directory=None):
    # batch_size 8 = block_size: every block is one jitted call (20 rows: blocks of 8, 8 and 4).
    return kernels.BlockedKernel(kernel_fn, x1, x2, block_size=8, batch_size=8, directory=directory)


def block_files(directory):
    return sorted(p.name for p in directory.glob("block-*.npz"))


@pytest.mark.parametrize("symmetric", [True, False])
def test_a_dask_cluster_assembles_the_single_process_kernel(float64, client, fc_kernel_fn, tmp_path, symmetric):
    x1 = jnp.asarray(images(20, 1))
    x2 = None if symmetric else jnp.asarray(images(12, 2))
    expected = job(fc_kernel_fn, x1, x2).run()  # in this process
    blocked = job(fc_kernel_fn, x1, x2, tmp_path)
    got = blocked.run(executor=client, xla_threads=1)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-7)
    # The workers saved every block (and the driver the inputs, once): assemble needs nothing else.
    assert block_files(tmp_path) == sorted(blocked.path(i, j).name for i, j in blocked.blocks)
    assert (tmp_path / block_workers.INPUTS_FILE).exists() and not list(tmp_path.glob(".*.tmp"))
    np.testing.assert_array_equal(job(fc_kernel_fn, x1, x2, tmp_path).assemble(), got)


def test_without_a_directory_the_workers_return_the_blocks(float64, client, fc_kernel_fn):
    x1, x2 = jnp.asarray(images(20, 3)), jnp.asarray(images(9, 4))
    got = job(fc_kernel_fn, x1, x2).run(executor=client.get_executor())
    np.testing.assert_allclose(got, job(fc_kernel_fn, x1, x2).run(), rtol=1e-7)


def test_the_same_call_runs_against_a_scheduler_address(float64, cluster, fc_kernel_fn, tmp_path):
    x = jnp.asarray(images(20, 5))
    with Client(cluster.scheduler_address) as remote:  # as from another machine: only the address
        got = job(fc_kernel_fn, x, directory=tmp_path).run(executor=remote, xla_threads=1)
        np.testing.assert_allclose(got, job(fc_kernel_fn, x).run(), rtol=1e-7)
        # A second run finds every block saved: nothing is recomputed (a rewrite changes the inode).
        inodes = {name: (tmp_path / name).stat().st_ino for name in block_files(tmp_path)}
        np.testing.assert_array_equal(job(fc_kernel_fn, x, directory=tmp_path).run(executor=remote), got)
        assert {name: (tmp_path / name).stat().st_ino for name in block_files(tmp_path)} == inodes


def test_each_worker_runs_the_xla_threads_it_was_given(client, fc_kernel_fn):
    # XLA sizes its CPU pool by the CPUs a process may use; with xla_threads=1 each worker
    # has a single compute thread ("tf_XLAEigen") and may still run on every CPU.
    job(fc_kernel_fn, jnp.asarray(images(20, 6), dtype=jnp.float32)).run(executor=client, xla_threads=1)

    def threads():
        tasks = os.listdir("/proc/self/task")
        names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in tasks]
        return names.count("tf_XLAEigen"), sorted(os.sched_getaffinity(0))

    everywhere = sorted(os.sched_getaffinity(0))
    assert list(client.run(threads).values()) == [(1, everywhere)] * 2


def test_a_process_pool_computes_the_blocks(float64, fc_kernel_fn, tmp_path):
    # Plain pickle cannot send neural-tangents' kernel_fn (a closure): it travels as
    # cloudpickle bytes. "spawn": forking this process, whose jax runs threads, is unsafe.
    x = jnp.asarray(images(20, 7))
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        got = job(fc_kernel_fn, x, directory=tmp_path).run(executor=pool, xla_threads=1)
    np.testing.assert_allclose(got, job(fc_kernel_fn, x).run(), rtol=1e-7)


def test_the_progress_bar_counts_loaded_and_computed_blocks(float64, fc_kernel_fn, tmp_path, monkeypatch):
    updates = []

    class Bar:
        def __init__(self, iterable=None, total=None, **kwargs):
            self.iterable = iterable

        def __iter__(self):
            return iter(self.iterable)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n=1):
            updates.append(n)

    monkeypatch.setattr(kernels, "progress", Bar)
    x = jnp.asarray(images(20, 8))
    first = job(fc_kernel_fn, x, directory=tmp_path)
    first.compute(0, 0)
    first.compute(1, 2)  # 2 of 6 blocks saved before the run
    with concurrent.futures.ThreadPoolExecutor(2) as threads:
        got = job(fc_kernel_fn, x, directory=tmp_path).run(executor=threads)
    assert updates == [1] * 6
    np.testing.assert_allclose(got, job(fc_kernel_fn, x).run(), rtol=1e-7)


def test_bad_executors_and_unsendable_kernels_are_named(fc_kernel_fn):
    x = jnp.asarray(images(8, 9))
    with pytest.raises(TypeError, match="executor must be a concurrent.futures.Executor.*got 'dask'"):
        job(fc_kernel_fn, x).run(executor="dask")
    lock = threading.Lock()

    def locked_kernel_fn(x1, x2=None, get=None):
        with lock:
            return fc_kernel_fn(x1, x2, get)

    with concurrent.futures.ThreadPoolExecutor(1) as threads:
        with pytest.raises(TypeError, match="cannot be sent to the workers: cloudpickle fails"):
            job(locked_kernel_fn, x).run(executor=threads)
        with pytest.raises(ValueError, match="xla_threads must be a positive integer or None, got 0"):
            job(fc_kernel_fn, x).run(executor=threads, xla_threads=0)
    with pytest.raises(ValueError, match="xla_threads=1 sizes the workers' XLA: give an executor too"):
        job(fc_kernel_fn, x).run(xla_threads=1)


def test_a_worker_killed_while_writing_leaves_only_whole_blocks(float64, client, fc_kernel_fn, tmp_path):
    # The kernel function kills its worker in the middle of saving block (2, 2), the only 4x4
    # block, once (a marker file says it is done): when it is traced for that shape it replaces
    # numpy.savez in that worker process by one that writes half a file and exits the process.
    marker = tmp_path / "killed-once"

    def killing_kernel_fn(x1, x2=None, get=None):
        if x1.shape[0] == 4 and x2.shape[0] == 4 and not marker.exists():
            import numpy

            def half_then_die(file, **arrays):
                file.write(b"PK\x03\x04 half a block")
                file.flush()
                marker.touch()
                os._exit(1)

            numpy.savez = half_then_die
        return fc_kernel_fn(x1, x2, get)

    x = jnp.asarray(images(20, 10))
    directory = tmp_path / "blocks"
    with client.get_executor() as executor:  # leaving it waits for the tasks still running
        with pytest.raises(
            RuntimeError, match=r"failed on the executor \(KilledWorker.*a rerun computes only"
        ) as failed:
            job(killing_kernel_fn, x, directory=directory).run(executor=executor)
    # Only whole blocks under block names; the half-written file is a private temporary.
    saved = block_files(directory)
    assert "block-00002-00002.npz" not in saved
    for name in saved:
        checkpoints.read_npz(directory / name)  # raises if truncated or not matching its checksum
    assert [p.name.split(".npz")[0] for p in directory.glob(".block-*.tmp")] == [".block-00002-00002"]
    # The same call again, on the same cluster (its killed worker restarted), computes the
    # missing blocks only, to the matrix of one process. The failed run's tasks are still
    # referenced (by the exception): the rerun's tasks must be new ones, not those.
    assert failed.value is not None
    inodes = {name: (directory / name).stat().st_ino for name in saved}
    rerun = job(killing_kernel_fn, x, directory=directory)
    np.testing.assert_allclose(rerun.run(executor=client), job(fc_kernel_fn, x).run(), rtol=1e-7)
    assert {name: (directory / name).stat().st_ino for name in saved} == inodes and rerun.missing() == []
