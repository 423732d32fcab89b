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

1. All N = 1000 features on mnist-5k. A class pair of mnist-5k has only 1000 images, so N = 1000
   training images would leave no test image: the task is all ten digits
   (``make_task("mnist-5k", classes=None, n_train=1000, n_test=100, seed=0)``), one-hot targets,
   so every feature is a 10-vector, its class the argmax (PAPER.md's many-class form), and the
   attack loss softmax cross-entropy (the package's default for 10 outputs).
   ``spectral.feature_scores(predictor, spectral.feature_weights(predictor), x, labels, 0.1,
   "fgsm")`` (the package) is timed against a per-feature loop written here (the baseline): for
   each feature i, ``attacks.attack(Partial(logits, X, W[:, i]), x, labels, 0.1, "fgsm")`` with
   ``logits(X, w, z) = kernel_fn(z, X, "ntk") @ w`` jitted once (W an argument), i.e. one small
   kernel call per feature; its usefulness comes from one clean Θ(x, X) for all features times W
   (a BLAS matmul), so the loop is charged only for its per-feature attacks. All 1000 features
   are looped (no extrapolation). A third variant, a PROTOTYPE written in this script and not in
   the package, is the change suggested for ``spectral.feature_scores`` (see
   ``prototype_feature_scores``): for FGSM every feature starts from the same clean images, so
   the forward pass Θ(x, X) and its elementwise derivative are computed once per chunk and only
   the pullback (one GEMM) is done per feature (``jax.vmap`` of one ``jax.vjp``); then one
   kernel call at the F·n perturbed images, all in one jitted call, without ``attacks.attack``'s
   host round trip; clean outputs by a BLAS matmul instead of ``np.einsum``. All three are
   checked to give the same usefulness and robustness before their times are printed.
2. The achieved FLOP rate, as a fraction of a jitted 4096 x 4096 @ 4096 x 4096 float32
   ``jnp.dot`` timed in the same rounds. FLOPs are XLA's own count
   (``jax.jit(f).lower(...).compile().cost_analysis()["flops"]``) of the jitted attack on each
   chunk (``attacks._pgd``, what ``attacks.attack`` runs), summed over the chunks, plus a hand
   count of the clean part (2·n·N·d for the Gram of Θ(x, X), 2·n·N·F·C for the outputs); the
   hand count of the chunk's three big GEMMs (forward Gram, input-gradient product, Gram at the
   perturbed images, each 2·F·n·N·d) is printed beside XLA's. A GEMM of the chunk's own shape,
   (F·n x d) @ (d x N), is timed as a second reference. Where the package's time goes: one
   chunk's jitted ``attacks._pgd`` alone vs ``attacks.attack`` on it, the clean outputs by
   ``np.einsum`` (as the package) vs a BLAS matmul, and one forward ``kernel_fn`` call on a
   chunk's F·n inputs vs its Gram GEMM alone (the rest is the elementwise arc-cosine pass).
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
   memory traffic only). Scoring all 10 000 features (500 chunks of 20 features)
   would take minutes, so ``feature_scores`` is timed on the first 1 and 3 chunks (20 and 60
   features) and extrapolated linearly from the difference (time per feature x 10 000 plus the
   fixed part); by default those features come from the top-60 eigenpairs found by randomized
   subspace iteration (the scoring's cost depends only on the shapes; their residuals are
   printed), with ``--full`` from ``feature_weights(predictor)``.

Every repeated time is the median over interleaved rounds after a warm-up call
(``timing.interleaved_seconds``), all in this one process; ``jax.block_until_ready`` or a host
array ends each call. The load average is printed at the start and the end: this machine is
shared, and other processes inflate the times. Only ratios are meaningful; nothing is asserted
on time. About 2 minutes on 2 CPU cores at a load average of ~2, more under heavier load
(``--full``: about 3 minutes; 6.6 GB peak memory, 4 GB without).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import ntk_notes  # noqa: F401  (must come before neural_tangents: installs its jax shim)
import jax
import jax.numpy as jnp
import neural_tangents
import numpy as np
from jax.tree_util import Partial

