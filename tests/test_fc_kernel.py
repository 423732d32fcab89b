"""The closed-form FC ReLU kernels (ntk_notes.fc_kernel) against neural-tangents' kernel_fn:
values, input gradients (also against finite differences), fallbacks and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_notes import architectures, fc_kernel, kernels, predictors

DEPTHS = (1, 2, 3)


def images(seed, n, dtype=jnp.float32):
    """n random 6x6 grey images in [0, 1]: distinct points, cos θ between about 0.6 and 0.9."""
    return jax.random.uniform(jax.random.PRNGKey(seed), (n, 6, 6, 1), dtype)


def max_relative(ours, theirs, mask=None):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    mask = np.ones(theirs.shape, bool) if mask is None else mask
    return float(np.max(np.abs(ours - theirs)[mask] / np.abs(theirs)[mask]))


def self_kernels(x, depth, W_std=2**0.5, b_std=0.1):
    """(NNGP, NTK) of each point with itself (cos θ = 1: J0 = J1 = π), NTK parameterization,
    float64 numpy."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    k = W_std**2 * np.sum(x * x, 1) / x.shape[1] + b_std**2
    theta = k
    for _ in range(depth):
        k = W_std**2 * k / 2 + b_std**2
        theta = k + W_std**2 * theta / 2
    return k, theta


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_values_match_kernel_fn(request, depth, dtype):
    rtol = {"float32": 1e-6, "float64": 1e-12}[dtype]
    if dtype == "float64":
        request.getfixturevalue("float64")
    x1, x2 = images(0, 20, dtype), images(1, 13, dtype)
    kernel_fn = architectures.architecture("fc", depth)[2]
    reference = jax.jit(kernel_fn.reference, static_argnames="get")
    ours = jax.jit(kernel_fn, static_argnames="get")
    for get in ("nngp", "ntk"):
        value = ours(x1, x2, get=get)
        assert value.dtype == jnp.dtype(dtype) and value.shape == (20, 13)
        assert max_relative(value, reference(x1, x2, get=get)) <= rtol
    # x2=None: off the diagonal as neural-tangents; on it, cos θ = 1 exactly (neural-tangents'
    # own diagonal is off by ~1e-4 in float32 and ~1e-8 in float64 there: sqrt(rounding)).
    both, theirs = ours(x1, None, get=("nngp", "ntk")), reference(x1, None, get=("nngp", "ntk"))
    assert both._fields == ("nngp", "ntk")
    off = ~np.eye(20, dtype=bool)
    for value, expected, on_diagonal in zip(both, theirs, self_kernels(x1, depth)):
        assert max_relative(value, expected, off) <= rtol
        assert max_relative(np.diagonal(np.asarray(value)), on_diagonal) <= rtol
        np.testing.assert_allclose(np.diagonal(np.asarray(value)), np.diagonal(np.asarray(expected)), rtol=1e-3)
    # The same points passed as x2 (kernel_matrix's diagonal blocks): cos θ rounds to within
    # a few ulp of 1 and counts as 1, so the diagonal is as exact as under x2=None.
    pairs = ours(x1, x1, get=("nngp", "ntk"))
    for value, expected, on_diagonal in zip(pairs, theirs, self_kernels(x1, depth)):
        assert max_relative(value, expected, off) <= rtol
        assert max_relative(np.diagonal(np.asarray(value)), on_diagonal) <= rtol


@pytest.mark.parametrize(
    "spec",
    [
        dict(parameterization="standard"),
        dict(parameterization="standard", width=64, W_std=1.3, b_std=None),
        dict(W_std=0.7, b_std=None),
        dict(W_std=1.1, b_std=0.0),
    ],
)
def test_other_parameterizations_and_scales_match_kernel_fn(float64, spec):
    x1, x2 = images(2, 9, jnp.float64), images(3, 7, jnp.float64)
    for depth in DEPTHS:
        kernel_fn = architectures.architecture("fc", depth, **spec)[2]
        assert isinstance(kernel_fn, fc_kernel.FcReluKernel)
        for x in (x2, None):
            ours = kernel_fn(x1, x, ("ntk", "nngp"))
            theirs = kernel_fn.reference(x1, x, ("ntk", "nngp"))
            assert ours._fields == ("ntk", "nngp")
            mask = np.ones((9, 9 if x is None else 7), bool) if x is not None else ~np.eye(9, dtype=bool)
            for a, b in zip(ours, theirs):
                assert max_relative(a, b, mask) <= 1e-12


