"""Eigen-features (ntk_notes.spectral) against direct linear algebra, the kernel predictor,
per-feature attacks, and the trends PAPER.md expects on MNIST 3 vs 5.

What is checked, and against what:
- φ_i(x) = λ_i⁻¹ Θ(x, X) v_i (v_iᵀ Y) against an independent ``numpy.linalg.eigh``, and
  Σ_i φ_i = f_∞ against ``KernelPredictor.predict`` (binary, 3 and 10 classes, float64);
- f_t = Σ_i (1 − e^{−λ_i t/(NC)}) φ_i against ``KernelPredictor.predict(x, t)``: the time
  conventions of ``fitted_fraction`` and ``predictors`` agree;
- top-k predictors are cumulative sums of features; bad k and indices are named;
- the batched robustness of ``feature_scores`` against one ``attacks.attack`` per feature,
  and against itself under every chunk size;
- the real-data trends: top feature constant, robustness falling with the index, useful but
  non-robust deep features, the top-10 predictor more robust than the full one;
- the similarity measures on cases with known answers.

Random problems are 6x6x1 images, 40 training and 13 test points, so each compilation is cheap.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from ntk_notes import architectures, attacks, data, kernels, predictors, spectral

N_TRAIN, N_TEST = 40, 13


# ---------------------------------------------------------------------------- helpers


def make_problem(n_outputs, n_train=N_TRAIN, n_test=N_TEST, seed=0):
    """Random images with a learnable rule: labels are the argmax of a fixed random linear map
    (for one output, whether that map is above its median). Targets ±1 (binary) or one-hot."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n_train + n_test, 6, 6, 1))
    scores = x.reshape(len(x), -1) @ rng.normal(size=(36, max(n_outputs, 2)))
    if n_outputs == 1:
        labels = (scores[:, 0] > np.median(scores[:, 0])).astype(np.int64)
    else:
        labels = scores.argmax(axis=1)
    targets = np.asarray(attacks.targets_from_labels(labels, n_outputs), np.float64)
    return x[:n_train], targets[:n_train], x[n_train:], labels[n_train:]


def predictor_for(kernel_fn, n_outputs, float64, seed=0, **problem_args):
    """A KernelPredictor on a random problem, and its test inputs (of the predictor's dtype) and labels."""
    x_train, y_train, x_test, labels = make_problem(n_outputs, seed=seed, **problem_args)
    dtype = jnp.float64 if float64 else jnp.float32
    predictor = predictors.KernelPredictor(kernel_fn, jnp.asarray(x_train, dtype), y_train, float64=float64)
    return predictor, jnp.asarray(x_test, dtype), labels


def direct(kernel_fn, x1, x2):
    """neural-tangents' kernel in one call (jitted: op by op it dominated this file's time)."""
    return np.asarray(jax.jit(kernel_fn, static_argnames="get")(x1, x2, "ntk"), np.float64)


def reference_weights(k_train, y_train):
    """λ_i⁻¹ v_i (v_iᵀ Y) for every i, eigenvalues descending, shape (N, N, C). The product
    v_i v_iᵀ does not depend on the eigenvector's sign, so weights compare directly."""
    values, vectors = np.linalg.eigh(k_train)
    order = np.argsort(-values)
    values, vectors = values[order], vectors[:, order]
    return np.einsum("ni,ic->nic", vectors, (vectors.T @ y_train) / values[:, None])


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fc_kernel_fn():
    # One kernel_fn object for the whole module, so compiled kernels and attacks are reused.
    return architectures.architecture("fc", 1)[2]


