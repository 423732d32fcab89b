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
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn, *args = calls[name]
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - start)
    return times
