"""How fast are the usefulness and robustness of all eigen-features, and how well does the
batched computation use the CPU?

Run: ``.venv/bin/python benchmarks/bench_features.py`` (or ``python3 tasks.py bench``, which runs
every ``benchmarks/bench_*.py``). ``--full`` also runs the N = 10 000 eigendecomposition itself
(``predictor.eigen``: 1.5 minutes more on 2 idle CPU cores, over 4 under heavy load) instead of
extrapolating it.

Eigen-features (PAPER.md): Θ(X, X) = Σ_i λ_i v_i v_iᵀ, φ_i(x) = λ_i⁻¹ Θ(x, X) v_i (v_iᵀ Y).
Usefulness of φ_i = its clean test accuracy; robustness = its accuracy under FGSM (ℓ∞, ε = 0.1)
aimed at φ_i itself. The kernel is the FC NTK of depth 1 (``architecture("fc", 1)``), float32,
on 28 x 28 images; n = 100 test images.

What is measured is the package as it is: ``spectral.feature_scores`` with method "fgsm" scores
a chunk of F features in one jitted call, ``spectral.fgsm_chunk(kernel_fn, loss, norm)``. Every
feature's attack starts from the same clean images, so Θ(x, X) and its pullback are taken once
on the n clean images (``spectral.shared_pullback``) and applied to the F features' cotangents
at once, one (F·n x N) @ (N x d) GEMM; the F·n perturbed images then go through one kernel call
against the training set (a Gram GEMM (F·n x d) @ (d x N) and the elementwise arc-cosine pass).
The clean outputs of all features are one BLAS product Θ(x, X) @ W. How many features go in a
chunk, the package decides from XLA's memory analysis of the compiled chunk
(``spectral.chunk_within`` at ``feature_scores``' default ``memory_budget``, 512 MiB); the script
asks the same function for the chunk, to count FLOPs and time a chunk on the same shapes. Nothing
of this is re-implemented here: the script calls the package's functions.

1. All N = 1000 features on mnist-5k. A class pair of mnist-5k has only 1000 images, so N = 1000
   training images would leave no test image: the task is all ten digits
   (``make_task("mnist-5k", classes=None, n_train=1000, n_test=100, seed=0)``), one-hot targets,
   so every feature is a 10-vector, its class the argmax (PAPER.md's many-class form), and the
   attack loss softmax cross-entropy (the package's default for 10 outputs).
   ``spectral.feature_scores(predictor, spectral.feature_weights(predictor), x, labels, 0.1,
   "fgsm")`` (the package) is timed against a per-feature loop written here (the baseline): for
   each feature i, ``attacks.attack(Partial(logits, X, W[:, i]), x, labels, 0.1, "fgsm")`` with
   ``logits(X, w, z) = kernel_fn(z, X, "ntk") @ w`` jitted once (W an argument), i.e. one small
   kernel call (forward, backward, forward at x_adv) per feature; its usefulness comes from one
   clean Θ(x, X) for all features times W (a BLAS matmul), so the loop is charged only for its
   per-feature attacks. All 1000 features are looped (no extrapolation). The loop and the
   package are checked to give exactly the same usefulness and robustness for every feature
   (exact match expected, as in tests/test_spectral.py) before their times are printed.
2. The achieved FLOP rate, as a fraction of a jitted 4096 x 4096 @ 4096 x 4096 float32
   ``jnp.dot`` timed in the same rounds. The package's FLOPs are XLA's own count of its jitted
   chunk, ``spectral.fgsm_chunk(kernel_fn, loss, "linf").lower(x_train, w, x, labels, ε)
   .compile().cost_analysis()["flops"]`` for each chunk's shape, summed over the chunks, plus a
   hand count of the clean part (2·n·N·d for the Gram of Θ(x, X), 2·n·N·F·C for the outputs).
   The loop's: XLA's count of ``attacks.pgd`` (what ``attacks.attack`` runs) on one feature,
   times F, plus the same clean part. The hand count of a chunk's two big GEMMs (the pullback
   product and the Gram at the perturbed images, each 2·F·n·N·d) is printed beside XLA's count.
   A GEMM of the chunk's own shape, (F·n x d) @ (d x N), is timed as a second reference. Where
   the package's time goes: one chunk's jitted ``fgsm_chunk`` call alone, the clean part alone
   (``feature_scores`` with ``epsilon=None``), and one forward ``kernel_fn`` call on a chunk's
   F·n inputs vs its Gram GEMM alone (the rest is the elementwise arc-cosine pass, which XLA
   counts as few FLOPs).
3. N = 10 000 features. mnist-5k has 5000 images; the embedded Fashion-MNIST
   (/usr/share/datasets/fashion-mnist) has 6000 training images per class, so the task is the
   pair t-shirt/top (-1) vs shirt (+1), 10 000 training images from its training split, 100 test
   images from its test split, ±1 targets, binary cross-entropy (the paper's binary setting;
   ten one-hot classes would make ``feature_weights`` an (N, N, 10) float64 array, 8 GB). If
   that directory is missing, the fallback is mnist-5k's ten digits as a binary parity task
   (odd = +1) with copies shifted by one pixel (right, then down) filling N = 10 000. Timed once
   each: Θ(X, X) (``kernel_matrix``), the predictor's Cholesky factorisation, and the
   eigendecomposition, by default on the kernel's leading 2000 x 2000 and 4000 x 4000 blocks
   and extrapolated to N = 10 000 as N³ (``--full``: the real ``predictor.eigen``; it took
   83 s here at a load average of 1.6, against 78 s extrapolated in a run beside it), and
   ``feature_weights`` for all N (by default on a stand-in of the same shapes: its cost is
   memory traffic only). Scoring all 10 000 features (the package's chunks: 177 features each
   in the runs of 2026-11-24) is not run: ``feature_scores`` is timed on the first 1 and 3 of
   its chunks and extrapolated linearly from the difference (time per feature x 10 000 plus the
   fixed part); by default those features come from the top eigenpairs found by randomized
   subspace iteration (the scoring's cost depends only on the shapes; their residuals are
   printed), with ``--full`` from ``feature_weights(predictor)``. The first 20 features' scores
   are checked against the per-feature loop (exact match expected).

The last line states the targets, all at N = 1000: ``feature_scores`` at least 5x faster than
the per-feature loop, at least 50 % of the 4096² matmul's FLOP rate, and at least 80 % of the
FLOP rate of a GEMM of its chunk's shape (the floor of a chunk is its two GEMMs); each is
printed as MET or NOT met. The kernel is the package's: ``architecture("fc", 1)``'s
``kernel_fn`` is the closed form of ``ntk_notes.fc_kernel``, whose arc-cosine pass vectorises.
Every repeated time is the median over interleaved rounds after a warm-up call
(``timing.interleaved_seconds``), all in this one process; ``jax.block_until_ready`` or a host
array ends each call. The load average is printed at the start and the end: this machine is
shared, and other processes inflate the times. Only ratios are meaningful; nothing is asserted
on time. About 2.5 minutes on 2 CPU cores at a load average of ~1.7, 5 GB peak memory; more
under heavier load (``--full``: about 1.5 minutes and 2-3 GB more).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import ntk_notes  # noqa: F401  (must come before neural_tangents: installs its jax shim)

# isort: split

import jax
import jax.numpy as jnp
import neural_tangents
import numpy as np
from jax.tree_util import Partial
from timing import interleaved_seconds  # benchmarks/timing.py, beside this script

from ntk_notes import attacks, kernels, spectral
from ntk_notes.architectures import architecture
from ntk_notes.data import make_task
from ntk_notes.kernels import kernel_block, kernel_matrix
from ntk_notes.predictors import KernelPredictor

EPSILON = 0.1
METHOD = "fgsm"
NORM = "linf"
N_SMALL = 1000
N_LARGE = 10_000
N_TEST = 100
ROUNDS = 2  # timed rounds after the warm-up call (the loop's full call takes tens of seconds)
MATMUL = 4096
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_PAIR = (0, 6)  # t-shirt/top (-1) vs shirt (+1)
LARGE_CHUNKS = (1, 3)  # N = 10 000: feature_scores timed on this many of its chunks, then extrapolated
LARGE_CHECK = 20  # N = 10 000: the first this many features are checked against the per-feature loop
EIGEN_SIZES = (2000, 4000)  # N = 10 000 eigendecomposition extrapolated from these leading blocks
SUBSPACE_PASSES = 4
TARGET_SPEEDUP = 5.0  # feature_scores vs the per-feature loop, N = 1000
TARGET_RATE = 0.5  # feature_scores' FLOP rate as a share of the 4096² matmul's, N = 1000
TARGET_CHUNK_GEMM = 0.8  # feature_scores' FLOP rate as a share of a GEMM of its chunk's shape, N = 1000


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells):
        return "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))

    print(line(header))
    print(line(tuple("-" * w for w in widths)))
    for row in rows:
        print(line(row))


def secs(seconds: float) -> str:
    if seconds < 0.1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def median(times: list[float]) -> float:
    return float(np.median(times))


def xla_flops(jitted, *args, **kwargs) -> float:
    """XLA's own FLOP count of ``jitted`` compiled for these arguments."""
    analysis = jitted.lower(*args, **kwargs).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per device
        analysis = analysis[0]
    return float(analysis["flops"])