# ---------------------------------------------------------------------------- 1. Σ φ_i = f_∞


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_features_sum_to_f_infinity_and_match_an_independent_eigh(float64, fc_kernel_fn, n_outputs):
    predictor, x_test, labels = predictor_for(fc_kernel_fn, n_outputs, float64=True)
    weights = spectral.feature_weights(predictor)
    assert weights.shape == (N_TRAIN, N_TRAIN, n_outputs) and weights.dtype == np.float64

    # Each feature's weights from an independent eigendecomposition of the predictor's training
    # kernel (that very matrix: near-equal eigenvalues make eigenvectors of a recomputed kernel,
    # ~1e-9 away on the diagonal where arccos amplifies rounding, differ by far more).
    k_train = direct(fc_kernel_fn, predictor.x_train, predictor.x_train)
    np.testing.assert_allclose(k_train, predictor.k_train_train, rtol=1e-7)
    expected = reference_weights(predictor.k_train_train, predictor.y_train)
    scale = np.abs(expected).max(axis=(0, 2), keepdims=True)  # deep features have ~1/λ weights
    np.testing.assert_allclose(weights / scale, expected / scale, atol=1e-9)
    # A subset of indices picks the same columns (index 0 = top eigenvalue), up to BLAS rounding.
    picked = [0, 7, N_TRAIN - 1]
    np.testing.assert_allclose(spectral.feature_weights(predictor, picked), weights[:, picked], rtol=1e-12, atol=1e-15)

    # The features' clean outputs sum to f_∞ = Θ(x, X) Θ⁻¹ Y (a Cholesky solve in the predictor).
    scores = spectral.feature_scores(predictor, weights, x_test, labels, 0.05, "fgsm")
    assert scores.clean_outputs.shape == (N_TRAIN, N_TEST, n_outputs)
    f_infinity = predictor.predict(x_test)
    assert np.abs(f_infinity).max() > 0.1
    np.testing.assert_allclose(scores.clean_outputs.sum(axis=0), f_infinity, rtol=1e-8, atol=1e-8)
    # And each clean output is Θ(x, X) @ W[:, i], with the kernel computed directly.
    np.testing.assert_allclose(
        scores.clean_outputs,
        np.einsum("an,nfc->fac", direct(fc_kernel_fn, x_test, predictor.x_train), weights),
        rtol=1e-9,
        atol=1e-9,
    )


# ---------------------------------------------------------------------------- 2. f_t


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_fitted_fractions_of_the_features_give_f_t(float64, fc_kernel_fn, n_outputs):
    predictor, x_test, _ = predictor_for(fc_kernel_fn, n_outputs, float64=True)
    values, _ = predictor.eigen
    weights = spectral.feature_weights(predictor)
    k_test = direct(fc_kernel_fn, x_test, predictor.x_train)
    partly_fitted = False
    for t in (0.0, 0.5, 20.0, 1e3, 1e7):
        fraction = kernels.fitted_fraction(values, t, n_outputs)
        assert fraction.shape == (N_TRAIN,)
        # Large-λ features are fitted first.
        assert np.all(np.diff(fraction) <= 1e-15)
        partly_fitted |= bool(np.any((fraction > 0.05) & (fraction < 0.95)))
        w_t = np.einsum("i,nic->nc", fraction, weights)
        np.testing.assert_allclose(w_t, predictor.weights(t), rtol=1e-7, atol=1e-9)
        expected = predictor.predict(x_test, t)
        if t > 0:
            assert np.abs(expected).max() > 1e-3
        np.testing.assert_allclose(k_test @ w_t, expected, rtol=1e-7, atol=1e-9)
    # Some t leaves features half-learned, so a wrong N or C in the exponent would show.
    assert partly_fitted
    np.testing.assert_array_equal(kernels.fitted_fraction(values, 0.0, n_outputs), 0.0)


# ---------------------------------------------------------------------------- 3. top-k


def test_top_k_weights_are_cumulative_sums_and_k_equal_n_is_f_infinity(float64, fc_kernel_fn):
    predictor, x_test, _ = predictor_for(fc_kernel_fn, 1, float64=True)
    weights = spectral.feature_weights(predictor)
    ks = [1, 5, 17, N_TRAIN]
    top = spectral.top_k_weights(predictor, ks)
    assert top.shape == (N_TRAIN, len(ks), 1)
    for j, k in enumerate(ks):
        np.testing.assert_allclose(top[:, j], weights[:, :k].sum(axis=1), rtol=1e-12, atol=1e-12)
    # Asking for k = 1 alone gives the top feature (up to BLAS rounding of another shape).
    np.testing.assert_allclose(spectral.top_k_weights(predictor, [1])[:, 0], weights[:, 0], rtol=1e-12)
    k_test = direct(fc_kernel_fn, x_test, predictor.x_train)
    np.testing.assert_allclose(k_test @ top[:, -1], predictor.predict(x_test), rtol=1e-8, atol=1e-8)