from ntk_notes import attacks, spectral
from ntk_notes.data import make_task
from ntk_notes.kernels import KernelPredictor, architecture, kernel_block, kernel_matrix
from timing import interleaved_seconds  # benchmarks/timing.py, beside this script

EPSILON = 0.1
METHOD = "fgsm"
N_SMALL = 1000
N_LARGE = 10_000
N_TEST = 100
ROUNDS = 2  # timed rounds after the warm-up call (the package's full call takes ~10 s)
MATMUL = 4096
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_PAIR = (0, 6)  # t-shirt/top (-1) vs shirt (+1)
LARGE_CHUNKS = (1, 3)  # N = 10 000: feature_scores timed on this many chunks, then extrapolated
EIGEN_SIZES = (2000, 4000)  # N = 10 000 eigendecomposition extrapolated from these leading blocks
SUBSPACE_PASSES = 4
CHECK_TOLERANCE = 0.02  # largest allowed |Δ usefulness| or |Δ robustness| per feature (2 of 100 images) ...
CHECK_SHARE = 0.01  # ... and share of features allowed to differ at all (float32 GEMMs of other shapes)


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))
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


def clean_outputs(predictor, weights, x) -> np.ndarray:
    """Every feature at the clean test points, (F, n, C) float64, by one BLAS matmul (what the
    baseline and the prototype use; the package calls ``np.einsum`` on the same arrays)."""
    k_test = kernel_block(predictor.kernel_fn, x, predictor.x_train, predictor.batch_size).astype(np.float64)
    n_train, n_features, n_out = weights.shape
    flat = np.ascontiguousarray(weights).reshape(n_train, n_features * n_out)
    return (k_test @ flat).reshape(len(x), n_features, n_out).transpose(1, 0, 2)


def usefulness_of(outputs, labels) -> np.ndarray:
    n_features, n, _ = outputs.shape
    return np.asarray(attacks.is_correct(outputs.reshape(n_features * n, -1),
                                         np.tile(labels, n_features))).reshape(n_features, n).mean(1)


# --- the baseline: one small kernel call per feature ---------------------------------------

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
        robust[i] = attacks.attack(model, x, labels, epsilon, METHOD).accuracy
    return spectral.FeatureScores(usefulness_of(outputs, labels), robust, outputs)


# --- PROTOTYPE (not in the package): the change suggested for spectral.feature_scores -------

@lru_cache(maxsize=8)
def shared_fgsm(kernel_fn, loss: str, norm: str):
    """PROTOTYPE. (X, W (N, F, C), x (n, ...), labels (n,), ε) -> (F, n) correctness under
    FGSM aimed at each feature, in one jitted call.

    FGSM starts every feature at the same clean images, so Θ(x, X) and the pullback of the
    kernel (its elementwise derivative, (n, N)) are computed once; the loss gradient of feature
    f at x is that pullback applied to the cotangent dΘ[f] = Σ_c ∂L/∂φ_f,c W[:, f, c], and
    ``jax.vmap`` of the pullback over f is one (F·n x N) @ (N x d) GEMM. The F·n perturbed
    images then go through one kernel call, as in the package (``spectral._features_at``).
    Same arithmetic as ``attacks._pgd`` with one step of size ε (``_direction``, ``_project``).
    """
    features_at = spectral._features_at(kernel_fn)

    def run(x_train, weights, x, labels, epsilon):
        n_features, n = weights.shape[1], x.shape[0]
        k_clean, pullback = jax.vjp(lambda z: kernel_fn(z, x_train, "ntk").astype(weights.dtype), x)
        outputs = jnp.einsum("an,nfc->fac", k_clean, weights)  # (F, n, C), every feature at x
        total_loss = lambda out: jnp.sum(attacks.per_example_loss(loss, out, labels))
        d_outputs = jax.vmap(jax.grad(total_loss))(outputs)  # (F, n, C)
        d_kernel = jnp.einsum("fac,nfc->fan", d_outputs, weights)  # (F, n, N)
        (grad,) = jax.vmap(pullback)(d_kernel)  # (F, n, ...)
        xs = jnp.broadcast_to(x, (n_features,) + x.shape).reshape((n_features * n,) + x.shape[1:])
        x_adv = attacks._project(xs, xs + epsilon * attacks._direction(grad.reshape(xs.shape), norm), epsilon, norm)
        correct = attacks.is_correct(features_at(x_train, weights, x_adv), jnp.tile(labels, n_features))
        return correct.reshape(n_features, n)

    return jax.jit(run)