def test_row_blocks_give_the_one_block_kernels(float64):
    x1, x2 = images(4, 37, jnp.float64), images(5, 11, jnp.float64)
    for x in (x2, None):
        whole = fc_kernel.fc_relu_kernels(x1, x, depth=2)
        blocked = fc_kernel.fc_relu_kernels(x1, x, depth=2, block_entries=50)  # 4 rows, ragged
        for a, b in zip(blocked, whole):
            assert max_relative(a, b) <= 1e-13
    nngp_only = fc_kernel.fc_relu_kernels(x1, x2, depth=2, ntk=False, block_entries=50)
    whole = fc_kernel.fc_relu_kernels(x1, x2, depth=2)
    assert nngp_only[1] is None and max_relative(nngp_only[0], whole[0]) <= 1e-13


def test_polynomial_arccos_is_within_float32_rounding():
    c = jnp.linspace(-1.0, 1.0, 200_001, dtype=jnp.float32)
    error = np.abs(np.asarray(fc_kernel.polynomial_arccos(c), np.float64) - np.arccos(np.asarray(c, np.float64)))
    assert error.max() <= 6e-7


def loss_through(kernel_fn):
    """A kernel predictor's loss at test inputs z: Σ tanh(Θ(z, X) w), as in the attacks."""
    return jax.jit(jax.grad(lambda z, x_train, w: jnp.sum(jnp.tanh(kernel_fn(z, x_train, "ntk") @ w))))


@pytest.mark.parametrize("depth", DEPTHS)
def test_input_gradients_match_kernel_fn_and_finite_differences(float64, depth):
    x_train, z = images(6, 30, jnp.float64), images(7, 8, jnp.float64)
    w = jax.random.normal(jax.random.PRNGKey(8), (30, 3), jnp.float64)
    kernel_fn = architectures.architecture("fc", depth)[2]
    ours, theirs = loss_through(kernel_fn)(z, x_train, w), loss_through(kernel_fn.reference)(z, x_train, w)
    assert float(jnp.max(jnp.abs(ours - theirs))) <= 1e-12 * float(jnp.max(jnp.abs(theirs)))
    # Central differences along a random direction.
    direction = jax.random.normal(jax.random.PRNGKey(9), z.shape, jnp.float64)
    loss = lambda u: jnp.sum(jnp.tanh(kernel_fn(u, x_train, "ntk") @ w))  # noqa: E731
    h = 1e-5
    numeric = (loss(z + h * direction) - loss(z - h * direction)) / (2 * h)
    np.testing.assert_allclose(float(jnp.vdot(ours, direction)), float(numeric), rtol=1e-8)


@pytest.mark.parametrize("depth", DEPTHS)
def test_float32_gradients_are_as_close_to_float64_as_kernel_fn_s(depth):
    # x64 off for the float32 gradients: with it on, neural-tangents promotes float32 inputs to float64.
    x_train, z = images(10, 30), images(11, 8)
    w = jax.random.normal(jax.random.PRNGKey(12), (30, 3))
    kernel_fn = architectures.architecture("fc", depth)[2]
    ours = loss_through(kernel_fn)(z, x_train, w)
    theirs = loss_through(kernel_fn.reference)(z, x_train, w)
    assert ours.dtype == theirs.dtype == jnp.float32
    jax.config.update("jax_enable_x64", True)
    try:
        truth = np.asarray(loss_through(kernel_fn.reference)(*(jnp.asarray(a, jnp.float64) for a in (z, x_train, w))))
        assert truth.dtype == np.float64
    finally:
        jax.config.update("jax_enable_x64", False)
    scale = np.max(np.abs(truth))
    ours_error = np.max(np.abs(np.asarray(ours, np.float64) - truth)) / scale
    their_error = np.max(np.abs(np.asarray(theirs, np.float64) - truth)) / scale
    assert ours_error <= max(2 * their_error, 1e-6), (ours_error, their_error)