def test_bad_k_and_feature_indices_are_named(fc_kernel_fn):
    predictor, _, _ = predictor_for(fc_kernel_fn, 1, float64=False)
    for bad in ([0], [3, N_TRAIN + 1]):
        with pytest.raises(ValueError, match=rf"1\.\.{N_TRAIN}.*\b{bad[-1]}\b"):
            spectral.top_k_weights(predictor, bad)
    for bad in ([-1], [2, N_TRAIN]):
        with pytest.raises(ValueError, match=rf"0\.\.{N_TRAIN - 1}.*{bad[-1]}\b"):
            spectral.feature_weights(predictor, bad)
    with pytest.raises(ValueError, match=r"\[\]"):
        spectral.feature_weights(predictor, [])


# ---------------------------------------------------------------------------- 4. batched robustness


def _feature_logits(kernel_fn, dtype):
    """x -> Θ(x, X) @ w, written here independently of spectral's batched evaluation; one
    function object per test, so every feature's Partial shares one compiled attack."""

    def logits(x_train, w, x):
        return kernel_fn(x, x_train, "ntk").astype(dtype) @ w

    return logits


# PGD with 3 steps of 0.01 moves at most 0.03 < ε: on these nearly linear features it is weaker
# than FGSM, so a method or its arguments lost on the way to the attack would show.
METHODS = {"fgsm": ("fgsm", {}), "pgd-short": ("pgd", {"steps": 3, "step_size": 0.01}), "pgd": ("pgd", {})}


@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("attack_name", list(METHODS))
def test_batched_robustness_equals_one_attack_per_feature(fc_kernel_fn, n_outputs, attack_name):
    # float32, the dtype the book uses. Feature j's block of the batched kernel holds exactly the
    # rows the single-feature model computes, and the einsum keeps blocks apart, so the attacks
    # take the same steps and agree example for example: robustness is compared exactly.
    method, attack_args = METHODS[attack_name]
    predictor, x_test, labels = predictor_for(fc_kernel_fn, n_outputs, float64=False)
    epsilon = 0.1
    indices = [0, 1, 4, 12, 30]
    weights = spectral.feature_weights(predictor, indices)
    scores = spectral.feature_scores(predictor, weights, x_test, labels, epsilon, method, **attack_args)
    logits = _feature_logits(fc_kernel_fn, predictor.dtype)
    k_test = direct(fc_kernel_fn, x_test, predictor.x_train)
    for j in range(len(indices)):
        model = Partial(logits, predictor.x_train, jnp.asarray(weights[:, j], predictor.dtype))
        result = attacks.attack(model, x_test, labels, epsilon, method, **attack_args)
        assert scores.robustness[j] == result.accuracy, (indices[j], attack_name)
        # Usefulness is the accuracy of the sign (argmax) of the feature's clean output.
        assert scores.usefulness[j] == pytest.approx(attacks.accuracy(k_test @ weights[:, j], labels))
    # The attack is not vacuous: it does move some features, and not all of them to zero.
    assert np.any(scores.robustness < scores.usefulness)
    assert np.any(scores.robustness > 0)
    if attack_name == "pgd-short":
        fgsm = spectral.feature_scores(predictor, weights, x_test, labels, epsilon, "fgsm")
        assert np.any(scores.robustness > fgsm.robustness)


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_feature_gradients_equal_each_features_own_gradient(float64, fc_kernel_fn, n_outputs):
    """The shared pullback (one vjp of Θ(x, X), F cotangents) against jax.grad of each
    feature's summed outputs, one feature at a time."""
    predictor, x_test, _ = predictor_for(fc_kernel_fn, n_outputs, float64=True)
    indices = [0, 3, 17]
    weights = spectral.feature_weights(predictor, indices)
    grads = spectral.feature_gradients(predictor, weights, x_test)
    logits = _feature_logits(fc_kernel_fn, predictor.dtype)
    for j in range(len(indices)):
        own = jax.grad(lambda x: jnp.sum(logits(predictor.x_train, jnp.asarray(weights[:, j]), x)))(x_test)
        np.testing.assert_allclose(grads[j], own, rtol=1e-9, atol=1e-12)
    assert np.abs(grads).max() > 0