def chunk_sizes(n_features: int, chunk: int) -> list[int]:
    return [min(chunk, n_features - s) for s in range(0, n_features, chunk)]


# --- the baseline: one small kernel call per feature ---------------------------------------


def clean_outputs(predictor, weights, x) -> np.ndarray:
    """The baseline's clean part: every feature at the clean test points, (F, n, C) float64, by
    one BLAS matmul."""
    k_test = kernel_block(predictor.kernel_fn, x, predictor.x_train, predictor.batch_size).astype(np.float64)
    n_train, n_features, n_out = weights.shape
    flat = np.ascontiguousarray(weights).reshape(n_train, n_features * n_out)
    return (k_test @ flat).reshape(len(x), n_features, n_out).transpose(1, 0, 2)


def usefulness_of(outputs, labels) -> np.ndarray:
    n_features, n, _ = outputs.shape
    return (
        np.asarray(attacks.is_correct(outputs.reshape(n_features * n, -1), np.tile(labels, n_features)))
        .reshape(n_features, n)
        .mean(1)
    )


@lru_cache(maxsize=8)
def single_feature_logits(kernel_fn):
    """(X, w (N, C), z) -> Θ(z, X) @ w, jitted once: w is an argument, not a constant."""
    return jax.jit(lambda x_train, w, z: kernel_fn(z, x_train, "ntk") @ w)


