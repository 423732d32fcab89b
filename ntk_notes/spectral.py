"""How the labels sit in the spectrum of a kernel matrix, and the eigen-features.

Eigen-features (PAPER.md): with Θ(X, X) = Σ_i λ_i v_i v_iᵀ, λ_1 ≥ λ_2 ≥ …,
φ_i(x) = λ_i⁻¹ Θ(x, X) v_i (v_iᵀ Y), and Σ_i φ_i = f_∞. Indices in code are 0-based (index 0
is the top eigenvalue); the book's text counts from 1.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from ntk_notes import attacks
from ntk_notes.kernels import fitted_fraction, kernel_block, kernel_matrix
from ntk_notes.predictors import KernelPredictor
from ntk_notes.progress import progress


def label_energy(vectors, targets) -> np.ndarray:
    """Cumulative share of the targets' energy in the top-k eigenvectors, for k = 1..N:
    E_k = Σ_{i≤k} ‖v_iᵀ Y‖² / ‖Y‖²."""
    targets = np.asarray(targets, dtype=np.float64).reshape(len(vectors), -1)
    projections = np.sum((np.asarray(vectors).T @ targets) ** 2, axis=1)
    return np.cumsum(projections) / np.sum(targets**2)


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


def split_at(predictor, k: int) -> np.ndarray:
    """Weights (N, 2, C) of the two parts of f_∞ split at index k: the top part φ_1..k
    (the k largest eigenvalues) and the deep part f_∞ − φ_1..k; they sum to f_∞."""
    n = len(predictor.y_train)
    if not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise ValueError(f"k must be an integer in 1..{n - 1} (both parts non-empty), got {k!r}")
    every = feature_weights(predictor)
    return np.stack([every[:, :k].sum(1), every[:, k:].sum(1)], axis=1)


class FeatureScores(NamedTuple):
    usefulness: np.ndarray  # (F,) clean accuracy of each feature (sign, or argmax of C outputs)
    robustness: np.ndarray  # (F,) accuracy under the attack aimed at the feature itself
    clean_outputs: np.ndarray  # (F, n, C) each feature at the clean test points
    clean_correct: np.ndarray | None = None  # (F, n) bool: each feature right on each test point
    robust_correct: np.ndarray | None = None  # (F, n) bool: the same under the attack (None: no attack)


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


def feature_scores(
    predictor,
    weights,
    x,
    labels,
    epsilon: float | None,
    method: str = "fgsm",
    steps: int = 10,
    chunk: int | None = None,
    memory_budget: float = 2**29,  # 512 MiB: a default chapter stays under 2 GB, as fast as with 2 GiB
    show_progress: bool | None = None,
    **attack_args,
) -> FeatureScores:
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
    Returns a ``FeatureScores``.

    With the kernel 1 + x·x′ on two points, φ_1 is positive everywhere (class 1: right on
    half the inputs, and robust), φ_2 is the useful feature, and FGSM of size 0.3 breaks it
    at the second input:

    >>> from ntk_notes.predictors import KernelPredictor
    >>> kernel_fn = lambda x1, x2, get="ntk": 1.0 + x1 @ x2.T
    >>> predictor = KernelPredictor(kernel_fn, np.array([[0.0], [1.0]]), np.array([[-1.0], [1.0]]))
    >>> x, labels = np.array([[0.2], [0.9]]), np.array([0, 1])
    >>> scores = feature_scores(predictor, feature_weights(predictor), x, labels, 0.3)
    >>> scores.clean_outputs[:, :, 0].round(3).tolist()  # φ_1 and φ_2 at the two inputs
    [[0.192, 0.266], [-0.792, 0.534]]
    >>> scores.usefulness.tolist(), scores.robust_correct.tolist()
    ([0.5, 1.0], [[False, True], [True, False]])
    """
    x = jnp.asarray(x, predictor.dtype)
    weights = np.asarray(weights)
    if weights.ndim != 3 or weights.shape[0] != len(predictor.x_train):
        raise ValueError(f"weights must have shape ({len(predictor.x_train)}, F, C), got {weights.shape}")
    labels = np.asarray(labels)
    n, n_features = len(x), weights.shape[1]
    k_test = kernel_block(predictor.kernel_fn, x, predictor.x_train, predictor.batch_size).astype(np.float64)
    # A BLAS product, then (F, n, C); np.einsum would not use BLAS here.
    clean_outputs = (k_test @ weights.reshape(len(weights), -1)).reshape(n, n_features, -1).transpose(1, 0, 2)
    clean_correct = np.asarray(
        attacks.is_correct(clean_outputs.reshape(n_features * n, -1), np.tile(labels, n_features))
    ).reshape(n_features, n)
    usefulness = clean_correct.mean(1)
    if epsilon is None:
        return FeatureScores(usefulness, np.full(n_features, np.nan), clean_outputs, clean_correct)
    outputs = _features_at(predictor.kernel_fn)
    one_feature = Partial(outputs, predictor.x_train, jnp.asarray(weights[:, :1], predictor.dtype))
    norm = attack_args.get("norm", "linf")
    labels, loss = attacks.validate(one_feature, x, labels, epsilon, method, norm, attack_args.get("loss"), steps, 1, 1)
    shared_fgsm = method == "fgsm" and set(attack_args) <= {"norm", "loss"}

    def tiled(w):  # feature j of a chunk sees inputs j·n ... (j+1)·n − 1 of the tiled batch
        f = w.shape[1]
        return Partial(outputs, predictor.x_train, w), jnp.tile(x, (f,) + (1,) * (x.ndim - 1)), np.tile(labels, f)

    def compiled(w):  # the jitted function a chunk runs, with its arguments, for the memory estimate
        if shared_fgsm:
            return (
                fgsm_chunk(predictor.kernel_fn, loss, norm),
                (predictor.x_train, w, x, jnp.asarray(labels), epsilon),
                {},
            )
        model, xs, tiled_labels = tiled(w)
        n_steps, step_size, random_start = attacks.step_plan(
            method, epsilon, steps, attack_args.get("step_size"), bool(attack_args.get("random_start"))
        )
        static = dict(loss=loss, norm=norm, steps=n_steps, random_start=random_start)
        return attacks.pgd, (model, xs, jnp.asarray(tiled_labels), epsilon, step_size, jax.random.PRNGKey(0)), static

    if chunk is None:
        fits = chunk_within(memory_budget, lambda f: compiled(jnp.asarray(weights[:, :f], predictor.dtype)))
        chunk = equal_chunk(n_features, fits)
    robust, starts = [], range(0, n_features, chunk)
    if show_progress is None and len(starts) <= 2:
        show_progress = False
    for start in progress(starts, desc=f"{n_features} features", enabled=show_progress):
        w = jnp.asarray(weights[:, start : start + chunk], predictor.dtype)
        if shared_fgsm:
            fn, args, _ = compiled(w)
            correct = fn(*args)
        else:
            model, xs, tiled_labels = tiled(w)
            correct = attacks.attack(
                model,
                xs,
                tiled_labels,
                epsilon,
                method,
                steps=steps,
                batch_size=len(xs),
                **{**attack_args, "loss": loss},
            ).correct
        robust.append(np.asarray(correct).reshape(w.shape[1], n))
    robust_correct = np.concatenate(robust)
    return FeatureScores(usefulness, robust_correct.mean(1), clean_outputs, clean_correct, robust_correct)