def test_chunk_size_does_not_change_the_scores(fc_kernel_fn):
    predictor, x_test, labels = predictor_for(fc_kernel_fn, 1, float64=False)
    weights = spectral.feature_weights(predictor, np.arange(0, N_TRAIN, 4))  # 10 features: chunks of 3 are ragged
    results = {
        chunk: spectral.feature_scores(predictor, weights, x_test, labels, 0.1, "fgsm", chunk=chunk)
        for chunk in (None, 1, 3)
    }
    reference = results[None]
    assert len(reference.robustness) == weights.shape[1]
    for chunk in (1, 3):
        np.testing.assert_array_equal(results[chunk].usefulness, reference.usefulness)
        np.testing.assert_array_equal(results[chunk].robustness, reference.robustness)
        np.testing.assert_array_equal(results[chunk].clean_outputs, reference.clean_outputs)


def test_no_epsilon_gives_usefulness_alone(fc_kernel_fn):
    # epsilon=None skips the attack: the same usefulness and clean outputs, robustness NaN.
    predictor, x_test, labels = predictor_for(fc_kernel_fn, 1, float64=False)
    weights = spectral.feature_weights(predictor, [0, 5, 20])
    attacked = spectral.feature_scores(predictor, weights, x_test, labels, 0.1, "fgsm")
    clean = spectral.feature_scores(predictor, weights, x_test, labels, None)
    np.testing.assert_array_equal(clean.usefulness, attacked.usefulness)
    np.testing.assert_array_equal(clean.clean_outputs, attacked.clean_outputs)
    assert clean.robustness.shape == (3,) and np.all(np.isnan(clean.robustness))


# ---------------------------------------------------------------------------- 5. real data


@pytest.fixture(scope="module")
def mnist_features():
    """MNIST 3 vs 5 (400 train, 100 test), FC depth-1 NTK, f_∞; every eigen-feature and the
    top-10 and full predictors scored under FGSM at ε = 0.1 (PAPER.md's embedded-data setting,
    halved)."""
    task = data.make_task("mnist-5k", classes=(3, 5), n_train=400, n_test=100, seed=0)
    predictor = predictors.KernelPredictor(architectures.architecture("fc", 1)[2], task.x_train, task.y_train)
    scores = spectral.feature_scores(
        predictor, spectral.feature_weights(predictor), task.x_test, task.labels_test, 0.1, "fgsm"
    )
    top_k = spectral.feature_scores(
        predictor, spectral.top_k_weights(predictor, [10, 400]), task.x_test, task.labels_test, 0.1, "fgsm"
    )
    return task, predictor, scores, top_k


def test_real_data_top_feature_is_nearly_constant(mnist_features):
    task, _, scores, _ = mnist_features
    majority = max(np.mean(task.labels_test), 1 - np.mean(task.labels_test))
    assert abs(scores.usefulness[0] - majority) <= 0.1
    assert abs(scores.robustness[0] - scores.usefulness[0]) <= 0.05
    # Nearly constant: one sign on (almost) every test image.
    positive = np.mean(scores.clean_outputs[0, :, 0] > 0)
    assert max(positive, 1 - positive) >= 0.95


def test_real_data_robustness_falls_with_the_index(mnist_features):
    _, _, scores, _ = mnist_features
    assert len(scores.robustness) == 400
    assert scores.robustness[100:].mean() < 0.1
    assert scores.robustness[:10].mean() > scores.robustness[100:].mean()
    # Useful but non-robust deep features exist (PAPER.md: i ≥ 51 robustness 0, usefulness > 0.55).
    deep = np.arange(400) >= 50
    assert np.any(deep & (scores.usefulness >= 0.55) & (scores.robustness <= 0.1))


