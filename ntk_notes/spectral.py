"""The spectrum of a kernel matrix, how the labels sit in it, and the eigen-features.

Eigen-features (PAPER.md): with Θ(X, X) = Σ_i λ_i v_i v_iᵀ, λ_1 ≥ λ_2 ≥ …,
φ_i(x) = λ_i⁻¹ Θ(x, X) v_i (v_iᵀ Y), and Σ_i φ_i = f_∞. Indices in code are 0-based (index 0
is the top eigenvalue); the book's text counts from 1.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from ntk_notes import attacks
from ntk_notes.progress import progress


def eigendecomposition(kernel) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues in descending order and the matching eigenvectors (columns), float64."""
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"kernel must be a square matrix, got shape {kernel.shape}")
    values, vectors = np.linalg.eigh(kernel)
    return values[::-1], vectors[:, ::-1]


def label_energy(vectors, targets) -> np.ndarray:
    """Cumulative share of the targets' energy in the top-k eigenvectors, for k = 1..N:
    E_k = Σ_{i≤k} ‖v_iᵀ Y‖² / ‖Y‖²."""
    targets = np.asarray(targets, dtype=np.float64).reshape(len(vectors), -1)
    projections = np.sum((np.asarray(vectors).T @ targets) ** 2, axis=1)
    return np.cumsum(projections) / np.sum(targets ** 2)


def feature_weights(predictor, indices=None) -> np.ndarray:
    """Weights of the eigen-features φ_i(x) = λ_i⁻¹ Θ(x, X) v_i (v_iᵀ Y), shape (N, F, C):
    φ_i(x) = Θ(x, X) @ W[:, i]. ``indices`` (0-based, index 0 = the top eigenvalue) picks
    features, default all N; Σ over all i of φ_i is f_∞."""
    values, vectors = predictor.eigen
    indices = np.arange(len(values)) if indices is None else np.asarray(indices)
    if indices.ndim != 1 or len(indices) == 0 or indices.min() < 0 or indices.max() >= len(values):
        raise ValueError(f"feature indices must lie in 0..{len(values) - 1}, got {indices!r}")
    chosen = vectors[:, indices]  # (N, F)
    coefficients = (chosen.T @ predictor.y_train) / values[indices, None]  # (F, C)
    return chosen[:, :, None] * coefficients[None, :, :]


def top_k_weights(predictor, ks) -> np.ndarray:
    """Weights of the predictors φ_{1..k} = Σ_{i≤k} φ_i for each k in ``ks``, shape (N, K, C)."""
    ks = np.asarray(ks)
    n = len(predictor.y_train)
    if ks.ndim != 1 or len(ks) == 0 or ks.min() < 1 or ks.max() > n:
        raise ValueError(f"every k must lie in 1..{n}, got {ks!r}")
    cumulative = np.cumsum(feature_weights(predictor, np.arange(ks.max())), axis=1)
    return cumulative[:, ks - 1]


def fitted_fraction(values, t: float, n_outputs: int = 1) -> np.ndarray:
    """How much of each eigen-feature f_t holds: f_t = Σ_i (1 − e^{−λ_i t / (N C)}) φ_i, in the
    time convention of ``ntk_notes.kernels`` (t = learning rate × steps). ``values`` must be
    all N eigenvalues: N is taken from their number."""
    values = np.asarray(values, dtype=np.float64)
    return -np.expm1(-np.maximum(values, 0.0) * t / (len(values) * n_outputs))


class FeatureScores(NamedTuple):
    usefulness: np.ndarray  # (F,) clean accuracy of each feature (sign, or argmax of C outputs)
    robustness: np.ndarray  # (F,) accuracy under the attack aimed at the feature itself
    clean_outputs: np.ndarray  # (F, n, C) each feature at the clean test points


@lru_cache(maxsize=32)
def _features_at(kernel_fn):
    """(x_train, weights (N, F, C), xs (F·n, ...)) -> (F·n, C): feature f evaluated at its own
    block of n inputs, all F blocks in one kernel call against the training set."""
    def outputs(x_train, weights, xs):
        n_features = weights.shape[1]
        k = kernel_fn(xs, x_train, "ntk").astype(weights.dtype)  # (F·n, N)
        k = k.reshape(n_features, -1, k.shape[-1])
        return jnp.einsum("fan,nfc->fac", k, weights).reshape(-1, weights.shape[-1])

    return jax.jit(outputs)