def chunk_within(budget: float, compiled, largest: int = 4096) -> int:
    """How many features (an int in 1..``largest``) fit ``budget`` bytes: XLA's temporary
    memory of the chunk compiled for one and for two features gives a fixed part and a part
    per feature. ``compiled(f)`` returns the chunk's jitted function for f features, its
    arguments and its static keyword arguments."""

    def temp_bytes(f):
        fn, args, static = compiled(f)
        return fn.lower(*args, **static).compile().memory_analysis().temp_size_in_bytes

    one, two = temp_bytes(1), temp_bytes(2)
    per_feature = max(two - one, 1)
    return int(np.clip((budget - (one - per_feature)) // per_feature, 1, largest))


def equal_chunk(n_features: int, fits: int) -> int:
    """The chunk size that splits ``n_features`` into as few chunks of at most ``fits`` as
    possible, all of (nearly) one size: one compiled shape, no small ragged last chunk
    (1000 features, 804 fitting: 500 + 500, not 804 + 196).

    >>> equal_chunk(1000, 804), equal_chunk(1000, 1000), equal_chunk(1001, 500)
    (500, 1000, 334)
    """
    return -(-n_features // -(-n_features // fits))


def shared_pullback(kernel_fn, x_train, weights, x, output_cotangent):
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
def fgsm_chunk(kernel_fn, loss: str, norm: str):
    """FGSM aimed at each feature of a chunk, from the shared clean pullback, as a jitted
    ``run(x_train, weights (N, F, C), x (n, ...), labels (n,), epsilon)`` that returns whether
    each feature still classifies each input correctly, (F, n) bool. Same result as
    ``attacks.attack`` with method "fgsm" on the tiled inputs, at two large products instead
    of three. Cached per (kernel_fn, loss, norm)."""
    features_at = _features_at(kernel_fn)

    def run(x_train, weights, x, labels, epsilon):
        f, n = weights.shape[1], len(x)
        loss_of = lambda o: jnp.sum(attacks.per_example_loss(loss, o, labels))  # noqa: E731
        grads = shared_pullback(kernel_fn, x_train, weights, x, jax.vmap(jax.grad(loss_of)))
        xs = jnp.broadcast_to(x, (f,) + x.shape).reshape((f * n,) + x.shape[1:])
        x_adv = attacks.project(xs, xs + epsilon * attacks.direction(grads.reshape(xs.shape), norm), epsilon, norm)
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


def feature_gradients(predictor, weights, x, labels=None, loss: str | None = None) -> np.ndarray:
    """Input gradients of every feature of ``weights`` (N, F, C) at each input of ``x``:
    shape (F, n) + image shape.

    With ``labels`` (class indices): ∇ₓ L(φ_i(x), y), the gradient of the attack's loss
    (binary / softmax cross-entropy by default, or ``loss``) with the feature as the logit:
    the picture the authors' notebook draws, min–max scaled, and the direction FGSM follows.
    Without labels: ∇ₓ φ_i(x), summed over the C outputs. For a binary feature the two differ
    by a positive factor times −y, so for label −1 images they point the same way and for
    label +1 images opposite ways.
    """
    x = jnp.asarray(x, predictor.dtype)
    weights = jnp.asarray(weights, predictor.dtype)
    if labels is None:
        cotangent = jnp.ones_like
    else:
        labels = np.asarray(labels)
        if labels.shape != (len(x),):
            raise ValueError(f"labels must be class indices of shape ({len(x)},), got shape {labels.shape}")
        loss = attacks.default_loss(weights.shape[-1]) if loss is None else loss
        if loss not in attacks.LOSSES:
            raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(attacks.LOSSES)}")
        loss_of = lambda o: jnp.sum(attacks.per_example_loss(loss, o, jnp.asarray(labels)))  # noqa: E731
        cotangent = jax.vmap(jax.grad(loss_of))
    grads = shared_pullback(predictor.kernel_fn, predictor.x_train, weights, x, cotangent)
    return np.asarray(grads)


class KernelFeatures(NamedTuple):
    """One kernel's eigen-features on a task."""

    predictor: object  # the kernel predictor f_∞ (``ntk_notes.predictors.KernelPredictor``)
    scores: FeatureScores  # usefulness, and robustness unless no ε was given
    seconds: float  # time to build the predictor and score its features


def kernel_features(kernel_fns, task, epsilon: float | None, method: str = "fgsm", ridge=None) -> dict:
    """The eigen-features of every named kernel function on ``task`` (a ``data.Task``),
    scored on its test set (robustness under ``method`` at ``epsilon``; None: usefulness
    only). ``ridge`` maps a name to a ridge relative to the kernel's mean diagonal, for
    kernels of rank below N (a linear kernel on d < N pixels): kernel ridge regression
    then replaces the ridgeless fit."""
    ridge = dict(ridge or {})
    unknown = set(ridge) - set(kernel_fns)
    if unknown:
        raise ValueError(f"ridge names kernels that are not given: {sorted(unknown)}")
    results = {}
    for name, kernel_fn in kernel_fns.items():
        start = time.perf_counter()
        k_train = kernel_matrix(kernel_fn, task.x_train)
        k_train = k_train + ridge.get(name, 0.0) * np.mean(np.diag(k_train)) * np.eye(len(k_train))
        predictor = KernelPredictor(kernel_fn, task.x_train, task.y_train, k_train_train=k_train)
        scores = feature_scores(predictor, feature_weights(predictor), task.x_test, task.labels_test, epsilon, method)
        results[name] = KernelFeatures(predictor, scores, time.perf_counter() - start)
    return results


class TradeoffOutcomes(NamedTuple):
    """Per-example outcomes (True: classified correctly) of the predictors that trade accuracy
    for robustness: the top-k predictors φ_1..k, the early-stopped f_t, and f_∞."""

    ks: np.ndarray  # (K,) the values of k
    top_clean: np.ndarray  # (K, n)
    top_fgsm: np.ndarray  # (K, n) under FGSM aimed at each predictor
    top_pgd: np.ndarray  # (K, n) under PGD aimed at each predictor
    taus: np.ndarray  # (T,) training times τ = λ_1 t / (N C)
    fitted: np.ndarray  # (T,) k(τ): the features at least half fitted by then
    ft_clean: np.ndarray  # (T, n)
    ft_fgsm: np.ndarray  # (T, n)
    ft_pgd: np.ndarray  # (T, n)
    full_clean: np.ndarray  # (n,) f_∞
    full_pgd: np.ndarray  # (n,)


def tradeoff_outcomes(predictor, x, labels, epsilon: float, ks, taus, steps: int = 10) -> TradeoffOutcomes:
    """Score the top-k predictors at every k in ``ks`` and f_t at every time in ``taus``
    (τ = λ_1 t / (N C): after τ the top feature holds 1 − e^{−τ} of its weight), clean and
    under FGSM and PGD (``steps`` steps) aimed at each predictor, and f_∞ clean and under PGD."""
    values = predictor.eigen[0]
    taus = np.asarray(taus, np.float64)
    if taus.ndim != 1 or len(taus) == 0 or np.any(taus <= 0):
        raise ValueError(f"taus must be a non-empty vector of positive times, got {taus!r}")
    labels = np.asarray(labels)
    top = top_k_weights(predictor, ks)
    fgsm = feature_scores(predictor, top, x, labels, epsilon, "fgsm")
    pgd = feature_scores(predictor, top, x, labels, epsilon, "pgd", steps=steps)
    k_test = kernel_block(
        predictor.kernel_fn, jnp.asarray(x, predictor.dtype), predictor.x_train, predictor.batch_size
    ).astype(np.float64)  # shared by every t
    scale = predictor.y_train.size / values[0]  # t = τ N C / λ_1
    ft = {"clean": [], "fgsm": [], "pgd": []}
    for tau in progress(taus, desc=f"f_t at {len(taus)} times", enabled=None if len(taus) > 8 else False):
        logits = predictor.logits_fn(tau * scale)
        ft["clean"].append(
            np.asarray(attacks.is_correct(predictor.predict(x, tau * scale, k_test_train=k_test), labels))
        )
        ft["fgsm"].append(attacks.attack(logits, x, labels, epsilon, "fgsm").correct)
        ft["pgd"].append(attacks.attack(logits, x, labels, epsilon, "pgd", steps=steps).correct)
    full = predictor.logits_fn()
    fitted = np.array([int(np.sum(fitted_fraction(values, tau * scale, predictor.n_outputs) >= 0.5)) for tau in taus])
    return TradeoffOutcomes(
        np.asarray(ks),
        pgd.clean_correct,
        fgsm.robust_correct,
        pgd.robust_correct,
        taus,
        fitted,
        np.array(ft["clean"]),
        np.array(ft["fgsm"]),
        np.array(ft["pgd"]),
        np.asarray(attacks.is_correct(k_test @ predictor.alpha, labels)),
        attacks.attack(full, x, labels, epsilon, "pgd", steps=steps).correct,
    )