def loop_feature_scores(predictor, weights, x, labels, epsilon: float) -> spectral.FeatureScores:
    """The baseline: ``attacks.attack(..., "fgsm")`` on the n test images once per feature."""
    x = jnp.asarray(x, predictor.dtype)
    outputs = clean_outputs(predictor, weights, x)
    per_feature = jnp.asarray(np.moveaxis(np.asarray(weights), 1, 0), predictor.dtype)  # (F, N, C)
    logits = single_feature_logits(predictor.kernel_fn)
    robust = np.empty(weights.shape[1])
    for i in range(weights.shape[1]):
        model = Partial(logits, predictor.x_train, per_feature[i])
        robust[i] = attacks.attack(model, x, labels, epsilon, METHOD, norm=NORM).accuracy
    return spectral.FeatureScores(usefulness_of(outputs, labels), robust, outputs)


# --- FLOP counts ------------------------------------------------------------------------------


def package_chunk_args(predictor, weights, x, labels, start: int, chunk: int) -> tuple:
    """The arguments with which ``feature_scores`` calls its jitted ``spectral.fgsm_chunk`` on
    the chunk of features starting at ``start``: (x_train, w (N, F, C), x, labels, ε)."""
    w = jnp.asarray(np.asarray(weights)[:, start : start + chunk], predictor.dtype)
    return predictor.x_train, w, jnp.asarray(x, predictor.dtype), jnp.asarray(np.asarray(labels)), EPSILON


def package_chunk_fn(predictor, n_out: int):
    """The package's own jitted chunk (cached by ``spectral.fgsm_chunk``), for this loss."""
    return spectral.fgsm_chunk(predictor.kernel_fn, attacks.default_loss(n_out), NORM)


def stand_in_weights(predictor, n_features: int, n_out: int) -> np.ndarray:
    """Zero weights (N, F, C): XLA's cost and memory analyses depend only on the shapes."""
    return np.zeros((len(predictor.x_train), n_features, n_out), np.float32)


def package_chunk(predictor, n_out: int, x, labels) -> int:
    """How many features ``feature_scores`` puts in one chunk by default: the package's own
    sizing, ``spectral.chunk_within`` at ``feature_scores``' default ``memory_budget``, applied to
    the package's jitted chunk ``spectral.fgsm_chunk`` (compiled for 1 and 2 features)."""
    budget = inspect.signature(spectral.feature_scores).parameters["memory_budget"].default
    run = package_chunk_fn(predictor, n_out)
    return spectral.chunk_within(
        budget,
        lambda f: (run, package_chunk_args(predictor, stand_in_weights(predictor, f, n_out), x, labels, 0, f), {}),
    )


def clean_flops(n: int, n_train: int, dim: int, n_features: int, n_out: int) -> float:
    """Hand count of the clean part: the Gram of Θ(x, X) and the outputs Θ(x, X) @ W."""
    return 2.0 * n * n_train * dim + 2.0 * n * n_train * n_features * n_out


def gemm_hand_count(n_features: int, n: int, n_train: int, dim: int) -> float:
    """Hand count of a chunk's two big GEMMs: the pullback (F·n x N) @ (N x d) and the Gram at
    the F·n perturbed images (F·n x d) @ (d x N), each 2·F·n·N·d."""
    return 2 * 2.0 * n_features * n * n_train * dim