def feature_scores(predictor, weights, x, labels, epsilon: float | None, method: str = "fgsm", steps: int = 10,
                   chunk: int | None = None, memory_budget: float = 2 ** 31, show_progress: bool | None = None,
                   **attack_args) -> FeatureScores:
    """Usefulness and robustness of every feature given by ``weights`` (N, F, C) at the test
    inputs ``x`` with class indices ``labels``.

    Robustness attacks each feature itself (``ntk_notes.attacks.attack``: FGSM or PGD, ℓ∞ by
    default, binary / softmax cross-entropy). Features go through in chunks: a chunk of F
    features and n test points is one kernel evaluation of F·n perturbed inputs against the
    training set, and its input gradient one backward pass, so the work is a few large matrix
    products. ``chunk`` features go together; by default as many as fit ``memory_budget``
    bytes of XLA's working memory, measured on the compiled chunk for one and two features
    (a convolutional kernel keeps a covariance per pixel: thousands of bytes per entry).
    ``epsilon=None`` skips the attack (robustness is NaN): usefulness costs one kernel block.
    """
    x = jnp.asarray(x, predictor.dtype)
    weights = np.asarray(weights)
    if weights.ndim != 3 or weights.shape[0] != len(predictor.x_train):
        raise ValueError(f"weights must have shape ({len(predictor.x_train)}, F, C), got {weights.shape}")
    labels = np.asarray(labels)
    n, n_features = len(x), weights.shape[1]
    from ntk_notes.kernels import kernel_block  # kernels imports this module

    k_test = kernel_block(predictor.kernel_fn, x, predictor.x_train, predictor.batch_size).astype(np.float64)
    # A BLAS product, then (F, n, C); np.einsum would not use BLAS here.
    clean_outputs = (k_test @ weights.reshape(len(weights), -1)).reshape(n, n_features, -1).transpose(1, 0, 2)
    usefulness = np.asarray(attacks.is_correct(clean_outputs.reshape(n_features * n, -1),
                                               np.tile(labels, n_features))).reshape(n_features, n).mean(1)
    if epsilon is None:
        return FeatureScores(usefulness, np.full(n_features, np.nan), clean_outputs)
    outputs = _features_at(predictor.kernel_fn)
    one_feature = Partial(outputs, predictor.x_train, jnp.asarray(weights[:, :1], predictor.dtype))
    norm = attack_args.get("norm", "linf")
    labels, loss = attacks._validate(one_feature, x, labels, epsilon, method, norm, attack_args.get("loss"), steps, 1, 1)
    shared_fgsm = method == "fgsm" and set(attack_args) <= {"norm", "loss"}

    def tiled(w):  # feature j of a chunk sees inputs j·n ... (j+1)·n − 1 of the tiled batch
        f = w.shape[1]
        return Partial(outputs, predictor.x_train, w), jnp.tile(x, (f,) + (1,) * (x.ndim - 1)), np.tile(labels, f)

    def compiled(w):  # the jitted function a chunk runs, with its arguments, for the memory estimate
        if shared_fgsm:
            return _fgsm_chunk(predictor.kernel_fn, loss, norm), (predictor.x_train, w, x, jnp.asarray(labels),
                                                                  epsilon), {}
        model, xs, tiled_labels = tiled(w)
        step_size = attack_args.get("step_size") or 2.5 * epsilon / steps
        static = dict(loss=loss, norm=norm, steps=1 if method == "fgsm" else steps,
                      random_start=bool(attack_args.get("random_start")))
        return attacks._pgd, (model, xs, jnp.asarray(tiled_labels), epsilon, step_size, jax.random.PRNGKey(0)), static

    if chunk is None:
        chunk = _chunk_within(memory_budget, lambda f: compiled(jnp.asarray(weights[:, :f], predictor.dtype)))
    robust, starts = [], range(0, n_features, chunk)
    if show_progress is None and len(starts) <= 2:
        show_progress = False
    for start in progress(starts, desc=f"{n_features} features", enabled=show_progress):
        w = jnp.asarray(weights[:, start:start + chunk], predictor.dtype)
        if shared_fgsm:
            fn, args, _ = compiled(w)
            correct = fn(*args)
        else:
            model, xs, tiled_labels = tiled(w)
            correct = attacks.attack(model, xs, tiled_labels, epsilon, method, steps=steps, batch_size=len(xs),
                                     **{**attack_args, "loss": loss}).correct
        robust.append(np.asarray(correct).reshape(w.shape[1], n).mean(1))
    return FeatureScores(usefulness, np.concatenate(robust), clean_outputs)


