"""Timing shared by the benchmarks (run as scripts, so they import this as ``timing``)."""

import time

import jax


def interleaved_seconds(calls: dict, rounds: int) -> dict:
    """Wall times of each ``name: (fn, *args)`` over ``rounds`` calls, after a warm-up call of
    each (compilation, and faulting in the buffers). The calls are interleaved (one round of
    every call, in a rotating order), so that a slow spell of this shared machine hits all of
    them alike rather than one of the things being compared."""
    for fn, *args in calls.values():
        jax.block_until_ready(fn(*args))
    times = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn, *args = calls[name]
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - start)
    return times


def print_table(header: tuple, rows: list) -> None:
    """Right-aligned columns as wide as their widest cell, a rule under the header."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    print(line(header))
    print(line(tuple("-" * w for w in widths)))
    for row in rows:
        print(line(row))


def machine() -> str:
    """The versions and the device the numbers were measured on."""
    import os

    import neural_tangents

    device = jax.devices()[0]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"jax {jax.__version__}, neural-tangents {neural_tangents.__version__}, "
        f"device {device.platform}:{device.device_kind} ({device}), {cores} CPU cores available"
    )