def package_flops(predictor, n_features: int, n_out: int, x, labels, chunk: int) -> tuple[float, float, float]:
    """(count of every chunk + hand count of the clean part, XLA count of one full chunk,
    hand count of one full chunk's two GEMMs), for ``feature_scores`` on F = ``n_features``
    features in chunks of ``chunk`` (the last one may be smaller). A chunk counts as the larger
    of XLA's count and the hand count of its two GEMMs: XLA counts a while loop's body once,
    and the FC kernel (``ntk_notes.fc_kernel``) takes the rows of a large input in a loop of
    cache-sized blocks, so XLA sees one block of the Gram at the perturbed images."""
    n, dim = len(x), int(np.prod(x.shape[1:]))
    n_train = len(predictor.x_train)
    run = package_chunk_fn(predictor, n_out)
    sizes = chunk_sizes(n_features, chunk)
    per_size = {
        size: xla_flops(
            run, *package_chunk_args(predictor, stand_in_weights(predictor, size, n_out), x, labels, 0, size)
        )
        for size in set(sizes)
    }
    counted = {size: max(flops, gemm_hand_count(size, n, n_train, dim)) for size, flops in per_size.items()}
    total = sum(counted[s] for s in sizes) + clean_flops(n, n_train, dim, n_features, n_out)
    return total, per_size[sizes[0]], gemm_hand_count(sizes[0], n, n_train, dim)


def loop_flops(predictor, weights, x, labels) -> float:
    """XLA count of ``attacks.pgd`` (one FGSM step) on one feature, times F, + the clean part."""
    n, dim = len(x), int(np.prod(x.shape[1:]))
    n_train, n_features, n_out = weights.shape
    single = Partial(
        single_feature_logits(predictor.kernel_fn),
        predictor.x_train,
        jnp.asarray(np.asarray(weights)[:, 0], predictor.dtype),
    )
    steps, step_size, random_start = attacks.step_plan("fgsm", EPSILON, 1)
    per_feature = xla_flops(
        attacks.pgd,
        single,
        jnp.asarray(x, predictor.dtype),
        jnp.asarray(np.asarray(labels)),
        EPSILON,
        step_size,
        jax.random.PRNGKey(0),
        loss=attacks.default_loss(n_out),
        norm=NORM,
        steps=steps,
        random_start=random_start,
    )
    return n_features * per_feature + clean_flops(n, n_train, dim, n_features, n_out)


def compare(name: str, ours: spectral.FeatureScores, reference: spectral.FeatureScores) -> bool:
    """Exact comparison of usefulness and robustness, feature by feature."""
    du = np.abs(np.asarray(ours.usefulness) - reference.usefulness)
    dr = np.abs(np.asarray(ours.robustness) - reference.robustness)
    do = np.abs(np.asarray(ours.clean_outputs) - reference.clean_outputs)
    exact = not du.any() and not dr.any()
    print(
        f"   {name}: usefulness differs on {np.count_nonzero(du)} of {len(du)} features (max |Δ| {du.max():.2f}), "
        f"robustness on {np.count_nonzero(dr)} (max |Δ| {dr.max():.2f}); clean outputs max |Δ| {do.max():.1e} "
        f"-> {'EXACT match' if exact else 'MISMATCH (exact match expected)'}"
    )
    return exact


# --- N = 10 000 -----------------------------------------------------------------------------


def large_task(n_train: int, n_test: int, data_dir: Path = FASHION_DIR):
    """(x_train, y_train (±1), x_test, labels_test, description) of the N = 10 000 task."""
    if data_dir.is_dir():
        task = make_task(
            "fashion-mnist", classes=FASHION_PAIR, n_train=n_train, n_test=n_test, seed=0, data_dir=data_dir
        )
        description = (
            f"Fashion-MNIST ({data_dir}), {task.class_names[0]} (-1) vs {task.class_names[1]} (+1), "
            f"{n_train} training images from its training split, {n_test} test images from its test split"
        )
        return task.x_train, task.y_train, task.x_test, task.labels_test, description
    base = make_task("mnist-5k", classes=None, n_train=5000 - n_test, n_test=n_test, seed=0)
    # One-pixel shifts (np.roll wraps around, harmlessly: MNIST's border pixels are 0).
    copies = [base.x_train, np.roll(base.x_train, 1, axis=2), np.roll(base.x_train, 1, axis=1)]
    if n_train > sum(len(c) for c in copies):
        raise ValueError(f"the mnist-5k fallback holds at most {sum(len(c) for c in copies)} training images")
    x_train = np.concatenate(copies)[:n_train]
    parity = np.tile(base.labels_train % 2, len(copies))[:n_train]
    description = (
        f"FALLBACK ({data_dir} missing): mnist-5k ten digits as odd (+1) vs even (-1), "
        f"{5000 - n_test} training images plus copies shifted one pixel right, then down, first {n_train}"
    )
    y_train = np.where(parity == 1, 1.0, -1.0).astype(np.float32)[:, None]
    return x_train, y_train, base.x_test, base.labels_test % 2, description