def default_chunk(n: int, n_train: int) -> int:
    return max(1, int(2e7 // (n * n_train)))  # spectral.feature_scores' default


def prototype_feature_scores(predictor, weights, x, labels, epsilon: float, norm: str = "linf",
                             chunk: int | None = None) -> spectral.FeatureScores:
    """PROTOTYPE of ``spectral.feature_scores(..., method="fgsm")``: same chunks, same results."""
    x = jnp.asarray(x, predictor.dtype)
    weights, labels = np.asarray(weights), np.asarray(labels)
    n, n_features = len(x), weights.shape[1]
    chunk = chunk or default_chunk(n, len(predictor.x_train))
    outputs = clean_outputs(predictor, weights, x)
    run = shared_fgsm(predictor.kernel_fn, attacks.default_loss(weights.shape[2]), norm)
    labels_device = jnp.asarray(labels)
    robust = [run(predictor.x_train, jnp.asarray(weights[:, s:s + chunk], predictor.dtype), x, labels_device, epsilon)
              for s in range(0, n_features, chunk)]
    robust = np.concatenate([np.asarray(r).mean(1) for r in robust])  # one host sync at the end
    return spectral.FeatureScores(usefulness_of(outputs, labels), robust, outputs)


# --- FLOP counts ------------------------------------------------------------------------------

def package_chunk_call(predictor, weights, x, labels, start: int, chunk: int):
    """The arguments with which ``feature_scores`` makes ``attacks.attack`` run ``attacks._pgd``
    on the chunk of features starting at ``start``."""
    w = jnp.asarray(np.asarray(weights)[:, start:start + chunk], predictor.dtype)
    f = w.shape[1]
    model = Partial(spectral._features_at(predictor.kernel_fn), predictor.x_train, w)
    xs = jnp.tile(jnp.asarray(x, predictor.dtype), (f,) + (1,) * (x.ndim - 1))
    args = (model, xs, jnp.asarray(np.tile(labels, f)), EPSILON, EPSILON, jax.random.PRNGKey(0))
    kwargs = {"loss": attacks.default_loss(weights.shape[2]), "norm": "linf", "steps": 1, "random_start": False}
    return args, kwargs


def clean_flops(n: int, n_train: int, dim: int, n_features: int, n_out: int) -> float:
    """Hand count of the clean part: the Gram of Θ(x, X) and the outputs Θ(x, X) @ W."""
    return 2.0 * n * n_train * dim + 2.0 * n * n_train * n_features * n_out


def chunk_sizes(n_features: int, chunk: int) -> list[int]:
    return [min(chunk, n_features - s) for s in range(0, n_features, chunk)]


def package_flops(predictor, weights, x, labels) -> tuple[float, float, float]:
    """(XLA count of every chunk + hand count of the clean part, XLA count of one full chunk,
    hand count of one full chunk's three GEMMs), for ``feature_scores`` on these weights."""
    n, dim = len(x), int(np.prod(x.shape[1:]))
    n_train, n_features, n_out = weights.shape
    chunk = default_chunk(n, n_train)
    per_size = {}
    for size in set(chunk_sizes(n_features, chunk)):
        args, kwargs = package_chunk_call(predictor, weights, x, labels, 0, size)
        per_size[size] = xla_flops(attacks._pgd, *args, **kwargs)
    total = sum(per_size[s] for s in chunk_sizes(n_features, chunk)) + clean_flops(n, n_train, dim, n_features, n_out)
    full = min(chunk, n_features)
    return total, per_size[full], 3 * 2.0 * full * n * n_train * dim


def prototype_flops(predictor, weights, x, labels) -> tuple[float, float]:
    """(XLA count of every chunk + the clean part, XLA count of one full chunk) of the prototype."""
    n, dim = len(x), int(np.prod(x.shape[1:]))
    n_train, n_features, n_out = weights.shape
    chunk = default_chunk(n, n_train)
    run = shared_fgsm(predictor.kernel_fn, attacks.default_loss(n_out), "linf")
    per_size = {size: xla_flops(run, predictor.x_train, jnp.zeros((n_train, size, n_out), predictor.dtype),
                                jnp.asarray(x, predictor.dtype), jnp.asarray(labels), EPSILON)
                for size in set(chunk_sizes(n_features, chunk))}
    total = sum(per_size[s] for s in chunk_sizes(n_features, chunk)) + clean_flops(n, n_train, dim, n_features, n_out)
    return total, per_size[min(chunk, n_features)]


def compare(name: str, ours: spectral.FeatureScores, reference: spectral.FeatureScores) -> bool:
    du = np.abs(np.asarray(ours.usefulness) - reference.usefulness)
    dr = np.abs(np.asarray(ours.robustness) - reference.robustness)
    ok = max(du.max(), dr.max()) <= CHECK_TOLERANCE and max(np.mean(du > 0), np.mean(dr > 0)) <= CHECK_SHARE
    print(f"   {name:34s} max |Δ usefulness| {du.max():.2f} ({np.mean(du > 0):.1%} of features differ), "
          f"max |Δ robustness| {dr.max():.2f} ({np.mean(dr > 0):.1%} differ){'' if ok else '  MISMATCH'}")
    return ok


# --- N = 10 000 -----------------------------------------------------------------------------

def large_task(n_train: int, n_test: int, data_dir: Path = FASHION_DIR):
    """(x_train, y_train (±1), x_test, labels_test, description) of the N = 10 000 task."""
    if data_dir.is_dir():
        task = make_task("fashion-mnist", classes=FASHION_PAIR, n_train=n_train, n_test=n_test, seed=0,
                         data_dir=data_dir)
        description = (f"Fashion-MNIST ({data_dir}), {task.class_names[0]} (-1) vs {task.class_names[1]} (+1), "
                       f"{n_train} training images from its training split, {n_test} test images from its test split")
        return task.x_train, task.y_train, task.x_test, task.labels_test, description
    base = make_task("mnist-5k", classes=None, n_train=5000 - n_test, n_test=n_test, seed=0)
    # One-pixel shifts (np.roll wraps around, harmlessly: MNIST's border pixels are 0).
    copies = [base.x_train, np.roll(base.x_train, 1, axis=2), np.roll(base.x_train, 1, axis=1)]
    if n_train > sum(len(c) for c in copies):
        raise ValueError(f"the mnist-5k fallback holds at most {sum(len(c) for c in copies)} training images")
    x_train = np.concatenate(copies)[:n_train]
    parity = np.tile(base.labels_train % 2, len(copies))[:n_train]
    description = (f"FALLBACK ({data_dir} missing): mnist-5k ten digits as odd (+1) vs even (-1), "
                   f"{5000 - n_test} training images plus copies shifted one pixel right, then down, first {n_train}")
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
    print(f"jax {jax.__version__}, neural-tangents {neural_tangents.__version__}, numpy {np.__version__}, "
          f"device {device.platform}:{device.device_kind}, {os.cpu_count()} CPU cores; {load()}")
    print(f"eigen-features of the FC NTK (depth 1), float32, 28 x 28 images, n = {N_TEST} test images, "
          f"{METHOD.upper()} ℓ∞ ε = {EPSILON}; median of {ROUNDS} interleaved timed calls after a warm-up call\n")
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
    print(f"1./2. N = {N_SMALL}: mnist-5k, all ten digits (a class pair has 1000 images in all, so N = 1000 would "
          f"leave no test image), one-hot targets, softmax cross-entropy, feature class = argmax of its 10 outputs")
    predictor = KernelPredictor(kernel_fn, task.x_train, task.y_train)
    weights = spectral.feature_weights(predictor)  # (N, N, C) float64
    x, labels = jnp.asarray(task.x_test), task.labels_test
    n_train, n_features, n_out = weights.shape
    dim = int(np.prod(x.shape[1:]))
    chunk = default_chunk(N_TEST, n_train)
    n_chunks = len(chunk_sizes(n_features, chunk))
    print(f"   feature weights {weights.shape} float64 ({weights.nbytes / 1e6:.0f} MB); feature_scores' default chunk: "
          f"{chunk} features x {N_TEST} images = {chunk * N_TEST} perturbed inputs against N = {n_train}, "
          f"{n_chunks} chunks")

    results = {}

    def keep(name, fn):  # the calls' results, kept for the check (the warm-up call gives them)
        def call():
            results[name] = fn()
            return results[name].robustness
        return call

    chunk_args, chunk_kwargs = package_chunk_call(predictor, weights, x, labels, 0, chunk)
    gram_shape = (jnp.ones((chunk * N_TEST, dim), jnp.float32), jnp.ones((n_train, dim), jnp.float32))
    k_test = kernel_block(kernel_fn, x, predictor.x_train).astype(np.float64)
    calls = {
        "package": (keep("package", lambda: spectral.feature_scores(predictor, weights, x, labels, EPSILON, METHOD,
                                                                    show_progress=False)),),
        "loop": (keep("loop", lambda: loop_feature_scores(predictor, weights, x, labels, EPSILON)),),
        "prototype": (keep("prototype", lambda: prototype_feature_scores(predictor, weights, x, labels, EPSILON)),),
        "chunk _pgd": (lambda: attacks._pgd(*chunk_args, **chunk_kwargs),),
        "chunk attack": (lambda: attacks.attack(chunk_args[0], chunk_args[1], np.asarray(chunk_args[2]), EPSILON,
                                                METHOD, batch_size=chunk * N_TEST).correct,),
        "einsum clean": (lambda: np.einsum("an,nfc->fac", k_test, weights),),
        "matmul clean": (lambda: (k_test @ weights.reshape(n_train, -1)),),
        "matmul": (matmul, mat_a, mat_b),
        "gemm chunk shape": (gemm, *gram_shape),
        "kernel chunk": (kernel_forward, chunk_args[1], predictor.x_train),
    }
    times = {name: median(t) for name, t in interleaved_seconds(calls, ROUNDS).items()}

    print(f"\n   check, against the package's feature_scores (tolerance: |Δ| ≤ {CHECK_TOLERANCE} per feature, "
          f"≤ {CHECK_SHARE:.0%} of features differing)")
    ok = compare("loop baseline", results["loop"], results["package"])
    ok &= compare("prototype (shared clean gradient)", results["prototype"], results["package"])
    if not ok:
        print("MISMATCH: the variants do not compute the same scores; comparing their speed would be meaningless",
              file=sys.stderr)
        return 1

    flops_package, flops_chunk, hand_chunk = package_flops(predictor, weights, x, labels)
    flops_proto, flops_proto_chunk = prototype_flops(predictor, weights, x, labels)
    _, kwargs1 = package_chunk_call(predictor, weights, x, labels, 0, 1)
    single = Partial(single_feature_logits(kernel_fn), predictor.x_train, jnp.asarray(weights[:, 0], predictor.dtype))
    flops_loop = n_features * xla_flops(attacks._pgd, single, x, jnp.asarray(labels), EPSILON, EPSILON,
                                        jax.random.PRNGKey(0), **kwargs1) + clean_flops(N_TEST, n_train, dim,
                                                                                         n_features, n_out)
    peak = matmul_flops / times["matmul"]
    gemm_rate = 2.0 * chunk * N_TEST * dim * n_train / times["gemm chunk shape"]

    def rate_row(name, seconds, flops, vs_loop=True):
        rate = flops / seconds
        return (name, secs(seconds), f"{times['loop'] / seconds:.2f}x" if vs_loop else "",
                f"{flops / 1e9:.0f}", f"{rate / 1e9:.0f}", f"{rate / peak:.0%}", f"{rate / gemm_rate:.0%}")

    print(f"\n1. all {n_features} features, usefulness + robustness ({METHOD.upper()} ε = {EPSILON}) on {N_TEST} test "
          f"images: time, speedup over the per-feature loop, FLOPs (XLA's count of the jitted attacks + hand count "
          f"of the clean part), rate")
    rows = [
        rate_row("loop: attacks.attack per feature", times["loop"], flops_loop),
        rate_row("package: spectral.feature_scores", times["package"], flops_package),
        rate_row(f"  its jitted attack chunks ({n_chunks} x _pgd)", n_chunks * times["chunk _pgd"],
                 n_chunks * flops_chunk, vs_loop=False),
        rate_row("PROTOTYPE: shared clean gradient", times["prototype"], flops_proto),
        rate_row(f"reference: {MATMUL}² @ {MATMUL}² jnp.dot", times["matmul"], matmul_flops, vs_loop=False),
        rate_row(f"reference: ({chunk * N_TEST} x {dim}) @ ({dim} x {n_train})", times["gemm chunk shape"],
                 2.0 * chunk * N_TEST * dim * n_train, vs_loop=False),
    ]
    table(("variant", "time", "vs loop", "GFLOP", "GFLOP/s", "of matmul", "of chunk GEMM"), rows)
    outside = times["package"] - n_chunks * times["chunk _pgd"]
    print(f"   package time outside its jitted chunks: {secs(outside)} ({outside / times['package']:.0%}): per chunk "
          f"attacks.attack costs {secs(times['chunk attack'])} vs {secs(times['chunk _pgd'])} for its jitted _pgd "
          f"(validation, host copies of x_adv); the clean outputs cost {secs(times['einsum clean'])} by np.einsum "
          f"vs {secs(times['matmul clean'])} by a BLAS matmul (k_test @ W.reshape(N, F·C))")
    print(f"   one forward kernel_fn call on a chunk's {chunk * N_TEST} inputs against N = {n_train}: "
          f"{secs(times['kernel chunk'])}, of which its Gram GEMM alone {secs(times['gemm chunk shape'])}: the rest, "
          f"{secs(times['kernel chunk'] - times['gemm chunk shape'])}, is the elementwise arc-cosine pass over its "
          f"{chunk * N_TEST * n_train / 1e6:.0f} M entries, which XLA counts as few FLOPs; the package's chunk makes "
          f"two forward passes and one backward, the prototype's one forward pass and one pullback GEMM")
    print(f"   FLOPs of one chunk of {chunk} features: XLA {flops_chunk / 1e9:.1f} G vs hand count of its three GEMMs "
          f"(forward Gram, input-gradient product, Gram at x_adv, each 2·F·n·N·d) {hand_chunk / 1e9:.1f} G; the "
          f"prototype's chunk {flops_proto_chunk / 1e9:.1f} G (two GEMMs: the pullback and the Gram at x_adv)")
    speedup = times["loop"] / times["package"]
    proto_speedup = times["loop"] / times["prototype"]
    rate_share = flops_package / times["package"] / peak

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
    n_large_chunk = default_chunk(N_TEST, N_LARGE)
    n_sub = max(LARGE_CHUNKS) * n_large_chunk
    if full:
        start = time.perf_counter()
        _ = big.eigen  # the cached property: computed here, timed
        once["eigendecomposition"] = (time.perf_counter() - start, "measured once (predictor.eigen, --full)")
        start = time.perf_counter()
        large_weights = spectral.feature_weights(big)
        once["feature_weights, all N"] = (time.perf_counter() - start,
                                          f"measured once, {large_weights.nbytes / 1e6:.0f} MB")
        large_weights = large_weights[:, :n_sub]
    else:
        eigen_times = {}
        for m in EIGEN_SIZES:
            block = np.ascontiguousarray(big.k_train_train[:m, :m])
            start = time.perf_counter()
            spectral.eigendecomposition(block)
            eigen_times[m] = time.perf_counter() - start
            del block
        small_m, large_m = EIGEN_SIZES
        exponent = np.log(eigen_times[large_m] / eigen_times[small_m]) / np.log(large_m / small_m)
        how = (f"EXTRAPOLATED as N³ from {secs(eigen_times[large_m])} at {large_m} ({secs(eigen_times[small_m])} "
               f"at {small_m}: measured exponent {exponent:.1f}); --full measures it")
        once["eigendecomposition"] = (eigen_times[large_m] * (N_LARGE / large_m) ** 3, how)
        start = time.perf_counter()
        values, vectors, residuals = top_eigenpairs(big.k_train_train, n_sub)
        subspace_time = time.perf_counter() - start
        stand_in = SimpleNamespace(eigen=(values, vectors), y_train=big.y_train)
        large_weights = spectral.feature_weights(stand_in)
        # feature_weights for all N costs only memory traffic (an (N, N) column gather and an (N, N, C) product),
        # so it is timed on a stand-in of the same shapes: Θ(X, X) itself in place of the eigenvectors.
        start = time.perf_counter()
        shaped = spectral.feature_weights(SimpleNamespace(eigen=(np.ones(N_LARGE), big.k_train_train),
                                                          y_train=big.y_train))
        how = f"measured once on a same-shape stand-in, {shaped.nbytes / 1e6:.0f} MB"
        once["feature_weights, all N"] = (time.perf_counter() - start, how)
        del shaped
        print(f"   top-{n_sub} eigenpairs for the scored features by subspace iteration ({SUBSPACE_PASSES} passes, "
              f"{secs(subspace_time)}, not part of the pipeline): relative residual ‖Θv - λv‖/λ "
              f"{residuals[:10].max():.1e} for the top 10, {residuals.max():.1e} at worst; λ_1 = {values[0]:.4g}")

    calls = {}
    for n_chunks_timed in LARGE_CHUNKS:
        f = n_chunks_timed * n_large_chunk
        w = large_weights[:, :f]
        calls[f"package {f}"] = (lambda w=w: spectral.feature_scores(big, w, x_test, labels_test, EPSILON, METHOD,
                                                                     show_progress=False).robustness,)
        calls[f"prototype {f}"] = (lambda w=w: prototype_feature_scores(big, w, x_test, labels_test, EPSILON)
                                   .robustness,)
    calls["matmul"] = (matmul, mat_a, mat_b)
    large_times = {name: median(t) for name, t in interleaved_seconds(calls, ROUNDS).items()}
    check_large = spectral.feature_scores(big, large_weights[:, :n_large_chunk], x_test, labels_test, EPSILON,
                                          METHOD, show_progress=False)
    proto_large = prototype_feature_scores(big, large_weights[:, :n_large_chunk], x_test, labels_test, EPSILON)
    print(f"   check on the first {n_large_chunk} features:")
    if not compare("prototype (shared clean gradient)", proto_large, check_large):
        print("MISMATCH at N = 10 000", file=sys.stderr)
        return 1

    f1, f2 = (c * n_large_chunk for c in LARGE_CHUNKS)
    large_chunks_all = len(chunk_sizes(N_LARGE, n_large_chunk))
    peak_large = matmul_flops / large_times["matmul"]
    extrapolated = {}
    for name in ("package", "prototype"):
        t1, t2 = large_times[f"{name} {f1}"], large_times[f"{name} {f2}"]
        per_feature = (t2 - t1) / (f2 - f1)
        extrapolated[name] = (t1 + per_feature * (N_LARGE - f1), t1, t2, per_feature)
    large_args, large_kwargs = package_chunk_call(big, large_weights, x_test, labels_test, 0, n_large_chunk)
    chunk_flops_large = xla_flops(attacks._pgd, *large_args, **large_kwargs)
    del large_args
    proto_run = shared_fgsm(kernel_fn, attacks.default_loss(1), "linf")
    proto_chunk_large = xla_flops(proto_run, big.x_train, jnp.zeros((N_LARGE, n_large_chunk, 1), jnp.float32),
                                  x_test, jnp.asarray(labels_test), EPSILON)
    clean_large = clean_flops(N_TEST, N_LARGE, dim, N_LARGE, 1)
    flops_large = {"package": large_chunks_all * chunk_flops_large + clean_large,
                   "prototype": large_chunks_all * proto_chunk_large + clean_large}

    print(f"\n   scoring all {N_LARGE} features = {large_chunks_all} chunks of {n_large_chunk} features x {N_TEST} "
          f"images against N = {N_LARGE}: EXTRAPOLATED from feature_scores on the first {f1} and {f2} features "
          f"(fixed part + (t({f2}) - t({f1})) / {f2 - f1} per feature x {N_LARGE})")
    rows = []
    for name, label in (("package", "package: spectral.feature_scores"), ("prototype", "PROTOTYPE: shared clean grad")):
        total, t1, t2, per_feature = extrapolated[name]
        rate = flops_large[name] / total
        rows.append((label, secs(t1), secs(t2), f"{per_feature * 1e3:.1f} ms", secs(total),
                     f"{flops_large[name] / 1e12:.1f}", f"{rate / 1e9:.0f}", f"{rate / peak_large:.0%}"))
    table(("variant", f"t({f1})", f"t({f2})", "per feature", f"all {N_LARGE} (extrap.)", "TFLOP", "GFLOP/s",
           "of matmul"), rows)
    print(f"   (matmul reference in these rounds: {matmul_flops / large_times['matmul'] / 1e9:.0f} GFLOP/s; XLA FLOPs "
          f"of one chunk: package {chunk_flops_large / 1e9:.1f} G, prototype {proto_chunk_large / 1e9:.1f} G)")
    print(f"\n   the rest of the N = {N_LARGE} pipeline, timed apart from the scoring:")
    table(("step", "time", "how"), [(name, secs(t), how) for name, (t, how) in once.items()])
    total_large = sum(t for t, _ in once.values()) + extrapolated["package"][0]
    print(f"   -> N = {N_LARGE} end to end with the package ≈ {secs(total_large)} (scoring "
          f"{secs(extrapolated['package'][0])}, eigendecomposition {secs(once['eigendecomposition'][0])}); with the "
          f"prototype's scoring ≈ {secs(total_large - extrapolated['package'][0] + extrapolated['prototype'][0])}")

    verdict = lambda met: "met" if met else "NOT met"
    print(f"\nsummary: N = {N_SMALL}: feature_scores {secs(times['package'])} vs per-feature loop "
          f"{secs(times['loop'])} = {speedup:.2f}x (target ≥ 5x: {verdict(speedup >= 5)}), prototype "
          f"{proto_speedup:.1f}x; FLOP rate {rate_share:.0%} of a {MATMUL}² matmul (target ≥ 50%: "
          f"{verdict(rate_share >= 0.5)})"
          f"; N = {N_LARGE}: scoring ≈ {secs(extrapolated['package'][0])} (prototype "
          f"{secs(extrapolated['prototype'][0])}, extrapolated), eigendecomposition "
          f"{secs(once['eigendecomposition'][0])}{'' if full else ' (extrapolated)'}")
    print(f"{load()}; total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
