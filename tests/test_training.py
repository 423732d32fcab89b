"""Finite-width training and the laziness measures."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_notes import kernels, training


@pytest.fixture(scope="module")
def data():
    x = jax.random.uniform(jax.random.PRNGKey(0), (32, 5, 5, 1))
    y = jnp.where(jnp.mean(x, axis=(1, 2, 3)) > 0.5, 1.0, -1.0)[:, None]
    return x, y


def test_empirical_ntk_matches_jacobian_contraction(data):
    x, _ = data
    init_fn, apply_fn, _ = kernels.architecture("fc", 2, width=32)
    _, params = init_fn(jax.random.PRNGKey(1), x.shape)
    jac = jax.jacobian(lambda p: apply_fn(p, x[:6])[:, 0])(params)
    flat = jnp.concatenate([leaf.reshape(6, -1) for leaf in jax.tree.leaves(jac)], axis=1)
    np.testing.assert_allclose(training.empirical_ntk(apply_fn, params, x[:6]), flat @ flat.T, rtol=1e-4, atol=1e-5)


def test_gradient_descent_follows_the_kernel_flow_when_wide(data):
    """A wide net trained for time t is close to its linearisation with the infinite kernel,
    and closer than a narrow one: the lazy regime, measured."""
    x, y = data
    distances = []
    for width in (32, 2048):
        init_fn, apply_fn, kernel_fn = kernels.architecture("fc", 1, width=width)
        predictor = kernels.KernelPredictor(kernel_fn, x, y)
        rate = training.stable_learning_rate(predictor.k_train_train)
        _, params = init_fn(jax.random.PRNGKey(2), x.shape)
        net = training.train_full_batch(apply_fn, params, x, y, rate, steps=120, chunk=50)
        assert net.losses[-1] < 0.5 * training.mse_loss(apply_fn, params, x, y)
        assert len(net.losses) == 3  # chunks of 50, 50 and the remainder 20
        limit = predictor.predict(x, net.time, f0_train=apply_fn(params, x), f0_test=apply_fn(params, x))
        distances.append(float(jnp.sqrt(jnp.mean((apply_fn(net.params, x) - limit) ** 2))))
    assert distances[1] < 0.5 * distances[0]
    assert distances[1] < 0.05


def test_stable_learning_rate_sets_the_top_mode_rate():
    k = np.diag([8.0, 2.0, 1.0])
    assert training.stable_learning_rate(k, fraction=1.0) == pytest.approx(3 / 8)


def test_relative_change_of_pytrees():
    a = {"w": jnp.ones(4), "b": jnp.zeros(0)}
    b = {"w": jnp.ones(4) * 1.5, "b": jnp.zeros(0)}
    assert training.relative_change(a, b) == pytest.approx(0.5)


def test_bad_training_arguments(data):
    x, y = data
    init_fn, apply_fn, _ = kernels.architecture("fc", 1, width=8)
    _, params = init_fn(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(ValueError, match="-0.1"):
        training.train_full_batch(apply_fn, params, x, y, -0.1, 10)
