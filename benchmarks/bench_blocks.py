"""What does computing a kernel's blocks on a Dask cluster cost, against one process?

Run: ``.venv/bin/python benchmarks/bench_blocks.py`` (or ``python3 tasks.py bench``).

The conv NTK (``architecture("conv", 1)``) of N = 2000 MNIST images downsized to 14 x 14, as a
``BlockedKernel`` of 512-blocks (symmetric: 10 blocks), saved to a fresh directory each call:

- one process: ``run()``, XLA using every core of this machine in each block;
- a local Dask cluster of 2 worker processes of 1 thread each: ``run(executor=client,
  xla_threads=1)``, so that each worker's XLA runs one compute thread and the two workers
  together use the same cores as the one process;
- the same cluster shape without ``xla_threads`` (each worker's XLA runs one thread per core:
  oversubscribed), to show what the setting is worth.

Timed: the median of interleaved calls after a warm-up call of each (the warm-up is where each
worker imports jax and compiles; its time is printed too, with the clusters' start-up). Only
ratios measured here are meaningful. The clusters' kernels are checked against the one
process's; the script exits with status 1 if they differ.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from timing import interleaved_seconds, machine, print_table  # benchmarks/timing.py, beside this script

import ntk_notes  # noqa: F401  (must come before neural_tangents: installs its jax shim)
from ntk_notes.architectures import architecture
from ntk_notes.kernels import BlockedKernel

N = 2000
IMAGE_SIZE = 14
BLOCK_SIZE, BATCH_SIZE = 512, 256
WORKERS = 2
ROUNDS = 3
TARGET = 1.25  # the cluster within 1.25x of the single process


def main() -> int:
    from distributed import Client, LocalCluster  # imported here: the cluster's workers re-import this file

    from ntk_notes.data import make_task

    started = time.perf_counter()
    print(machine())
    images = make_task("mnist-5k", classes=None, n_train=N, n_test=1, seed=0, image_size=IMAGE_SIZE).x_train
    _, _, kernel_fn = architecture("conv", 1)
    scratch = Path(tempfile.mkdtemp(prefix="bench-blocks-"))
    results = {}

    def runner(name, **run_options):
        def call():
            directory = Path(tempfile.mkdtemp(dir=scratch))
            kernel = BlockedKernel(kernel_fn, images, block_size=BLOCK_SIZE, batch_size=BATCH_SIZE, directory=directory)
            results[name] = kernel.run(show_progress=False, **run_options)
            shutil.rmtree(directory)
            return results[name]

        return (call,)

    clusters, startup = [], {}
    try:
        for name in ("pinned", "default"):
            t = time.perf_counter()
            cluster = LocalCluster(
                n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
            )
            clusters.append((cluster, Client(cluster)))
            startup[name] = time.perf_counter() - t
        pinned, default = clusters[0][1], clusters[1][1]
        calls = {
            "one process": runner("one process"),
            "cluster, xla_threads=1": runner("cluster, xla_threads=1", executor=pinned, xla_threads=1),
            "cluster, XLA default": runner("cluster, XLA default", executor=default),
        }
        first = {}
        for name, (call,) in calls.items():  # the warm-up calls, timed on their own
            t = time.perf_counter()
            call()
            first[name] = time.perf_counter() - t
        times = {name: float(np.median(t)) for name, t in interleaved_seconds(calls, ROUNDS).items()}
    finally:
        for cluster, client in reversed(clusters):
            client.close()
            cluster.close()
        shutil.rmtree(scratch, ignore_errors=True)

    base = times["one process"]
    worst = max(float(np.max(np.abs(results[n] - results["one process"]))) for n in calls)
    scale = float(np.max(np.abs(results["one process"])))
    print(
        f"\nconv NTK (depth 1) of {N} MNIST images at {IMAGE_SIZE}x{IMAGE_SIZE}, {BLOCK_SIZE}-blocks "
        f"(batches of {BATCH_SIZE}), saved to a fresh directory; median of {ROUNDS} interleaved calls"
    )
    cluster_start = {"cluster, xla_threads=1": startup["pinned"], "cluster, XLA default": startup["default"]}
    rows = [
        (
            name,
            f"{t:.2f} s",
            f"{t / base:.2f}x",
            f"{first[name]:.1f} s",
            f"{cluster_start[name]:.1f} s" if name in cluster_start else "-",
        )
        for name, t in times.items()
    ]
    print_table(("run", "time", "vs one process", "first call", "cluster start"), rows)
    ratio = times["cluster, xla_threads=1"] / base
    verdict = "met" if ratio <= TARGET else f"NOT met, by {ratio / TARGET - 1:.0%}"
    print(
        f"   -> {WORKERS} single-threaded workers take {ratio:.2f}x the one process (target <= {TARGET}x: {verdict}); "
        f"without xla_threads the workers' XLA runs {times['cluster, XLA default'] / base:.2f}x. Largest difference "
        f"between the kernels: {worst:.1e} (entries up to {scale:.1f})"
    )
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0 if worst <= 1e-5 * scale else 1


if __name__ == "__main__":
    sys.exit(main())