def top_eigenpairs(kernel, k: int, passes: int = SUBSPACE_PASSES, seed: int = 0):
    """Approximate top-k eigenpairs (descending) of a symmetric PSD matrix by randomized
    subspace iteration (Halko et al. 2011) with 16 extra vectors, and each pair's relative
    residual ‖Θv − λv‖ / λ."""
    q, _ = np.linalg.qr(kernel @ np.random.default_rng(seed).standard_normal((len(kernel), k + 16)))
    for _ in range(passes):
        q, _ = np.linalg.qr(kernel @ q)
    values, small = np.linalg.eigh(q.T @ kernel @ q)
    order = np.argsort(values)[::-1][:k]
    values, vectors = values[order], q @ small[:, order]
    residuals = np.linalg.norm(kernel @ vectors - vectors * values, axis=0) / values
    return values, vectors, residuals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="run the N = 10 000 eigendecomposition itself")
    full = parser.parse_args().full
    started = time.perf_counter()
    device = jax.devices()[0]
    print(
        f"jax {jax.__version__}, neural-tangents {neural_tangents.__version__}, numpy {np.__version__}, "
        f"device {device.platform}:{device.device_kind}, {os.cpu_count()} CPU cores; {load()}"
    )
    print(
        f"eigen-features of the FC NTK (depth 1), float32, 28 x 28 images, n = {N_TEST} test images, "
        f"{METHOD.upper()} ℓ∞ ε = {EPSILON}; median of {ROUNDS} interleaved timed calls after a warm-up call"
    )
    print(
        "package: spectral.feature_scores, FGSM by spectral.fgsm_chunk (one shared pullback of Θ(x, X) per "
        "chunk, one kernel call at the chunk's perturbed images), clean outputs by one BLAS product\n"
    )
    _, _, kernel_fn = architecture("fc", 1)
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    mat_a = jax.random.normal(key_a, (MATMUL, MATMUL), jnp.float32)
    mat_b = jax.random.normal(key_b, (MATMUL, MATMUL), jnp.float32)
    matmul = jax.jit(jnp.dot)
    matmul_flops = xla_flops(matmul, mat_a, mat_b)
    gemm = jax.jit(lambda a, b: a @ b.T)
    kernel_forward = jax.jit(lambda a, b: kernel_fn(a, b, "ntk"))  # one forward kernel call, Gram + elementwise

    # === 1. and 2.: N = 1000 ===================================================================
    task = make_task("mnist-5k", classes=None, n_train=N_SMALL, n_test=N_TEST, seed=0)
    print(
        f"1./2. N = {N_SMALL}: mnist-5k, all ten digits (a class pair has 1000 images in all, so N = 1000 would "
        f"leave no test image), one-hot targets, softmax cross-entropy, feature class = argmax of its 10 outputs"
    )
    predictor = KernelPredictor(kernel_fn, task.x_train, task.y_train)
    weights = spectral.feature_weights(predictor)  # (N, N, C) float64
    x, labels = jnp.asarray(task.x_test), task.labels_test
    n_train, n_features, n_out = weights.shape
    dim = int(np.prod(x.shape[1:]))
    fits = package_chunk(predictor, n_out, x, labels)
    chunk = spectral.equal_chunk(n_features, fits)  # as feature_scores splits them
    sizes = chunk_sizes(n_features, chunk)
    n_chunks = len(sizes)
    print(
        f"   feature weights {weights.shape} float64 ({weights.nbytes / 1e6:.0f} MB); feature_scores' default chunk "
        f"(its own sizing from XLA's memory analysis of the compiled chunk): {fits} features fit, so "
        f"{n_chunks} equal chunk(s) of up to {chunk} features x {N_TEST} images = {chunk * N_TEST} perturbed inputs "
        f"against N = {n_train}"
    )

    results = {}

    def keep(name, fn):  # the calls' results, kept for the check (the warm-up call gives them)
        def call():
            results[name] = fn()
            return results[name].robustness

        return call

    chunk_run = package_chunk_fn(predictor, n_out)
    chunk_args = package_chunk_args(predictor, weights, x, labels, 0, chunk)
    chunk_inputs = jnp.tile(chunk_args[2], (chunk,) + (1,) * (x.ndim - 1))  # a chunk's F·n inputs (shape only)
    gram_shape = (jnp.ones((chunk * N_TEST, dim), jnp.float32), jnp.ones((n_train, dim), jnp.float32))
    calls = {
        "package": (
            keep(
                "package",
                lambda: spectral.feature_scores(predictor, weights, x, labels, EPSILON, METHOD, show_progress=False),
            ),
        ),
        "loop": (keep("loop", lambda: loop_feature_scores(predictor, weights, x, labels, EPSILON)),),
        "package chunk": (chunk_run, *chunk_args),
        "package clean": (lambda: spectral.feature_scores(predictor, weights, x, labels, None).usefulness,),
        "matmul": (matmul, mat_a, mat_b),
        "gemm chunk shape": (gemm, *gram_shape),
        "kernel chunk": (kernel_forward, chunk_inputs, predictor.x_train),
    }
    times = {name: median(t) for name, t in interleaved_seconds(calls, ROUNDS).items()}

    print("\n   check: the per-feature loop against the package's feature_scores, every feature")
    if not compare("loop baseline vs package", results["loop"], results["package"]):
        print(
            "MISMATCH: the loop and the package do not compute the same scores; comparing their speed would be "
            "meaningless",
            file=sys.stderr,
        )
        return 1

    flops_package, flops_chunk, hand_chunk = package_flops(predictor, n_features, n_out, x, labels, chunk)
    flops_loop = loop_flops(predictor, weights, x, labels)
    flops_clean = clean_flops(N_TEST, n_train, dim, n_features, n_out)
    peak = matmul_flops / times["matmul"]
    gemm_rate = 2.0 * chunk * N_TEST * dim * n_train / times["gemm chunk shape"]

    def rate_row(name, seconds, flops, vs_loop=True):
        rate = flops / seconds
        return (
            name,
            secs(seconds),
            f"{times['loop'] / seconds:.2f}x" if vs_loop else "",
            f"{flops / 1e9:.0f}",
            f"{rate / 1e9:.0f}",
            f"{rate / peak:.0%}",
            f"{rate / gemm_rate:.0%}",
        )

    print(
        f"\n1. all {n_features} features, usefulness + robustness ({METHOD.upper()} ε = {EPSILON}) on {N_TEST} test "
        f"images: time, speedup over the per-feature loop, FLOPs (XLA's count of the jitted attack code + hand "
        f"count of the clean part), rate"
    )
    full_chunks = sizes.count(chunk)
    rows = [
        rate_row("loop: attacks.attack per feature", times["loop"], flops_loop),
        rate_row("package: spectral.feature_scores", times["package"], flops_package),
        rate_row(
            f"  its jitted chunks ({full_chunks} x fgsm_chunk)",
            full_chunks * times["package chunk"],
            full_chunks * max(flops_chunk, hand_chunk),
            vs_loop=False,
        ),
        rate_row("  its clean part (epsilon=None)", times["package clean"], flops_clean, vs_loop=False),
        rate_row(f"reference: {MATMUL}² @ {MATMUL}² jnp.dot", times["matmul"], matmul_flops, vs_loop=False),
        rate_row(
            f"reference: ({chunk * N_TEST} x {dim}) @ ({dim} x {n_train})",
            times["gemm chunk shape"],
            2.0 * chunk * N_TEST * dim * n_train,
            vs_loop=False,
        ),
    ]
    table(("variant", "time", "vs loop", "GFLOP", "GFLOP/s", "of matmul", "of chunk GEMM"), rows)
    if full_chunks != n_chunks:
        print(f"   ({n_chunks - full_chunks} ragged chunk(s) not in the 'its jitted chunks' row)")
    outside = times["package"] - full_chunks * times["package chunk"] - times["package clean"]
    print(
        f"   package time outside its jitted chunks and its clean part: {secs(outside)} "
        f"({outside / times['package']:.0%}), a difference of separately timed calls, not measured itself: "
        f"validation, the per-chunk float32 copies of the weights, and the spread between rounds on this shared "
        f"machine (see the load average)"
    )
    print(
        f"   one forward kernel_fn call on a chunk's {chunk * N_TEST} inputs against N = {n_train}: "
        f"{secs(times['kernel chunk'])}, of which its Gram GEMM alone {secs(times['gemm chunk shape'])}: the rest, "
        f"{secs(times['kernel chunk'] - times['gemm chunk shape'])}, is the elementwise arc-cosine pass over its "
        f"{chunk * N_TEST * n_train / 1e6:.0f} M entries, which XLA counts as few FLOPs; a package chunk makes "
        f"one such call (at the perturbed images), plus a forward pass and its pullback at the {N_TEST} clean "
        f"images, applied to all {chunk} features' cotangents by one GEMM"
    )
    print(
        f"   FLOPs of one chunk of {chunk} features: XLA {flops_chunk / 1e9:.1f} G vs hand count of its two GEMMs "
        f"(pullback (F·n x N) @ (N x d) and Gram at x_adv (F·n x d) @ (d x N), each 2·F·n·N·d) "
        f"{hand_chunk / 1e9:.1f} G; the rates above count the larger"
        + (" (XLA counts the kernel's loop over row blocks once)" if flops_chunk < hand_chunk else "")
    )
    speedup = times["loop"] / times["package"]
    rate_share = flops_package / times["package"] / peak
    gemm_share = flops_package / times["package"] / gemm_rate

    # === 3.: N = 10 000 ========================================================================
    x_train, y_train, x_test, labels_test, description = large_task(N_LARGE, N_TEST)
    x_test = jnp.asarray(x_test)
    print(f"\n3. N = {N_LARGE}: {description}; binary cross-entropy, ±1 targets, {load()}")
    once = {}
    start = time.perf_counter()
    k_train = kernel_matrix(kernel_fn, x_train, show_progress=False)
    once["Θ(X, X), kernel_matrix"] = (time.perf_counter() - start, "measured once")
    start = time.perf_counter()
    big = KernelPredictor(kernel_fn, x_train, y_train, k_train_train=k_train)
    once["Cholesky (KernelPredictor)"] = (time.perf_counter() - start, "measured once, float64")
    del k_train
    print(f"   Θ(X, X) {big.k_train_train.shape} float64 {big.k_train_train.nbytes / 1e6:.0f} MB per matrix")
    n_large_chunk = package_chunk(big, 1, x_test, labels_test)
    n_sub = min(max(LARGE_CHUNKS) * n_large_chunk, N_LARGE)
    print(f"   feature_scores' default chunk here: {n_large_chunk} features")
    if full:
        start = time.perf_counter()
        _ = big.eigen  # the cached property: computed here, timed
        once["eigendecomposition"] = (time.perf_counter() - start, "measured once (predictor.eigen, --full)")
        start = time.perf_counter()
        large_weights = spectral.feature_weights(big)
        once["feature_weights, all N"] = (
            time.perf_counter() - start,
            f"measured once, {large_weights.nbytes / 1e6:.0f} MB",
        )
        large_weights = large_weights[:, :n_sub]
    else:
        eigen_times = {}
        for m in EIGEN_SIZES:
            block = np.ascontiguousarray(big.k_train_train[:m, :m])
            start = time.perf_counter()
            kernels.eigendecomposition(block)
            eigen_times[m] = time.perf_counter() - start
            del block
        small_m, large_m = EIGEN_SIZES
        exponent = np.log(eigen_times[large_m] / eigen_times[small_m]) / np.log(large_m / small_m)
        how = (
            f"EXTRAPOLATED as N³ from {secs(eigen_times[large_m])} at {large_m} ({secs(eigen_times[small_m])} "
            f"at {small_m}: measured exponent {exponent:.1f}); --full measures it"
        )
        once["eigendecomposition"] = (eigen_times[large_m] * (N_LARGE / large_m) ** 3, how)
        start = time.perf_counter()
        values, vectors, residuals = top_eigenpairs(big.k_train_train, n_sub)
        subspace_time = time.perf_counter() - start
        stand_in = SimpleNamespace(eigen=(values, vectors), y_train=big.y_train)
        large_weights = spectral.feature_weights(stand_in)
        # feature_weights for all N costs only memory traffic (an (N, N) column gather and an (N, N, C) product),
        # so it is timed on a stand-in of the same shapes: Θ(X, X) itself in place of the eigenvectors.
        start = time.perf_counter()
        shaped = spectral.feature_weights(
            SimpleNamespace(eigen=(np.ones(N_LARGE), big.k_train_train), y_train=big.y_train)
        )
        how = f"measured once on a same-shape stand-in, {shaped.nbytes / 1e6:.0f} MB"
        once["feature_weights, all N"] = (time.perf_counter() - start, how)
        del shaped
        print(
            f"   top-{n_sub} eigenpairs for the scored features by subspace iteration ({SUBSPACE_PASSES} passes, "
            f"{secs(subspace_time)}, not part of the pipeline): relative residual ‖Θv - λv‖/λ "
            f"{residuals[:10].max():.1e} for the top 10, {residuals.max():.1e} at worst; λ_1 = {values[0]:.4g}"
        )

    calls = {}
    for n_chunks_timed in LARGE_CHUNKS:
        f = n_chunks_timed * n_large_chunk
        w = large_weights[:, :f]
        calls[f"package {f}"] = (
            keep(
                f"large {f}",
                lambda w=w: spectral.feature_scores(big, w, x_test, labels_test, EPSILON, METHOD, show_progress=False),
            ),
        )
    calls["matmul"] = (matmul, mat_a, mat_b)
    large_times = {name: median(t) for name, t in interleaved_seconds(calls, ROUNDS).items()}
    f1, f2 = (c * n_large_chunk for c in LARGE_CHUNKS)
    n_check = min(LARGE_CHECK, f1)
    loop_large = loop_feature_scores(big, large_weights[:, :n_check], x_test, labels_test, EPSILON)
    first = spectral.FeatureScores(*(np.asarray(a)[:n_check] for a in results[f"large {f1}"]))
    print(f"   check on the first {n_check} features (the package's scores from its timed call on {f1}):")
    if not compare("loop baseline vs package", loop_large, first):
        print(f"MISMATCH at N = {N_LARGE}", file=sys.stderr)
        return 1

    large_sizes = chunk_sizes(N_LARGE, n_large_chunk)
    peak_large = matmul_flops / large_times["matmul"]
    t1, t2 = large_times[f"package {f1}"], large_times[f"package {f2}"]
    per_feature = (t2 - t1) / (f2 - f1)
    scoring_large = t1 + per_feature * (N_LARGE - f1)
    flops_large, chunk_flops_large, hand_large = package_flops(big, N_LARGE, 1, x_test, labels_test, n_large_chunk)

    ragged = f" (the last of {large_sizes[-1]})" if large_sizes[-1] != n_large_chunk else ""
    print(
        f"\n   scoring all {N_LARGE} features = {len(large_sizes)} chunks of {n_large_chunk} features{ragged} x "
        f"{N_TEST} images against N = {N_LARGE}: EXTRAPOLATED (not run) from feature_scores on the first {f1} and "
        f"{f2} features ({LARGE_CHUNKS[0]} and {LARGE_CHUNKS[1]} chunks; fixed part + (t({f2}) - t({f1})) / "
        f"{f2 - f1} per feature x {N_LARGE})"
    )
    rate = flops_large / scoring_large
    table(
        (
            "variant",
            f"t({f1})",
            f"t({f2})",
            "per feature",
            f"all {N_LARGE} (EXTRAPOLATED)",
            "TFLOP",
            "GFLOP/s",
            "of matmul",
        ),
        [
            (
                "package: spectral.feature_scores",
                secs(t1),
                secs(t2),
                f"{per_feature * 1e3:.1f} ms",
                secs(scoring_large),
                f"{flops_large / 1e12:.1f}",
                f"{rate / 1e9:.0f}",
                f"{rate / peak_large:.0%}",
            )
        ],
    )
    print(
        f"   (matmul reference in these rounds: {peak_large / 1e9:.0f} GFLOP/s; XLA FLOPs of one chunk "
        f"{chunk_flops_large / 1e9:.1f} G, hand count of its two GEMMs {hand_large / 1e9:.1f} G)"
    )
    print(f"\n   the rest of the N = {N_LARGE} pipeline, timed apart from the scoring:")
    table(("step", "time", "how"), [(name, secs(t), how) for name, (t, how) in once.items()])
    total_large = sum(t for t, _ in once.values()) + scoring_large
    print(
        f"   -> N = {N_LARGE} end to end with the package ≈ {secs(total_large)} (scoring {secs(scoring_large)}, "
        f"extrapolated; eigendecomposition {secs(once['eigendecomposition'][0])}"
        f"{'' if full else ', extrapolated'})"
    )

    def verdict(met):
        return "MET" if met else "NOT met"

    print(
        f"\nsummary: N = {N_SMALL}: feature_scores {secs(times['package'])} vs per-feature loop "
        f"{secs(times['loop'])} = {speedup:.2f}x "
        f"(target ≥ {TARGET_SPEEDUP:.0f}x: {verdict(speedup >= TARGET_SPEEDUP)}); "
        f"FLOP rate {rate_share:.0%} of a {MATMUL}² matmul (target ≥ {TARGET_RATE:.0%}: "
        f"{verdict(rate_share >= TARGET_RATE)}), {gemm_share:.0%} of a GEMM of its chunk's shape (target ≥ "
        f"{TARGET_CHUNK_GEMM:.0%}: {verdict(gemm_share >= TARGET_CHUNK_GEMM)}); "
        f"N = {N_LARGE}: scoring ≈ {secs(scoring_large)} (extrapolated), "
        f"eigendecomposition {secs(once['eigendecomposition'][0])}{'' if full else ' (extrapolated)'}"
    )
    print(f"{load()}; total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
