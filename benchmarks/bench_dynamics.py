"""The empirical NTK on a probe batch by each neural-tangents implementation: time and agreement.

Run: ``.venv/bin/python benchmarks/bench_dynamics.py`` (``python3 tasks.py bench`` runs every
``benchmarks/bench_*.py``).

For the chapter's two networks (``architectures.network("mlp")`` and ``("cnn")``, standard
parameterization, at their initialisation) on a probe of 64 mnist-5k images, with one output
(the binary task: the probe x probe kernel) and with ten (the full 640 x 640 class x class
kernel), at 14 x 14 and 28 x 28 pixels: ``empirical.choose_ntk_implementation`` computes the
kernel with JACOBIAN_CONTRACTION, NTK_VECTOR_PRODUCTS and STRUCTURED_DERIVATIVES, checks each
against the explicit Jacobian contraction (relative Frobenius difference), and times the best
of 3 calls after a first, compiling call. The table gives each implementation's time as a
ratio to the fastest, its first-call time and its difference. Nothing is asserted on time.
"""

from __future__ import annotations

import time

import jax

import ntk_notes  # noqa: F401  (must come before neural_tangents: installs its jax shim)
from ntk_notes import architectures, data, empirical

PROBE = 64
SETTINGS = [
    ("mlp", 14, 1),
    ("mlp", 14, 10),
    ("mlp", 28, 1),
    ("mlp", 28, 10),
    ("cnn", 14, 1),
    ("cnn", 14, 10),
    ("cnn", 28, 1),
    ("cnn", 28, 10),
]


def main() -> None:
    start = time.perf_counter()
    print(
        f"jax {jax.__version__}, {jax.devices()[0].platform}; probe of {PROBE} mnist-5k images, float32, "
        "networks at initialisation; best of 3 calls after a compiling call"
    )
    names = list(empirical.IMPLEMENTATIONS)
    header = (
        f"{'network':>7} {'pixels':>6} {'C':>3} {'kernel':>9}  " + "  ".join(f"{n:>34}" for n in names) + "  fastest"
    )
    print(header)
    print("-" * len(header))
    for network, size, n_out in SETTINGS:
        task = data.make_task(
            "mnist-5k", classes=None if n_out == 10 else (3, 5), n_train=PROBE, n_test=1, seed=0, image_size=size
        )
        init_fn, apply_fn, _ = architectures.network(network, n_out=n_out)
        _, params = init_fn(jax.random.PRNGKey(0), task.x_train.shape)
        choice = empirical.choose_ntk_implementation(apply_fn, params, task.x_train, trace=False)
        best = choice.seconds[choice.implementation]
        cells = [
            f"{choice.seconds[n] * 1e3:8.1f} ms {choice.seconds[n] / best:5.1f}x "
            f"({choice.compile_seconds[n]:4.1f} s) Δ{choice.relative_difference[n]:.0e}"
            for n in names
        ]
        m = PROBE * n_out
        print(
            f"{network:>7} {size:>4}^2 {n_out:>3} {m:>4}x{m:<4}  "
            + "  ".join(f"{c:>34}" for c in cells)
            + f"  {choice.implementation}"
        )
    print(
        "cells: best time, ratio to the fastest, (first call incl. compilation), Δ relative Frobenius difference "
        "to the explicit Jacobian contraction"
    )
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
