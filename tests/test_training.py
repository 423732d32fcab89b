"""Finite-width training and the laziness measures."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_notes import architectures, empirical, kernel_metrics, kernels, predictors, training


@pytest.fixture(scope="module")
def data():
    x = jax.random.uniform(jax.random.PRNGKey(0), (32, 5, 5, 1))
    y = jnp.where(jnp.mean(x, axis=(1, 2, 3)) > 0.5, 1.0, -1.0)[:, None]
    return x, y


def test_empirical_ntk_matches_jacobian_contraction(data):
    x, _ = data
    init_fn, apply_fn, _ = architectures.architecture("fc", 2, width=32)
    _, params = init_fn(jax.random.PRNGKey(1), x.shape)
    jac = jax.jacobian(lambda p: apply_fn(p, x[:6])[:, 0])(params)
    flat = jnp.concatenate([leaf.reshape(6, -1) for leaf in jax.tree.leaves(jac)], axis=1)
    kernel = empirical.empirical_ntk(apply_fn, params, x[:6], trace=True, implementation="jacobian_contraction")
    np.testing.assert_allclose(kernel, flat @ flat.T, rtol=1e-4, atol=1e-5)


def test_gradient_descent_follows_the_kernel_flow_when_wide(data):
    """A wide net trained for time t is close to its linearisation with the infinite kernel,
    and closer than a narrow one: the lazy regime, measured."""
    x, y = data
    distances = []
    for width in (32, 2048):
        init_fn, apply_fn, kernel_fn = architectures.architecture("fc", 1, width=width)
        predictor = predictors.KernelPredictor(kernel_fn, x, y)
        rate = training.stable_learning_rate(predictor.k_train_train)
        _, params = init_fn(jax.random.PRNGKey(2), x.shape)
        net = training.train(apply_fn, params, x, y, rate, steps=120, chunk=50)
        assert net.losses[-1] < 0.5 * training.training_loss("mse", apply_fn, params, x, y)
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
    assert kernel_metrics.relative_change(a, b) == pytest.approx(0.5)
    # Two kernels are pytrees with one leaf each; computed in float64 whatever the input.
    k = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)
    assert kernel_metrics.relative_change(k, 3 * k) == pytest.approx(2.0, rel=1e-7)
    assert kernel_metrics.relative_change(k, k) == 0.0


def test_bad_training_arguments(data):
    x, y = data
    init_fn, apply_fn, _ = architectures.architecture("fc", 1, width=8)
    _, params = init_fn(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(ValueError, match="-0.1"):
        training.train(apply_fn, params, x, y, -0.1, 10)


def test_linearised_net_is_kernel_regression_with_its_empirical_ntk(data):
    """Gradient descent on nt.linearize's model is the kernel flow of the empirical NTK at θ₀."""
    x, y = data
    x_test = jax.random.uniform(jax.random.PRNGKey(7), (9, 5, 5, 1))
    init_fn, apply_fn, kernel_fn = architectures.architecture("fc", 1, width=64)
    _, params = init_fn(jax.random.PRNGKey(3), x.shape)
    k_train = empirical.empirical_ntk(apply_fn, params, x, trace=True, implementation="jacobian_contraction")
    predictor = predictors.KernelPredictor(kernel_fn, x, y, k_train_train=k_train)
    rate = training.stable_learning_rate(k_train, fraction=0.05)  # small steps: GD ≈ gradient flow
    net = training.train(training.linearised(apply_fn, params), params, x, y, rate, steps=400)
    expected = predictor.predict(
        x_test,
        net.time,
        k_test_train=empirical.empirical_ntk(
            apply_fn, params, x_test, x, trace=True, implementation="jacobian_contraction"
        ),
        f0_train=apply_fn(params, x),
        f0_test=apply_fn(params, x_test),
    )
    ours = net.logits_fn()(x_test)
    assert float(jnp.max(jnp.abs(ours - apply_fn(params, x_test)))) > 0.1  # it did move
    np.testing.assert_allclose(ours, expected, atol=2e-3)


def test_centred_net_starts_at_zero_and_trains(data):
    x, y = data
    init_fn, apply_fn, kernel_fn = architectures.architecture("fc", 1, width=128)
    _, params = init_fn(jax.random.PRNGKey(4), x.shape)
    model = training.centred(apply_fn, params)
    assert float(jnp.max(jnp.abs(model(params, x)))) == 0.0
    rate = training.stable_learning_rate(kernels.kernel_matrix(kernel_fn, x))
    net = training.train(model, params, x, y, rate, steps=100)
    assert net.losses[-1] < 0.5 * training.training_loss("mse", model, params, x, y)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_sgd_is_seeded_and_reduces_the_loss(data, loss):
    x, y = data
    init_fn, apply_fn, _ = architectures.architecture("fc", 1, width=64, parameterization="standard")
    _, params = init_fn(jax.random.PRNGKey(5), x.shape)
    runs = [training.train(apply_fn, params, x, y, 0.05, steps=60, loss=loss, batch_size=8, seed=s) for s in (0, 0, 1)]
    assert runs[0].losses[-1] < 0.7 * training.training_loss(loss, apply_fn, params, x, y)
    same = jax.tree.leaves(runs[0].params), jax.tree.leaves(runs[1].params)
    assert all(bool(jnp.array_equal(a, b)) for a, b in zip(*same))
    assert kernel_metrics.relative_change(runs[0].params, runs[2].params) > 1e-4  # another data order


def test_cross_entropy_losses_are_the_textbook_formulas():
    f = jnp.array([[2.0], [-0.5]])
    y = jnp.array([[1.0], [1.0]])
    identity = lambda params, x: x  # noqa: E731
    expected = np.mean(np.log1p(np.exp(-np.array([2.0, -0.5]))))
    assert float(training.training_loss("cross_entropy", identity, None, f, y)) == pytest.approx(expected, rel=1e-6)
    logits = jnp.array([[1.0, 2.0, 0.5]])
    onehot = jnp.array([[0.0, 1.0, 0.0]])
    expected = -np.log(np.exp(2.0) / np.exp([1.0, 2.0, 0.5]).sum())
    assert float(training.training_loss("cross_entropy", identity, None, logits, onehot)) == pytest.approx(
        expected, rel=1e-6
    )


def test_bad_training_options(data):
    x, y = data
    init_fn, apply_fn, _ = architectures.architecture("fc", 1, width=8)
    _, params = init_fn(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(ValueError, match="hinge"):
        training.train(apply_fn, params, x, y, 0.1, 10, loss="hinge")
    with pytest.raises(ValueError, match="64"):
        training.train(apply_fn, params, x, y, 0.1, 10, batch_size=64)
    with pytest.raises(ValueError, match=r"\(32, C\)"):
        training.train(apply_fn, params, x, y[:10], 0.1, 10)
