"""The shim that lets neural-tangents 0.6.5 run on the pinned jax: if a jax bump breaks
it, these fail loudly."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import neural_tangents as nt
import numpy as np
import pytest
from neural_tangents import stax

from ntk_notes import _compat


def small_cnn():
    return stax.serial(
        stax.Conv(4, (3, 3), padding="SAME"),
        stax.Relu(),
        stax.Conv(4, (3, 3), padding="SAME"),
        stax.Relu(),
        stax.Flatten(),
        stax.Dense(3),
    )


def test_three_empirical_ntk_implementations_agree():
    init_fn, apply_fn, _ = small_cnn()
    x1 = jax.random.normal(jax.random.PRNGKey(0), (5, 6, 6, 2))
    x2 = jax.random.normal(jax.random.PRNGKey(1), (3, 6, 6, 2))
    _, params = init_fn(jax.random.PRNGKey(2), x1.shape)
    kernels = {
        impl: np.asarray(jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=impl))(x1, x2, params))
        for impl in (
            nt.NtkImplementation.JACOBIAN_CONTRACTION,
            nt.NtkImplementation.NTK_VECTOR_PRODUCTS,
            nt.NtkImplementation.STRUCTURED_DERIVATIVES,
        )
    }
    reference = kernels[nt.NtkImplementation.JACOBIAN_CONTRACTION]
    assert reference.shape == (5, 3, 3, 3)
    assert np.abs(reference).max() > 1e-2  # a kernel of zeros would agree trivially
    for impl, kernel in kernels.items():
        np.testing.assert_allclose(kernel, reference, rtol=2e-4, atol=2e-4 * np.abs(reference).max(), err_msg=str(impl))


def test_empirical_ntk_matches_explicit_jacobian_contraction():
    init_fn, apply_fn, _ = small_cnn()
    x = jax.random.normal(jax.random.PRNGKey(3), (4, 6, 6, 2))
    _, params = init_fn(jax.random.PRNGKey(4), x.shape)
    jac = jax.jit(jax.jacobian(apply_fn))(params, x)  # leaves of shape (4, 3, *param_shape)
    flat = jnp.concatenate([leaf.reshape(4, 3, -1) for leaf in jax.tree.leaves(jac)], axis=-1)
    explicit = jnp.einsum("iap,jbp->ijab", flat, flat)
    structured = nt.NtkImplementation.STRUCTURED_DERIVATIVES
    fast = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=structured))(x, None, params)
    np.testing.assert_allclose(fast, explicit, rtol=2e-4, atol=1e-4 * float(jnp.abs(explicit).max()))


def test_infinite_width_kernel_input_gradient_matches_finite_differences():
    jax.config.update("jax_enable_x64", True)
    try:
        _, _, kernel_fn = stax.serial(stax.Dense(512, 2**0.5, 0.1), stax.Relu(), stax.Dense(1, 2**0.5, 0.1))
        x = jax.random.uniform(jax.random.PRNGKey(5), (1, 10), dtype=jnp.float64)
        x_train = jax.random.uniform(jax.random.PRNGKey(6), (7, 10), dtype=jnp.float64)
        w = jax.random.normal(jax.random.PRNGKey(7), (7,), dtype=jnp.float64)

        @jax.jit
        def f(z):
            return jnp.sum(kernel_fn(z, x_train, "ntk") @ w)

        grad = jax.grad(f)(x)
        h = 1e-5
        numeric = np.zeros(x.shape)
        for k in range(x.shape[1]):
            e = jnp.zeros_like(x).at[0, k].set(h)
            numeric[0, k] = (f(x + e) - f(x - e)) / (2 * h)
        assert np.abs(numeric).max() > 1e-3
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_importing_prints_nothing_and_loads_no_tensorflow():
    code = "import ntk_notes, neural_tangents, sys; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
    assert result.stderr == ""


def test_unsupported_jax_version_is_refused(monkeypatch):
    monkeypatch.setattr(jax, "__version__", "0.10.0")
    with pytest.raises(ImportError, match=r"jax==0\.9\.2 only \(found jax 0\.10\.0\)"):
        _compat.check_jax_version()
