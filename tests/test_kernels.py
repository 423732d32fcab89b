"""The kernel predictor against neural-tangents' own computations and direct linear algebra."""

import jax
import jax.numpy as jnp
import neural_tangents as nt
import numpy as np
import pytest

from ntk_notes import kernels


@pytest.fixture(scope="module")
def problem():
    key = jax.random.PRNGKey(0)
    x_train = jax.random.uniform(key, (40, 6, 6, 1))
    x_test = jax.random.uniform(jax.random.PRNGKey(1), (13, 6, 6, 1))
    y_train = jnp.sign(jnp.mean(x_train, axis=(1, 2, 3)) - 0.5)[:, None] + 0.0
    y_train = jnp.where(y_train == 0, 1.0, y_train)
    return x_train, y_train, x_test


@pytest.fixture
def float64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("name,depth", [("fc", 1), ("fc", 3), ("conv", 1), ("myrtle", 5)])
def test_kernel_matrix_in_blocks_equals_one_call(problem, float64, name, depth):
    # float64: in float32 the arc-cosine near the diagonal alone differs by ~1e-4 between calls.
    x_train, x_test = (jnp.asarray(x, jnp.float64) for x in (problem[0], problem[2]))
    _, _, kernel_fn = kernels.architecture(name, depth)
    direct = np.asarray(kernel_fn(x_test, x_train, "ntk"))
    blocked = kernels.kernel_matrix(kernel_fn, x_test, x_train, batch_size=7)
    assert blocked.dtype == np.float64
    np.testing.assert_allclose(blocked, direct, rtol=1e-7)  # arccos near 1 amplifies rounding to ~sqrt(eps)
    symmetric = kernels.kernel_matrix(kernel_fn, x_train, batch_size=9)
    np.testing.assert_allclose(symmetric, np.asarray(kernel_fn(x_train, x_train, "ntk")), rtol=1e-7)  # arccos near 1 amplifies rounding to ~sqrt(eps)


def test_architecture_kernel_matches_monte_carlo_of_finite_networks(problem):
    """The stax triple is consistent: the empirical NTK of wide finite nets averages to kernel_fn."""
    x_train, _, _ = problem
    x = x_train[:6]
    init_fn, apply_fn, kernel_fn = kernels.architecture("fc", 1, width=1024)
    mc = nt.monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(3), n_samples=8, trace_axes=(-1,))
    np.testing.assert_allclose(mc(x, None, "ntk"), kernel_fn(x, None, "ntk"), rtol=0.05)


@pytest.mark.parametrize("t", [0.5, 30.0, 1e4, None])
def test_predictor_matches_neural_tangents_gradient_descent_mse(problem, t):
    x_train, y_train, x_test = problem
    _, _, kernel_fn = kernels.architecture("fc", 2)
    predictor = kernels.KernelPredictor(kernel_fn, x_train, y_train)
    k_test = np.asarray(kernel_fn(x_test, x_train, "ntk"), np.float64)
    reference = nt.predict.gradient_descent_mse(predictor.k_train_train, np.asarray(y_train, np.float64))
    _, expected = reference(t, np.zeros((40, 1)), np.zeros((13, 1)), k_test)
    ours = predictor.predict(x_test, t)
    assert np.abs(ours).max() > 1e-2
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


def test_f_infinity_is_the_kernel_regression_solution_and_interpolates(problem, float64):
    x_train, y_train = jnp.asarray(problem[0], jnp.float64), jnp.asarray(problem[1], jnp.float64)
    _, _, kernel_fn = kernels.architecture("conv", 1)
    predictor = kernels.KernelPredictor(kernel_fn, x_train, y_train)
    k = np.asarray(kernel_fn(x_train, x_train, "ntk"), np.float64)
    np.testing.assert_allclose(predictor.alpha, np.linalg.solve(k, np.asarray(y_train)), rtol=1e-6)  # kernel recomputed: ~1e-9 differences, amplified by conditioning
    np.testing.assert_allclose(predictor.predict(x_train), y_train, atol=1e-3)
    assert predictor.jitter == 0.0


def test_logits_fn_agrees_with_predict_and_is_differentiable(problem):
    x_train, y_train, x_test = problem
    _, _, kernel_fn = kernels.architecture("fc", 1)
    predictor = kernels.KernelPredictor(kernel_fn, x_train, y_train)
    for t in (10.0, None):
        np.testing.assert_allclose(predictor.logits_fn(t)(x_test), predictor.predict(x_test, t), rtol=1e-4, atol=1e-5)
    grad = jax.grad(lambda x: jnp.sum(predictor.logits_fn()(x)))(x_test)
    assert grad.shape == x_test.shape and float(jnp.abs(grad).max()) > 0


def test_initial_function_correction_is_the_linearised_network(problem):
    """With f0 given, the predictor equals gradient flow of the linearised network: at t=0 it
    returns f0 on the test set, and at t=∞ it interpolates the training targets."""
    x_train, y_train, x_test = problem
    _, _, kernel_fn = kernels.architecture("fc", 1)
    predictor = kernels.KernelPredictor(kernel_fn, x_train, y_train)
    f0_train = jax.random.normal(jax.random.PRNGKey(9), (40, 1))
    f0_test = jax.random.normal(jax.random.PRNGKey(10), (13, 1))
    np.testing.assert_allclose(predictor.predict(x_test, 0.0, f0_train=f0_train, f0_test=f0_test), f0_test, atol=1e-6)
    at_train = predictor.predict(x_train, None, f0_train=f0_train, f0_test=f0_train)
    np.testing.assert_allclose(at_train, y_train, atol=1e-3)
    with pytest.raises(ValueError, match="f0_train and f0_test"):
        predictor.predict(x_test, 1.0, f0_train=f0_train)


def test_singular_kernel_gets_a_named_jitter(problem):
    x_train, y_train, _ = problem
    _, _, kernel_fn = kernels.architecture("fc", 1)
    duplicated = jnp.concatenate([x_train[:10], x_train[:10]])
    with pytest.warns(UserWarning, match="jitter of"):
        predictor = kernels.KernelPredictor(kernel_fn, duplicated, jnp.ones((20, 1)))
    assert predictor.jitter > 0


def test_bad_input_names_the_value(problem):
    x_train, y_train, _ = problem
    with pytest.raises(ValueError, match="'mlp'"):
        kernels.architecture("mlp")
    with pytest.raises(ValueError, match="Myrtle depth 6"):
        kernels.architecture("myrtle", 6)
    with pytest.raises(ValueError, match="'mup'"):
        kernels.architecture("fc", parameterization="mup")
    _, _, kernel_fn = kernels.architecture("fc", 1)
    with pytest.raises(ValueError, match=r"\(40, C\)"):
        kernels.KernelPredictor(kernel_fn, x_train, y_train[:30])
    predictor = kernels.KernelPredictor(kernel_fn, x_train, y_train)
    with pytest.raises(ValueError, match="-1"):
        predictor.weights(-1.0)


def test_accuracy_binary_and_multiclass():
    assert kernels.accuracy(np.array([[0.3], [-2.0], [0.1]]), np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert kernels.accuracy(np.array([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3]]), np.array([1, 2])) == 0.5
