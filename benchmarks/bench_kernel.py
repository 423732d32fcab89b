"""How much do infinite-width kernels cost, relative to what any kernel must pay?

Run: ``.venv/bin/python benchmarks/bench_kernel.py`` (or ``python3 tasks.py bench``).

1. The FC NTK (depth 1, ReLU) of N MNIST images, computed as one N x N jitted call, against
   the Gram matmul X Xᵀ of the same flattened images: the floor for any kernel of a
   fully-connected network. Two implementations: the package's (``architecture("fc", 1)``'s
   ``kernel_fn``, the closed form of ``ntk_notes.fc_kernel``: polynomial arc-cosine, rows in
   cache-sized blocks) and neural-tangents' ``kernel_fn`` (its ``reference``), each also for
   the NNGP alone. Neural-tangents' time is broken down by also timing an elementwise depth-1
   ReLU NTK formula with the exact ``jnp.arccos`` applied to a precomputed Gram matrix (the
   arc-cosine work alone). The formula and the package's kernel are first checked against
   neural-tangents' on 50 images; the script exits with status 1 if they disagree.
2. The conv kernel (depth 1, Flatten readout) per kernel entry, on 64 x 64 and 128 x 128
   blocks of 28 x 28 and 14 x 14 images, against the FC NTK per entry measured above.

Every number is the median of several timed calls after a warm-up call (compilation),
with ``jax.block_until_ready`` on the result, all in this one process. Only ratios measured
here are meaningful: absolute times depend on the machine. Nothing is asserted on time.
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from timing import interleaved_seconds, machine, print_table  # benchmarks/timing.py, beside this script

import ntk_notes  # noqa: F401  (must come before neural_tangents: installs its jax shim)
from ntk_notes import fc_kernel
from ntk_notes.architectures import architecture
from ntk_notes.data import make_task

REPEATS = 7  # even N = 4000 takes ~0.2 s a call here, so every size gets the same number
FC_SIZES = (1000, 2000, 4000)
CONV_BLOCKS = (64, 128)
CONV_IMAGE_SIZES = (28, 14)
CHECK_IMAGES = 50
CHECK_RTOL = 1e-4
W_VAR = 2.0  # W_std ** 2 of ntk_notes.architectures.architecture
B_VAR = 0.1**2  # b_std ** 2


def median_seconds(calls: dict, repeats: int = REPEATS) -> dict:
    """Median wall time of each ``name: (fn, *args)`` over ``repeats`` interleaved calls."""
    return {name: float(np.median(t)) for name, t in interleaved_seconds(calls, repeats).items()}


def relu_fc_kernels(gram, sq_norms1, sq_norms2, dim: int):
    """NNGP and NTK of Dense -> ReLU -> Dense (NTK parameterisation) from the input Gram, with
    the exact ``jnp.arccos`` (neural-tangents' elementwise work, not the package's polynomial).

    ``gram`` is X1 X2ᵀ of the flattened inputs, ``sq_norms*`` the squared norms of each
    input, ``dim`` the input dimension. First Dense layer: K = W² G / d + b², and Θ = K (the
    input has no trainable part). ReLU: ``fc_kernel.relu_moments``, E[relu(u) relu(v)] and
    E[relu'(u) relu'(v)], the second multiplying Θ. Readout Dense layer: K' = W² K_relu + b²,
    Θ' = K' + W² Θ_relu.
    """
    k12 = W_VAR * gram / dim + B_VAR
    k11 = W_VAR * sq_norms1 / dim + B_VAR
    k22 = W_VAR * sq_norms2 / dim + B_VAR
    nngp_relu, dot = fc_kernel.relu_moments(k12, k11, k22, polynomial=False)
    nngp = W_VAR * nngp_relu + B_VAR
    ntk = nngp + W_VAR * k12 * dot  # Θ of the first layer is K12
    return nngp, ntk


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def main() -> int:
    started = time.perf_counter()
    print(machine())
    print(f"median of {REPEATS} interleaved timed calls after a warm-up, float32, all in this process\n")

    _, _, package_kernel_fn = architecture("fc", depth=1)
    package_kernel = jax.jit(package_kernel_fn, static_argnames="get")
    fc_kernel = jax.jit(package_kernel_fn.reference, static_argnames="get")  # neural-tangents' own
    task = make_task("mnist-5k", classes=None, n_train=max(FC_SIZES), n_test=1, seed=0)
    images = task.x_train  # (4000, 28, 28, 1), a random subset; prefixes are random subsets too
    dim = int(np.prod(images.shape[1:]))

    # --- Check: our depth-1 formula is the computation kernel_fn does. -------------------
    # Compared in float64 (the formula itself) and in float32 off the diagonal (what is timed).
    # On the diagonal (cos θ = 1) float32 rounding of kernel_fn itself is ~1e-4, so there the
    # float32 difference is printed, with each side's error against float64, but not judged.
    def check(dtype):
        x = jnp.asarray(images[:CHECK_IMAGES], dtype=dtype)
        flat = x.reshape(len(x), -1)
        gram = flat @ flat.T
        sq_norms = jnp.diagonal(gram)
        ours = relu_fc_kernels(gram, sq_norms, sq_norms, dim)
        theirs = fc_kernel(x, x, get="nngp"), fc_kernel(x, x, get="ntk")
        package = package_kernel(x, x, get="nngp"), package_kernel(x, x, get="ntk")
        return [np.asarray(k, dtype=np.float64) for k in ours + theirs + package]

    def rel(a, b, mask):
        return float(np.max(np.abs(a - b)[mask] / np.abs(b)[mask]))

    with jax.enable_x64(True):
        nngp64, ntk64, nt_nngp64, nt_ntk64, pk_nngp64, pk_ntk64 = check(jnp.float64)
    nngp32, ntk32, nt_nngp32, nt_ntk32, pk_nngp32, pk_ntk32 = check(jnp.float32)
    every = np.ones(ntk64.shape, dtype=bool)
    diagonal = np.eye(len(ntk64), dtype=bool)
    worst = {
        "float64 NTK": rel(ntk64, nt_ntk64, every),
        "float64 NNGP": rel(nngp64, nt_nngp64, every),
        "float32 NTK off-diagonal": rel(ntk32, nt_ntk32, ~diagonal),
        "float32 NNGP off-diagonal": rel(nngp32, nt_nngp32, ~diagonal),
        "package float64 NTK off-diagonal": rel(pk_ntk64, nt_ntk64, ~diagonal),
        "package float64 NNGP": rel(pk_nngp64, nt_nngp64, every),
        "package float32 NTK off-diagonal": rel(pk_ntk32, nt_ntk32, ~diagonal),
        "package float32 NNGP off-diagonal": rel(pk_nngp32, nt_nngp32, ~diagonal),
    }
    print(
        f"check on {CHECK_IMAGES} images, max relative difference of our formula vs kernel_fn "
        f"(tolerance {CHECK_RTOL:.0e}): " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items())
    )
    print(
        f"   float32 NTK diagonal: {rel(ntk32, nt_ntk32, diagonal):.1e} (not judged: vs float64 "
        f"kernel_fn is off by {rel(nt_ntk32, nt_ntk64, diagonal):.1e} there, our formula by "
        f"{rel(ntk32, nt_ntk64, diagonal):.1e}, the package's by {rel(pk_ntk32, pk_ntk64, diagonal):.1e} "
        f"(it takes cos θ within 16 ulp of 1 as 1; float64 kernel_fn itself is off by "
        f"{rel(nt_ntk64, pk_ntk64, diagonal):.1e} there))"
    )
    if not all(v <= CHECK_RTOL for v in worst.values()):
        print(
            "MISMATCH: the elementwise formula is not what kernel_fn computes; the breakdown below "
            "would be meaningless",
            file=sys.stderr,
        )
        return 1

    # --- 1. FC NTK vs the Gram matmul, and the breakdown. ---------------------------------
    gram_fn = jax.jit(lambda a: a @ a.T)
    elementwise_fn = jax.jit(lambda g, s: relu_fc_kernels(g, s, s, dim)[1])
    rows, breakdown, package_rows = [], [], []
    for n in FC_SIZES:
        x = jax.device_put(images[:n])
        flat = jax.device_put(images[:n].reshape(n, -1))
        gram = jax.block_until_ready(gram_fn(flat))
        sq_norms = jax.block_until_ready(jnp.diagonal(gram))
        t = median_seconds(
            {
                "gram": (gram_fn, flat),
                "elem": (elementwise_fn, gram, sq_norms),
                "ntk": (lambda a: fc_kernel(a, a, get="ntk"), x),
                "nngp": (lambda a: fc_kernel(a, a, get="nngp"), x),
                "package ntk": (lambda a: package_kernel(a, a, get="ntk"), x),
                "package nngp": (lambda a: package_kernel(a, a, get="nngp"), x),
            }
        )
        del gram
        t_gram, t_elem, t_ntk, t_nngp = t["gram"], t["elem"], t["ntk"], t["nngp"]
        t_pk, t_pk_nngp = t["package ntk"], t["package nngp"]
        package_rows.append(
            (
                f"{n}",
                ms(t_gram),
                ms(t_pk),
                f"{t_pk / t_gram:.2f}x",
                ms(t_pk_nngp),
                f"{t_pk_nngp / t_gram:.2f}x",
                ms(t_ntk),
                f"{t_ntk / t_gram:.2f}x",
                f"{t_ntk / t_pk:.1f}x",
            )
        )
        t_other = t_ntk - t_gram - t_elem
        rows.append(
            (
                f"{n}",
                ms(t_gram),
                ms(t_ntk),
                f"{t_ntk / t_gram:.1f}x",
                ms(t_nngp),
                f"{t_nngp / t_gram:.1f}x",
                f"{t_ntk / n**2 * 1e9:.1f} ns",
            )
        )
        breakdown.append(
            (
                f"{n}",
                ms(t_elem),
                f"{t_gram / t_ntk:.0%}",
                f"{t_elem / t_ntk:.0%}",
                f"{t_other / t_ntk:+.0%}",
                f"{t_nngp / t_ntk:.0%}",
            )
        )
        if n == max(FC_SIZES):
            fc_per_entry, elem_per_entry = t_ntk / n**2, t_elem / n**2
            package_last = t_pk / t_gram
            last = (t_ntk / t_gram, t_gram / t_ntk, t_elem / t_ntk, t_other / t_ntk, t_nngp / t_ntk)
            last_nt = t_ntk / t_gram
    print(
        f"\n1. FC NTK (depth 1), kernel_fn(x, x) on the whole N x N at once, vs the Gram X Xᵀ (X: N x {dim}, float32)"
    )
    print("   the package's, architecture('fc', 1)[2] (ntk_notes.fc_kernel), and neural-tangents' kernel_fn")
    print_table(
        ("N", "Gram", "package NTK", "/Gram", "package NNGP", "/Gram", "neural-tangents NTK", "/Gram", "speed-up"),
        package_rows,
    )
    print(
        f"   -> at N = {max(FC_SIZES)} the package's FC NTK costs {package_last:.2f}x the bare Gram matmul "
        f"(target <= 1.5x: {'MET' if package_last <= 1.5 else 'NOT met'}), neural-tangents' {last_nt:.2f}x"
    )
    print("\n   neural-tangents' kernel_fn alone")
    print_table(("N", "Gram", "NTK", "NTK/Gram", "NNGP", "NNGP/Gram", "NTK per entry"), rows)
    print(
        "\n   where neural-tangents' NTK time goes (shares of its time; elementwise = a depth-1 ReLU NTK "
        "formula with jnp.arccos applied to a precomputed Gram)"
    )
    print_table(("N", "elementwise", "Gram share", "elementwise share", "other", "NNGP/NTK"), breakdown)
    n = max(FC_SIZES)
    if abs(last[3]) > 0.1:
        other = f"the remaining {last[3]:+.0%} is neural-tangents' own extra work"
    else:
        other = f"no other overhead of note (rest {last[3]:+.0%}" + (
            ": kernel_fn's elementwise pass is slightly cheaper than our standalone one)" if last[3] < 0 else ")"
        )
    print(
        f"   -> at N = {n} neural-tangents' FC NTK costs {last[0]:.1f}x the bare Gram matmul: the matmul is "
        f"{last[1]:.0%} of it, one elementwise arc-cosine pass over the N² entries {last[2]:.0%}, and "
        f"{other}; asking for the NNGP only saves nothing ({last[4]:.0%} of the NTK time), as both "
        f"need θ = arccos(...) for every entry."
    )

    # --- 2. Conv kernel per entry. ---------------------------------------------------------
    _, _, conv_kernel_fn = architecture("conv", depth=1)
    conv_kernel = jax.jit(conv_kernel_fn, static_argnames="get")
    calls = {}
    for size in CONV_IMAGE_SIZES:
        pool = (
            images
            if size == 28
            else make_task(
                "mnist-5k", classes=None, n_train=2 * max(CONV_BLOCKS), n_test=1, seed=0, image_size=size
            ).x_train
        )
        for block in CONV_BLOCKS:
            x1, x2 = jax.device_put(pool[:block]), jax.device_put(pool[block : 2 * block])
            calls[size, block] = (lambda a, b: conv_kernel(a, b, get="ntk"), x1, x2)
    times = median_seconds(calls)
    per_entry = {(size, block): (t, t / block**2) for (size, block), t in times.items()}
    base = per_entry[28, min(CONV_BLOCKS)][1]
    rows = [
        (
            f"{size}x{size}",
            f"{block}x{block}",
            ms(t),
            f"{pe:.2e} s",
            f"{pe * 1e6:.2f} us",
            f"{pe / base:.2f}",
            f"{pe / fc_per_entry:.0f}x",
        )
        for (size, block), (t, pe) in per_entry.items()
    ]
    print("\n2. conv NTK (depth 1, 3x3 SAME, Flatten readout), one off-diagonal block per call")
    print_table(
        (
            "images",
            "block",
            "time",
            "per entry",
            "per entry",
            "vs 28x28 64-block",
            f"vs n-t FC NTK (N={n})",
        ),
        rows,
    )
    big = per_entry[28, max(CONV_BLOCKS)][1]
    small = per_entry[14, max(CONV_BLOCKS)][1]
    print(
        f"   -> a conv NTK entry costs {big / fc_per_entry:.0f}x an FC one on 28x28 images: "
        f"{big / 784 * 1e9:.1f} ns per entry and pixel, vs {elem_per_entry * 1e9:.1f} ns per entry for "
        f"the FC's elementwise pass, i.e. roughly one arc-cosine pass per pixel; halving the side "
        f"(4x fewer pixels) makes it {big / small:.1f}x cheaper, and a {n} x {n} conv NTK on 28x28 "
        f"would take ~{big * n * (n + 1) / 2:.0f} s (symmetric half, {max(CONV_BLOCKS)}-blocks)."
    )
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
