"""The dynamics chapter's networks: the empirical NTK by each neural-tangents implementation
(time and agreement), and the PGD loop forms of ``attacks.pgd`` (time to compile, time to run).

Run: ``.venv/bin/python benchmarks/bench_dynamics.py`` (``python3 tasks.py bench`` runs every
``benchmarks/bench_*.py``); ``... bench_dynamics.py loop`` (or ``ntk``) runs one part only.

Part 1, the empirical NTK:

For the chapter's two networks (``architectures.network("mlp")`` and ``("cnn")``, standard
parameterization, at their initialisation) on a probe of 64 mnist-5k images, with one output
(the binary task: the probe x probe kernel) and with ten (the full 640 x 640 class x class
kernel), at 14 x 14 and 28 x 28 pixels: ``empirical.choose_ntk_implementation`` computes the
kernel with JACOBIAN_CONTRACTION, NTK_VECTOR_PRODUCTS and STRUCTURED_DERIVATIVES, checks each
against the explicit Jacobian contraction (relative Frobenius difference), and times the best
of 3 calls after a first, compiling call. The table gives each implementation's time as a
ratio to the fastest, its first-call time and its difference. Nothing is asserted on time.

Part 2, the PGD loop (``attacks.loop_unroll``): ℓ∞ PGD (ε = 0.1, 2.5 ε / S steps, from x) on
mnist-5k 3 vs 5 at 28 x 28, one logit, by ``attacks.pgd`` with ``unroll=1`` (the rolled
``lax.scan`` every model had before) against ``unroll=S`` (every step unrolled, no loop), on
the chapter's CNN (``network("cnn")``, default-profile widths (8, 16, 16), at initialisation)
at a training minibatch (50) and an evaluation batch (200), on the MLP (``network("mlp")``,
(256, 256)) and on an FC NTK predictor f_∞ (``architecture("fc", 1)``, 800 training images),
as in kernel_attacks / transfer. Compilation is timed once per form (``lower().compile()``);
the run is the median of interleaved calls (``timing.interleaved_seconds``) of the compiled
functions, all in this process. "rule" names the form ``attacks.pgd`` chooses by default.
"S gradients" is S calls of the compiled gradient of the summed loss in the inputs, the work
each step must do (what is left of a step, its sign, step and projection, is elementwise): a
floor for every loop form, so scan / floor bounds what any loop form can gain. XLA_FLAGS=
"--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true" (how the tests
and CI's smoke build compile) shows the unoptimised case, where the rule unrolls every
convolutional attack.
"""

from __future__ import annotations

import os
import sys
import time

import ntk_notes  # noqa: F401  (must come before neural_tangents: installs its jax shim)

# isort: split

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial
from timing import interleaved_seconds, machine, print_table  # benchmarks/timing.py, beside this script

from ntk_notes import architectures, attacks, data, empirical, training
from ntk_notes.predictors import KernelPredictor

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


LOOP_ROUNDS = 7
LOOP_CASES = [  # (model, batch, steps): the benchmark's PGD-10 on the CNN first, then what decides the rule
    ("cnn", 50, 10),
    ("cnn", 200, 10),
    ("cnn", 50, 3),
    ("cnn", 50, 20),
    ("cnn", 50, 50),
    ("mlp", 200, 10),
    ("fc-ntk", 200, 10),
]


def loop_model(name: str, task):
    """The attacked model: the chapter's CNN or the MLP at initialisation, or the FC NTK predictor."""
    if name == "fc-ntk":
        return KernelPredictor(architectures.architecture("fc", 1)[2], task.x_train, task.y_train).logits_fn()
    init_fn, apply_fn, _ = architectures.network(name, n_out=1, widths=(8, 16, 16) if name == "cnn" else None)
    _, params = init_fn(jax.random.PRNGKey(0), task.x_train.shape)
    return Partial(training.call_model, attacks.as_model(apply_fn), params)


def attack_loop() -> None:
    """Part 2: the PGD loop forms, compile and run, per model, batch and number of steps."""
    print(f"PGD loop forms; {machine()}; load average {os.getloadavg()[0]:.1f}")
    task = data.make_task("mnist-5k", classes=(3, 5), n_train=800, n_test=200, seed=0, image_size=28)
    rows, models = [], {}
    for name, batch, steps in LOOP_CASES:
        model = models.setdefault(name, loop_model(name, task))
        x, y = jnp.asarray(task.x_test[:batch]), jnp.asarray(task.labels_test[:batch])
        args = (model, x, y, 0.1, attacks.default_step_size(0.1, steps), jax.random.PRNGKey(0))
        static = dict(loss="binary_cross_entropy", norm="linf", steps=steps, random_start=False)
        compiled, compile_s = {}, {}
        for form, unroll in (("scan", 1), ("unrolled", steps)):
            start = time.perf_counter()
            compiled[form] = attacks.pgd.lower(*args, **static, unroll=unroll).compile()
            compile_s[form] = time.perf_counter() - start
        # The floor of any loop form: each step needs one gradient of the loss in the inputs
        gradient = jax.jit(jax.grad(lambda z: jnp.sum(attacks.per_example_loss(static["loss"], model(z), y))))
        scan_adv, unrolled_adv = (np.asarray(compiled[f](*args)[0]) for f in ("scan", "unrolled"))
        moved = np.mean(scan_adv != unrolled_adv)  # float rounding order can flip a near-zero gradient's sign
        calls = {f: (c, *args) for f, c in compiled.items()} | {"gradient": (gradient, x)}
        run = {f: float(np.median(v)) for f, v in interleaved_seconds(calls, LOOP_ROUNDS).items()}
        floor = steps * run["gradient"]
        convolves = attacks.uses_convolution(model, x)
        rule = "unrolled" if attacks.loop_unroll(steps, "cpu", convolves, attacks.xla_cpu_optimised()) > 1 else "scan"
        rows.append(
            (
                name,
                batch,
                steps,
                f"{compile_s['scan']:.2f} s",
                f"{compile_s['unrolled']:.2f} s",
                f"{run['scan'] * 1e3:.1f} ms",
                f"{run['unrolled'] * 1e3:.1f} ms",
                f"{run['scan'] / run['unrolled']:.2f}x",
                f"{floor * 1e3:.1f} ms",
                f"{run['scan'] / floor:.2f}x",
                f"{compile_s['unrolled'] - compile_s['scan']:+.2f} s",
                f"{moved:.0e}",
                rule,
            )
        )
        print(f"  {name} batch {batch} PGD-{steps} done", flush=True)
    print_table(
        (
            "model",
            "batch",
            "S",
            "compile scan",
            "compile unrolled",
            "run scan",
            "run unrolled",
            "scan / unrolled",
            "S gradients",
            "scan / floor",
            "extra compile",
            "pixels differing",
            "rule",
        ),
        rows,
    )
    print(
        f"run: median of {LOOP_ROUNDS} interleaved calls; scan / unrolled > 1: unrolling is faster; S gradients: S "
        "calls of the loss's compiled input gradient, the floor, so scan / floor is the most any loop form can gain; "
        f"extra compile: what unrolling costs once; load average at the end {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    part = sys.argv[1] if len(sys.argv) > 1 else None
    if part not in (None, "ntk", "loop"):
        raise SystemExit(f"unknown part {part!r}; allowed: ntk, loop (or nothing: both)")
    if part in (None, "ntk"):
        empirical_ntk()
    if part in (None, "loop"):
        attack_loop()


def empirical_ntk() -> None:
    """Part 1: the empirical NTK by each implementation."""
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