@pytest.mark.parametrize("b_std", [0.1, 0.0])
def test_gradient_at_coincident_and_opposite_points_is_finite_and_kernel_fn_s(float64, b_std):
    """cos θ = 1 (a test point on a training point) and, without bias, cos θ = -1 (x' = -x):
    arccos and sin θ have infinite derivatives there; both kernels leave θ's out (0)."""
    x_train = images(13, 12, jnp.float64)
    z = x_train[:3] if b_std else jnp.concatenate([x_train[:3], -x_train[3:5]])
    w = jax.random.normal(jax.random.PRNGKey(14), (12, 2), jnp.float64)
    for depth in DEPTHS:
        kernel_fn = architectures.architecture("fc", depth, b_std=b_std)[2]
        ours, theirs = loss_through(kernel_fn)(z, x_train, w), loss_through(kernel_fn.reference)(z, x_train, w)
        assert bool(jnp.all(jnp.isfinite(ours)))
        # Both sides take 1/sin θ of a rounding residue times dcos θ of one: ~sqrt(eps) apart.
        assert float(jnp.max(jnp.abs(ours - theirs))) <= 1e-6 * float(jnp.max(jnp.abs(theirs)))


def test_kernel_predictor_attack_gradient_matches_kernel_fn_s(float64):
    x_train, x_test = images(15, 25, jnp.float64), images(16, 6, jnp.float64)
    y_train = np.asarray(jax.random.normal(jax.random.PRNGKey(17), (25, 2)))
    kernel_fn = architectures.architecture("fc", 2)[2]
    # One Θ(X, X) for both: its diagonal (a point with itself, computed as an x1-x2 block by
    # kernel_matrix) carries ~1e-8 of rounding noise in float64 in either kernel.
    k_train = kernels.kernel_matrix(kernel_fn.reference, x_train)
    gradients = []
    for fn in (kernel_fn, kernel_fn.reference):
        logits = predictors.KernelPredictor(fn, x_train, y_train, k_train, float64=True).logits_fn()
        gradients.append(jax.grad(lambda x: jnp.sum(jax.nn.log_softmax(logits(x))[:, 0]))(x_test))
    assert float(jnp.max(jnp.abs(gradients[0] - gradients[1]))) <= 1e-10 * float(jnp.max(jnp.abs(gradients[1])))


def test_other_calls_go_to_kernel_fn():
    x1, x2 = images(18, 5), images(19, 4)
    kernel_fn = architectures.architecture("fc", 2)[2]
    whole = kernel_fn(x1, x2)  # get=None: neural-tangents' Kernel object
    assert type(whole) is type(kernel_fn.reference(x1, x2))
    np.testing.assert_allclose(whole.ntk, kernel_fn(x1, x2, "ntk"), rtol=1e-6)
    np.testing.assert_array_equal(kernel_fn(x1, x2, "cov1"), kernel_fn.reference(x1, x2, "cov1"))
    mixed = kernel_fn(x1, x2, ("nngp", "cov2"))
    np.testing.assert_array_equal(mixed.cov2, kernel_fn.reference(x1, x2, "cov2"))
    with pytest.raises(ValueError, match="unique"):  # neural-tangents' own check
        kernel_fn(x1, x2, ("ntk", "ntk"))


def test_bad_inputs_are_refused():
    kernel_fn = architectures.architecture("fc", 1)[2]
    with pytest.raises(ValueError, match=r"shape \(n, \.\.\.\).*\(7,\)"):
        kernel_fn(jnp.ones(7), None, "ntk")
    with pytest.raises(ValueError, match=r"x1 of shape \(2, 6, 6, 1\) and x2 of shape \(3, 5, 5, 1\)"):
        kernel_fn(jnp.ones((2, 6, 6, 1)), jnp.ones((3, 5, 5, 1)), "ntk")
    with pytest.raises(ValueError, match="parameterization 'mean_field'.*allowed: ntk, standard"):
        fc_kernel.FcReluKernel(kernel_fn.reference, 1, 1.0, 0.1, "mean_field", 512)
    with pytest.raises(ValueError, match="depth 0"):
        fc_kernel.FcReluKernel(kernel_fn.reference, 0, 1.0, 0.1, "ntk", 512)


def test_only_fc_takes_the_closed_form():
    fc = architectures.architecture("fc", 2)
    assert isinstance(fc[2], fc_kernel.FcReluKernel) and fc[2] is architectures.architecture("fc", 2)[2]
    assert fc[2].spec["depth"] == 2
    for name, depth in (("conv", 1), ("myrtle", 5)):
        assert not isinstance(architectures.architecture(name, depth)[2], fc_kernel.FcReluKernel)
    for name in architectures.NETWORKS:
        assert not isinstance(architectures.network(name)[2], fc_kernel.FcReluKernel)
    # The stax init_fn/apply_fn are kept: a network of the architecture runs.
    _, params = fc[0](jax.random.PRNGKey(0), (-1, 6, 6, 1))
    assert fc[1](params, images(20, 3)).shape == (3, 1)