def test_real_data_top_10_predictor_is_more_robust_than_the_full_one(mnist_features):
    task, predictor, _, top_k = mnist_features
    # The k = 400 predictor is f_∞: its clean accuracy is the predictor's.
    assert top_k.usefulness[1] == pytest.approx(attacks.accuracy(predictor.predict(task.x_test), task.labels_test))
    assert top_k.usefulness[1] >= 0.9
    assert top_k.robustness[0] > top_k.robustness[1]


# ---------------------------------------------------------------------------- 6. many classes


def test_ten_class_features(float64, fc_kernel_fn):
    predictor, x_test, labels = predictor_for(fc_kernel_fn, 10, float64=True, n_train=60, n_test=20, seed=3)
    some = spectral.feature_weights(predictor, [0, 3, 7])
    assert some.shape == (60, 3, 10)
    weights = spectral.feature_weights(predictor)
    assert weights.shape == (60, 60, 10)
    scores = spectral.feature_scores(predictor, weights, x_test, labels, 0.05, "fgsm")
    assert scores.clean_outputs.shape == (60, 20, 10)
    # Usefulness is the accuracy of each feature's argmax, the kernel computed directly.
    outputs = np.einsum("an,nfc->fac", direct(fc_kernel_fn, x_test, predictor.x_train), weights)
    expected = [np.mean(outputs[i].argmax(axis=1) == labels) for i in range(60)]
    np.testing.assert_allclose(scores.usefulness, expected)
    assert len(set(np.round(scores.usefulness, 6))) > 1  # not one accuracy for every feature
    # The 10-vector features sum to the predictor's 10-class output.
    np.testing.assert_allclose(scores.clean_outputs.sum(axis=0), predictor.predict(x_test), rtol=1e-8, atol=1e-8)


# ---------------------------------------------------------------------------- 7. similarity measures


def _random_orthogonal(rng, n):
    q, r = np.linalg.qr(rng.normal(size=(n, n)))
    return q * np.sign(np.diag(r))


def test_eigenspace_overlap_known_answers():
    rng = np.random.default_rng(0)
    n, k = 200, 20
    a, b = _random_orthogonal(rng, n), _random_orthogonal(rng, n)
    assert spectral.eigenspace_overlap(a, a, k) == pytest.approx(1.0)
    # The overlap is of spaces, not bases: a rotation inside the top-k span changes nothing.
    rotated = a.copy()
    rotated[:, :k] = a[:, :k] @ _random_orthogonal(rng, k)
    assert spectral.eigenspace_overlap(a, rotated, k) == pytest.approx(1.0)
    # Unrelated random spaces overlap by about k / N (standard deviation about √2 / N).
    assert spectral.eigenspace_overlap(a, b, k) == pytest.approx(k / n, abs=0.03)
    # Orthogonal spaces do not overlap at all.
    complement = np.concatenate([a[:, k : 2 * k], a[:, :k]], axis=1)
    assert spectral.eigenspace_overlap(a, complement, k) == pytest.approx(0.0, abs=1e-12)


def test_output_correlation_known_answers():
    rng = np.random.default_rng(1)
    outputs = rng.normal(size=(5, 30, 2))
    np.testing.assert_allclose(spectral.output_correlation(outputs, outputs), 1.0)
    np.testing.assert_allclose(spectral.output_correlation(outputs, -outputs), -1.0)
    np.testing.assert_allclose(spectral.output_correlation(outputs, 3.0 * outputs + 2.0), 1.0)  # scale-free
    unrelated = spectral.output_correlation(rng.normal(size=(200, 30, 2)), rng.normal(size=(200, 30, 2)))
    assert abs(unrelated.mean()) < 0.05


@pytest.mark.parametrize("value", [0.5, 0.7, -1.3])
def test_output_correlation_of_a_constant_feature_is_nan(value):
    # The docstring's promise ("a feature constant on the test set gives NaN"). The mean of 60
    # copies of 0.5 is exact; of 0.7 or -1.3 it can be off by an ulp, and then the centred row is
    # ~1e-16 instead of 0 and the correlation a finite ~1e-17: the constant feature then passes
    # for an uncorrelated one instead of dropping out of a nanmean.
    rng = np.random.default_rng(2)
    outputs = rng.normal(size=(5, 30, 2))
    constant = outputs.copy()
    constant[2] = value
    correlation = spectral.output_correlation(constant, outputs)
    assert np.isnan(correlation[2]), correlation[2]
    assert np.all(np.isfinite(np.delete(correlation, 2)))
    assert np.isnan(spectral.output_correlation(outputs, constant)[2])