def _chunk_within(budget: float, compiled, largest: int = 4096) -> int:
    """How many features fit ``budget`` bytes: XLA's temporary memory of the compiled chunk
    for one and for two features gives a fixed part and a part per feature."""
    def temp_bytes(f):
        fn, args, static = compiled(f)
        return fn.lower(*args, **static).compile().memory_analysis().temp_size_in_bytes

    one, two = temp_bytes(1), temp_bytes(2)
    per_feature = max(two - one, 1)
    return int(np.clip((budget - (one - per_feature)) // per_feature, 1, largest))


def _shared_pullback(kernel_fn, x_train, weights, x, output_cotangent):
    """Input gradients of every feature at the clean inputs, shape (F, n) + image shape.

    All features share Θ(x, X), so its pullback is taken once, on the n clean images, and
    applied to F cotangents at once (one (F·n × N) @ (N × d) product): feature f's gradient
    at x_a is ∂Θ(x_a, X)/∂x_a · Σ_c output_cotangent(f, a, c) W[:, f, c].
    """
    k, pullback = jax.vjp(lambda z: kernel_fn(z, x_train, "ntk").astype(weights.dtype), x)
    cotangents = output_cotangent(jnp.einsum("an,nfc->fac", k, weights))  # (F, n, C)
    (grads,) = jax.vmap(pullback)(jnp.einsum("fac,nfc->fan", cotangents, weights))
    return grads


@lru_cache(maxsize=32)
def _fgsm_chunk(kernel_fn, loss: str, norm: str):
    """FGSM aimed at each feature of a chunk, from the shared clean pullback: whether each
    feature still classifies each input correctly, (F, n). Same result as ``attacks.attack``
    with method "fgsm" on the tiled inputs, at two large products instead of three."""
    features_at = _features_at(kernel_fn)

    def run(x_train, weights, x, labels, epsilon):
        f, n = weights.shape[1], len(x)
        loss_of = lambda o: jnp.sum(attacks.per_example_loss(loss, o, labels))  # noqa: E731
        grads = _shared_pullback(kernel_fn, x_train, weights, x, jax.vmap(jax.grad(loss_of)))
        xs = jnp.broadcast_to(x, (f,) + x.shape).reshape((f * n,) + x.shape[1:])
        x_adv = attacks._project(xs, xs + epsilon * attacks._direction(grads.reshape(xs.shape), norm), epsilon, norm)
        return attacks.is_correct(features_at(x_train, weights, x_adv), jnp.tile(labels, f)).reshape(f, n)

    return jax.jit(run)


def eigenspace_overlap(vectors_a, vectors_b, k: int) -> float:
    """‖V_aᵀ V_b‖_F² / k for the top-k eigenvectors: 1 when the two top-k eigenspaces
    coincide, about k / N for unrelated ones."""
    return float(np.sum((np.asarray(vectors_a)[:, :k].T @ np.asarray(vectors_b)[:, :k]) ** 2) / k)


def output_correlation(outputs_a, outputs_b) -> np.ndarray:
    """Per feature, the correlation over test points of two kernels' feature outputs
    (F, n, C) (all C outputs pooled); a feature constant on the test set gives NaN."""
    a = np.asarray(outputs_a, dtype=np.float64).reshape(len(outputs_a), -1)
    b = np.asarray(outputs_b, dtype=np.float64).reshape(len(outputs_b), -1)
    # Constant within rounding: the mean of repeated values is not exact, so test the spread.
    constant = (np.ptp(a, 1) <= 1e-12 * np.abs(a).max(1)) | (np.ptp(b, 1) <= 1e-12 * np.abs(b).max(1))
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = np.sum(a * b, 1) / np.sqrt(np.sum(a * a, 1) * np.sum(b * b, 1))
    return np.where(constant, np.nan, correlation)


def feature_gradients(predictor, weights, x) -> np.ndarray:
    """Input gradients of every feature of ``weights`` (N, F, C), summed over its C outputs,
    at each input of ``x``: shape (F, n) + image shape. Min–max scaled, this is how the paper
    pictures a feature."""
    x = jnp.asarray(x, predictor.dtype)
    weights = jnp.asarray(weights, predictor.dtype)
    grads = _shared_pullback(predictor.kernel_fn, predictor.x_train, weights, x, jnp.ones_like)
    return np.asarray(grads)