# ---------------------------------------------------------------------------- 8. bad weights


def test_feature_scores_rejects_weights_of_the_wrong_shape(fc_kernel_fn):
    predictor, x_test, labels = predictor_for(fc_kernel_fn, 1, float64=False)
    weights = spectral.feature_weights(predictor, [0, 1])
    for bad in (weights[:-1], weights[:, :, 0], weights[None]):
        with pytest.raises(ValueError, match=re.escape(str(bad.shape))):
            spectral.feature_scores(predictor, bad, x_test, labels, 0.1)


# ---------------------------------------------------------------------------- 9. loss gradients of a feature


def test_feature_gradients_with_labels_are_the_loss_gradient(float64, fc_kernel_fn):
    """∇ₓ L(φ_i(x), y) (``feature_gradients`` with labels) against central finite differences
    of ``attacks.per_example_loss("binary_cross_entropy", φ_i(x), y)`` on MNIST 3 vs 5 (6x6
    images, 20 training and 12 test points, float64); and its direction against ∇ₓ φ_i: the same way for
    label 0 (target −1), opposite ways for label 1 (target +1), since ∇ₓ L = −y σ(−y φ) ∇ₓ φ."""
    task = data.make_task("mnist-5k", classes=(3, 5), n_train=20, n_test=12, image_size=6, seed=0)
    predictor = predictors.KernelPredictor(
        fc_kernel_fn, jnp.asarray(task.x_train, jnp.float64), task.y_train, float64=True
    )
    x, labels = jnp.asarray(task.x_test, jnp.float64), np.asarray(task.labels_test)
    assert set(labels) == {0, 1}, "both classes must appear among the test images"
    indices = [0, 2, 9]
    weights = spectral.feature_weights(predictor, indices)
    loss_grads = spectral.feature_gradients(predictor, weights, x, labels)
    feature_grads = spectral.feature_gradients(predictor, weights, x)
    assert loss_grads.shape == feature_grads.shape == (len(indices),) + x.shape

    def losses(a, image):  # the loss of every feature at one image: (F,)
        outputs = direct(fc_kernel_fn, image[None], predictor.x_train) @ weights.reshape(len(weights), -1)
        return np.asarray(
            attacks.per_example_loss("binary_cross_entropy", jnp.asarray(outputs.T), np.repeat(labels[a], len(indices)))
        )

    h = 1e-5
    for a in (int(np.argmax(labels == 0)), int(np.argmax(labels == 1))):  # one image of each class
        for pixel in [(2, 3, 0), (4, 1, 0)]:
            step = jnp.zeros_like(x[a]).at[pixel].set(h)
            numeric = (losses(a, x[a] + step) - losses(a, x[a] - step)) / (2 * h)
            np.testing.assert_allclose(
                loss_grads[(slice(None), a) + pixel], numeric, rtol=1e-5, atol=1e-9, err_msg=f"image {a}, pixel {pixel}"
            )

    # ∇ₓ L = −y σ(−y φ) ∇ₓ φ with y = ±1: a positive multiple of ∇ₓ φ for label 0, a negative
    # one for label 1.
    outputs = direct(fc_kernel_fn, x, predictor.x_train) @ weights.reshape(len(weights), -1)  # (n, F)
    y = 2.0 * labels - 1.0
    factor = -y[None, :] / (1.0 + np.exp(y[None, :] * outputs.T))  # (F, n)
    np.testing.assert_allclose(loss_grads, factor[:, :, None, None, None] * feature_grads, rtol=1e-9, atol=1e-14)
    inner = np.sum(loss_grads * feature_grads, axis=(2, 3, 4))  # (F, n)
    assert np.all(np.abs(feature_grads).reshape(len(indices), len(labels), -1).max(-1) > 0)
    assert np.all(inner[:, labels == 0] > 0) and np.all(inner[:, labels == 1] < 0)
