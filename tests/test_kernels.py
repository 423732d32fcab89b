"""The kernel predictor against neural-tangents' own computations and direct linear algebra."""

import json
import re

import jax
import jax.numpy as jnp
import neural_tangents as nt
import numpy as np
import pytest

from ntk_notes import architectures, kernels, null_kernels, predictors


@pytest.fixture(scope="module")
def problem():
    key = jax.random.PRNGKey(0)
    x_train = jax.random.uniform(key, (40, 6, 6, 1))
    x_test = jax.random.uniform(jax.random.PRNGKey(1), (13, 6, 6, 1))
    y_train = jnp.sign(jnp.mean(x_train, axis=(1, 2, 3)) - 0.5)[:, None] + 0.0
    y_train = jnp.where(y_train == 0, 1.0, y_train)
    return x_train, y_train, x_test


@pytest.mark.parametrize("name,depth", [("fc", 1), ("fc", 3), ("conv", 1), ("myrtle", 5)])
def test_kernel_matrix_in_blocks_equals_one_call(problem, float64, name, depth):
    # float64: in float32 the arc-cosine near the diagonal alone differs by ~1e-4 between calls.
    x_train, x_test = (jnp.asarray(x, jnp.float64) for x in (problem[0], problem[2]))
    _, _, kernel_fn = architectures.architecture(name, depth)
    # neural-tangents' kernel in one call (jitted: op by op, Myrtle-5 alone took 17 s).
    direct_fn = jax.jit(kernel_fn, static_argnames="get")
    blocked = kernels.kernel_matrix(kernel_fn, x_test, x_train, batch_size=7)
    assert blocked.dtype == np.float64
    # rtol: arccos near 1 amplifies rounding to ~sqrt(eps)
    np.testing.assert_allclose(blocked, np.asarray(direct_fn(x_test, x_train, "ntk")), rtol=1e-7)
    symmetric = kernels.kernel_matrix(kernel_fn, x_train, batch_size=9)
    np.testing.assert_allclose(symmetric, np.asarray(direct_fn(x_train, x_train, "ntk")), rtol=1e-7)


def test_architecture_kernel_matches_monte_carlo_of_finite_networks(problem):
    """The stax triple is consistent: the empirical NTK of wide finite nets averages to kernel_fn."""
    x_train, _, _ = problem
    x = x_train[:6]
    init_fn, apply_fn, kernel_fn = architectures.architecture("fc", 1, width=1024)
    mc = nt.monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(3), n_samples=8, trace_axes=(-1,))
    np.testing.assert_allclose(mc(x, None, "ntk"), kernel_fn(x, None, "ntk"), rtol=0.05)


@pytest.mark.parametrize("t", [0.5, 30.0, 1e4, None])
def test_predictor_matches_neural_tangents_gradient_descent_mse(problem, float64, t):
    # float64: at t = 1e4 the ill-conditioned solve amplifies float32 rounding past 1e-4.
    x_train, y_train, x_test = (jnp.asarray(a, jnp.float64) for a in problem)
    _, _, kernel_fn = architectures.architecture("fc", 2)
    predictor = predictors.KernelPredictor(kernel_fn, x_train, y_train)
    k_test = np.asarray(kernel_fn(x_test, x_train, "ntk"), np.float64)
    reference = nt.predict.gradient_descent_mse(predictor.k_train_train, np.asarray(y_train, np.float64))
    _, expected = reference(t, np.zeros((40, 1)), np.zeros((13, 1)), k_test)
    ours = predictor.predict(x_test, t)
    assert np.abs(ours).max() > 1e-2
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


def test_f_infinity_is_the_kernel_regression_solution_and_interpolates(problem, float64):
    x_train, y_train = jnp.asarray(problem[0], jnp.float64), jnp.asarray(problem[1], jnp.float64)
    _, _, kernel_fn = architectures.architecture("conv", 1)
    predictor = predictors.KernelPredictor(kernel_fn, x_train, y_train)
    k = np.asarray(kernel_fn(x_train, x_train, "ntk"), np.float64)
    np.testing.assert_allclose(
        predictor.alpha, np.linalg.solve(k, np.asarray(y_train)), rtol=1e-6
    )  # kernel recomputed: ~1e-9 differences, amplified by conditioning
    np.testing.assert_allclose(predictor.predict(x_train), y_train, atol=1e-3)
    assert predictor.jitter == 0.0


def test_logits_fn_agrees_with_predict_and_is_differentiable(problem):
    x_train, y_train, x_test = problem
    _, _, kernel_fn = architectures.architecture("fc", 1)
    predictor = predictors.KernelPredictor(kernel_fn, x_train, y_train)
    for t in (10.0, None):
        np.testing.assert_allclose(predictor.logits_fn(t)(x_test), predictor.predict(x_test, t), rtol=1e-4, atol=1e-5)
    grad = jax.grad(lambda x: jnp.sum(predictor.logits_fn()(x)))(x_test)
    assert grad.shape == x_test.shape and float(jnp.abs(grad).max()) > 0


def test_initial_function_correction_is_the_linearised_network(problem):
    """With f0 given, the predictor equals gradient flow of the linearised network: at t=0 it
    returns f0 on the test set, and at t=∞ it interpolates the training targets."""
    x_train, y_train, x_test = problem
    _, _, kernel_fn = architectures.architecture("fc", 1)
    predictor = predictors.KernelPredictor(kernel_fn, x_train, y_train)
    f0_train = jax.random.normal(jax.random.PRNGKey(9), (40, 1))
    f0_test = jax.random.normal(jax.random.PRNGKey(10), (13, 1))
    np.testing.assert_allclose(predictor.predict(x_test, 0.0, f0_train=f0_train, f0_test=f0_test), f0_test, atol=1e-6)
    at_train = predictor.predict(x_train, None, f0_train=f0_train, f0_test=f0_train)
    np.testing.assert_allclose(at_train, y_train, atol=1e-3)
    with pytest.raises(ValueError, match="f0_train and f0_test"):
        predictor.predict(x_test, 1.0, f0_train=f0_train)


def test_singular_kernel_gets_a_named_jitter(problem):
    x_train, y_train, _ = problem
    _, _, kernel_fn = architectures.architecture("fc", 1)
    duplicated = jnp.concatenate([x_train[:10], x_train[:10]])
    with pytest.warns(UserWarning, match="jitter of"):
        predictor = predictors.KernelPredictor(kernel_fn, duplicated, jnp.ones((20, 1)))
    assert predictor.jitter > 0


def test_bad_input_names_the_value(problem):
    x_train, y_train, _ = problem
    with pytest.raises(ValueError, match="'mlp'"):
        architectures.architecture("mlp")
    with pytest.raises(ValueError, match="Myrtle depth 6"):
        architectures.architecture("myrtle", 6)
    with pytest.raises(ValueError, match="'mup'"):
        architectures.architecture("fc", parameterization="mup")
    _, _, kernel_fn = architectures.architecture("fc", 1)
    with pytest.raises(ValueError, match=r"\(40, C\)"):
        predictors.KernelPredictor(kernel_fn, x_train, y_train[:30])
    predictor = predictors.KernelPredictor(kernel_fn, x_train, y_train)
    with pytest.raises(ValueError, match="-1"):
        predictor.weights(-1.0)


# ---------------------------------------------------------------------------------------------
# Blocked kernels, resumable block files, and the predictor's float64 and batched paths.
# Small random 6x6x1 images keep every compilation cheap; float64 makes "equal" mean ~1e-7.


def images(n, seed):
    return np.random.default_rng(seed).uniform(size=(n, 6, 6, 1))


@pytest.fixture(scope="module")
def fc_kernel_fn():
    # One kernel_fn object for the whole module, so the jit and nt.batch caches are shared.
    return architectures.architecture("fc", 1)[2]


def direct(kernel_fn, x1, x2=None):
    """neural-tangents' kernel in one call (jitted: op by op is several times slower)."""
    return np.asarray(jax.jit(kernel_fn, static_argnames="get")(x1, x1 if x2 is None else x2, "ntk"))


@pytest.mark.parametrize("name", ["fc", "conv"])
@pytest.mark.parametrize("n1,n2", [(23, 37), (5, 37), (37, 5)])
def test_kernel_block_pads_ragged_sizes_and_crops_back(float64, name, n1, n2):
    # 23 and 37 are not multiples of 8: nt.batch only works on padded inputs, and the padding
    # (repeated last rows) must be cropped off exactly; (5, 37) pads the one-batch side only.
    x1, x2 = jnp.asarray(images(n1, 1)), jnp.asarray(images(n2, 2))
    _, _, kernel_fn = architectures.architecture(name, 1)
    block = kernels.kernel_block(kernel_fn, x1, x2, batch_size=8)
    assert block.shape == (n1, n2) and block.dtype == np.float64
    np.testing.assert_allclose(block, direct(kernel_fn, x1, x2), rtol=1e-7)


def block_files(directory):
    return sorted(p.name for p in directory.glob("*.npz"))


@pytest.mark.parametrize("symmetric", [True, False])
def test_blocked_kernel_saves_every_block_and_equals_the_direct_kernel(float64, fc_kernel_fn, tmp_path, symmetric):
    x1 = jnp.asarray(images(20, 3))
    x2 = None if symmetric else jnp.asarray(images(12, 4))
    job = kernels.BlockedKernel(fc_kernel_fn, x1, x2, block_size=8, batch_size=4, directory=tmp_path)
    # 20 rows -> 3 row blocks (8, 8, 4); symmetric keeps j >= i only, rectangular has 3 x 2.
    assert job.blocks == (
        [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)] if symmetric else [(i, j) for i in range(3) for j in range(2)]
    )
    np.testing.assert_allclose(job.run(), direct(fc_kernel_fn, x1, x2), rtol=1e-7)
    # One file per block, named block-i-j.npz, and no temporary file left behind.
    assert block_files(tmp_path) == sorted(job.path(i, j).name for i, j in job.blocks)
    assert not list(tmp_path.glob("*partial*"))
    for i, j in job.blocks:
        name = job.path(i, j).name
        assert re.fullmatch(r"block-0*(\d+)-0*(\d+)\.npz", name).groups() == (str(i), str(j))
        # Plain arrays: loadable without pickle, so a block file cannot run code.
        with np.load(job.path(i, j), allow_pickle=False) as saved:
            assert set(saved.files) == {"kernel", "config"}
            rows, cols = job._slices(i, j)
            assert saved["kernel"].shape == (rows.stop - rows.start, cols.stop - cols.start)
            assert json.loads(str(saved["config"]))["symmetric"] is symmetric
    # Everything is on disk now: assemble needs no kernel evaluation.
    np.testing.assert_array_equal(job.assemble(), job.run())
    assert job.missing() == []


@pytest.fixture
def count_kernel_blocks(monkeypatch):
    """Every call of kernels.kernel_block (one per computed block) appended to a list."""
    calls = []
    real = kernels.kernel_block

    def counting(kernel_fn, x1, x2, *args, **kwargs):
        calls.append((len(x1), len(x2)))
        return real(kernel_fn, x1, x2, *args, **kwargs)

    monkeypatch.setattr(kernels, "kernel_block", counting)
    return calls


def test_a_second_run_computes_only_the_missing_blocks(float64, fc_kernel_fn, tmp_path, count_kernel_blocks):
    x = jnp.asarray(images(20, 5))
    first = kernels.BlockedKernel(fc_kernel_fn, x, block_size=8, batch_size=4, directory=tmp_path)
    done = [(0, 0), (1, 2)]
    for i, j in done:
        first.compute(i, j)
    assert first.missing() == [(0, 1), (0, 2), (1, 1), (2, 2)]
    with pytest.raises(ValueError, match=r"block \(0, 1\) is missing"):
        first.assemble()
    inodes = {b: first.path(*b).stat().st_ino for b in done}

    # A new object (a restarted process) resumes: it computes the 4 missing blocks, no others.
    count_kernel_blocks.clear()
    second = kernels.BlockedKernel(fc_kernel_fn, x, block_size=8, batch_size=4, directory=tmp_path)
    np.testing.assert_allclose(second.run(), direct(fc_kernel_fn, x), rtol=1e-7)
    assert len(count_kernel_blocks) == 4
    # The blocks already on disk were not rewritten (a rewrite replaces the file, new inode).
    assert {b: second.path(*b).stat().st_ino for b in done} == inodes
    count_kernel_blocks.clear()
    second.run()
    assert count_kernel_blocks == []


def test_blocks_from_two_machines_sharing_a_directory_assemble(float64, fc_kernel_fn, tmp_path):
    x1, x2 = jnp.asarray(images(20, 6)), jnp.asarray(images(12, 7))

    def make():
        return kernels.BlockedKernel(
            fc_kernel_fn,
            x1,
            x2,
            block_size=8,
            batch_size=4,  # noqa: E731
            directory=tmp_path,
            config={"arch": "fc", "depth": 1},
        )

    machine_a, machine_b = make(), make()
    for k, (i, j) in enumerate(machine_a.blocks):
        (machine_a if k % 2 else machine_b).compute(i, j)
    np.testing.assert_allclose(make().assemble(), direct(fc_kernel_fn, x1, x2), rtol=1e-7)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_an_unreadable_block_is_recomputed_with_a_warning(float64, fc_kernel_fn, tmp_path, count_kernel_blocks, damage):
    x = jnp.asarray(images(20, 8))
    job = kernels.BlockedKernel(fc_kernel_fn, x, block_size=8, batch_size=4, directory=tmp_path)
    expected = job.run()
    path = job.path(0, 1)
    content = path.read_bytes()
    path.write_bytes({"truncate": content[: len(content) // 2], "garbage": b"not a block" * 50, "empty": b""}[damage])
    count_kernel_blocks.clear()
    with pytest.warns(UserWarning, match="unreadable"):
        again = kernels.BlockedKernel(fc_kernel_fn, x, block_size=8, batch_size=4, directory=tmp_path).run()
    assert count_kernel_blocks == [(8, 8)]  # only the damaged block
    np.testing.assert_array_equal(again, expected)
    with np.load(path, allow_pickle=False) as saved:  # and it was saved again, whole
        np.testing.assert_array_equal(saved["kernel"], expected[0:8, 8:16])


def test_a_block_from_another_configuration_is_refused(float64, fc_kernel_fn, tmp_path):
    x = jnp.asarray(images(20, 9))
    kernels.BlockedKernel(
        fc_kernel_fn, x, block_size=8, batch_size=4, directory=tmp_path, config={"arch": "fc", "depth": 1}
    ).run()
    # Another caller config: mixing its blocks with ours would silently give a wrong matrix.
    other = kernels.BlockedKernel(
        fc_kernel_fn, x, block_size=8, batch_size=4, directory=tmp_path, config={"arch": "fc", "depth": 2}
    )
    with pytest.raises(ValueError, match="differs in depth"):
        other.load(0, 0)
    with pytest.raises(ValueError, match="differs in depth"):
        other.run()
    # Same config, other images (same shape): caught by the inputs' fingerprint.
    moved = kernels.BlockedKernel(
        fc_kernel_fn, x + 1e-3, block_size=8, batch_size=4, directory=tmp_path, config={"arch": "fc", "depth": 1}
    )
    with pytest.raises(ValueError, match="x1_sha256"):
        moved.run()
    # Same inputs but float32: also another kernel.
    with pytest.raises(ValueError, match="x1_sha256"):
        kernels.BlockedKernel(
            fc_kernel_fn,
            x.astype(jnp.float32),
            block_size=8,
            batch_size=4,
            directory=tmp_path,
            config={"arch": "fc", "depth": 1},
        ).assemble()


def test_a_config_with_tuples_or_int_keys_can_be_resumed(float64, fc_kernel_fn, tmp_path):
    # The config is saved as JSON, where tuples become lists and int keys strings; a config the
    # constructor accepted must still match its own saved blocks on the next run.
    x = jnp.asarray(images(12, 10))
    config = {"image_shape": (6, 6, 1), "classes": {3: "cat", 5: "dog"}}
    expected = kernels.BlockedKernel(
        fc_kernel_fn, x, block_size=8, batch_size=4, directory=tmp_path, config=config
    ).run()
    resumed = kernels.BlockedKernel(fc_kernel_fn, x, block_size=8, batch_size=4, directory=tmp_path, config=config)
    assert resumed.missing() == []
    np.testing.assert_array_equal(resumed.assemble(), expected)


def test_blocked_kernel_bad_input_names_the_value(fc_kernel_fn):
    x = jnp.asarray(images(20, 11), jnp.float32)
    unit = 4 * jax.local_device_count()
    with pytest.raises(ValueError, match=rf"\({unit}\), got {unit + 2}"):
        kernels.BlockedKernel(fc_kernel_fn, x, block_size=unit + 2, batch_size=4)
    with pytest.raises(ValueError, match="batch_size .* got 0"):
        kernels.BlockedKernel(fc_kernel_fn, x, batch_size=0)
    with pytest.raises(ValueError, match="got 0"):
        kernels.BlockedKernel(fc_kernel_fn, x, block_size=0, batch_size=4)
    job = kernels.BlockedKernel(fc_kernel_fn, x, block_size=2 * unit, batch_size=4)
    with pytest.raises(ValueError, match=r"no block \(1, 0\).*symmetric"):  # j < i is mirrored, not computed
        job.compute(1, 0)
    with pytest.raises(ValueError, match=r"no block \(0, 9\)"):  # past the edge
        job.compute(0, 9)


def test_float64_predictor_needs_x64(problem, fc_kernel_fn):
    x_train, y_train, _ = problem
    jax.config.update("jax_enable_x64", False)  # the default, stated: the check must see it off
    with pytest.raises(ValueError, match="jax_enable_x64"):
        predictors.KernelPredictor(fc_kernel_fn, x_train, y_train, float64=True)


@pytest.fixture
def problem64(problem, float64):
    x_train, y_train, x_test = (np.asarray(a, np.float64) for a in problem)
    return jnp.asarray(x_train), y_train, jnp.asarray(x_test)


def test_float64_predictor_matches_a_direct_float64_solve(problem64, fc_kernel_fn):
    x_train, y_train, x_test = problem64
    k = direct(fc_kernel_fn, x_train)
    expected = direct(fc_kernel_fn, x_test, x_train) @ np.linalg.solve(k, y_train)
    # The same training kernel, so the two sides differ only by Cholesky vs LU in float64.
    predictor = predictors.KernelPredictor(fc_kernel_fn, x_train, y_train, k_train_train=k, float64=True)
    logits = predictor.logits_fn()(x_test)
    assert logits.dtype == jnp.float64  # float32 would carry ~1e-4 errors into attacks
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(predictor.predict(x_test), expected, rtol=1e-8, atol=1e-10)
    # Without float64=True the predictor stays float32 even with x64 on.
    assert (
        predictors.KernelPredictor(fc_kernel_fn, x_train, y_train, k_train_train=k).logits_fn()(x_test).dtype
        == jnp.float32
    )


@pytest.mark.parametrize("t", [None, 10.0])
def test_predict_in_batches_equals_precomputed_and_dense(problem64, fc_kernel_fn, t):
    x_train, y_train, x_test = problem64
    # batch_size 5 for 13 test points: batches of 5, 5 and a ragged 3.
    predictor = predictors.KernelPredictor(fc_kernel_fn, x_train, y_train, batch_size=5, float64=True)
    k_test = direct(fc_kernel_fn, x_test, x_train)
    batched = predictor.predict(x_test, t)
    assert batched.shape == (13, 1)
    np.testing.assert_allclose(batched, predictor.predict(None, t, k_test_train=k_test), rtol=1e-7, atol=1e-9)
    if t is None:
        dense = k_test @ np.linalg.solve(predictor.k_train_train, y_train)
        np.testing.assert_allclose(batched, dense, rtol=1e-7, atol=1e-9)


def test_inputs_of_another_shape_are_refused(problem, fc_kernel_fn):
    x_train, y_train, x_test = problem
    predictor = predictors.KernelPredictor(fc_kernel_fn, x_train, y_train)
    for bad in (x_test[:, :5, :5], x_test.reshape(13, 36), x_test[0]):
        with pytest.raises(ValueError, match=re.escape(str(tuple(bad.shape)))):
            predictor.check_inputs(bad)
        with pytest.raises(ValueError, match=re.escape(str(tuple(bad.shape)))):
            predictor.predict(bad)
    assert predictor.check_inputs(x_test).shape == x_test.shape
    with pytest.raises(ValueError, match="39"):
        predictor.predict(None, k_test_train=np.zeros((13, 39)))


# ---------------------------------------------------------------------------- spectrum, gain, null kernels


def test_eigendecomposition_is_descending_and_reconstructs_the_kernel():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 7))
    kernel = a @ a.T
    values, vectors = kernels.eigendecomposition(kernel.astype(np.float32))
    assert values.dtype == np.float64 and np.all(np.diff(values) <= 0)
    np.testing.assert_allclose(vectors @ np.diag(values) @ vectors.T, kernel, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"square matrix, got shape \(2, 3\)"):
        kernels.eigendecomposition(np.zeros((2, 3)))


def test_fitted_fraction_is_the_gain_of_gradient_flow():
    values = np.array([4.0, 1.0, 0.0, -1e-9])  # N = 4; a negative eigenvalue counts as 0
    np.testing.assert_allclose(
        kernels.fitted_fraction(values, 2.0, n_outputs=2), 1 - np.exp(-np.array([4.0, 1.0, 0.0, 0.0]) * 2.0 / 8)
    )
    np.testing.assert_array_equal(kernels.fitted_fraction(values, 0.0), 0.0)
    assert kernels.fitted_fraction([1e-20, 5.0], 1.0)[0] == pytest.approx(0.5e-20, rel=1e-12)  # no cancellation


def test_predictor_weights_at_t_use_the_same_gain(problem):
    x_train, y_train, _ = problem
    predictor = predictors.KernelPredictor(null_kernels.null_kernel("rbf", 1.0), x_train, y_train)
    values, vectors = predictor.eigen
    t = 3.0
    gain = kernels.fitted_fraction(values, t, predictor.n_outputs) / values
    np.testing.assert_allclose(
        predictor.weights(t), vectors @ (gain[:, None] * (vectors.T @ predictor.y_train)), rtol=1e-6, atol=1e-9
    )


def test_null_kernels():
    from ntk_notes import null_kernels

    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.uniform(size=(5, 2, 2, 1)), jnp.float32)
    flat = np.asarray(x, np.float64).reshape(5, -1)
    np.testing.assert_allclose(null_kernels.null_kernel("linear")(x, x), flat @ flat.T / 4, rtol=1e-5)
    bandwidth = null_kernels.median_bandwidth(x)
    distances = np.linalg.norm(flat[:, None] - flat[None], axis=-1)
    # the root of the median squared distance (with an even number of pairs, the two middle ones' mean)
    assert bandwidth == pytest.approx(np.sqrt(np.median(distances[np.triu_indices(5, 1)] ** 2)), rel=1e-6)
    rbf = np.asarray(null_kernels.null_kernel("rbf", bandwidth)(x, x, "ntk"))
    np.testing.assert_allclose(rbf, np.exp(-(distances**2) / (2 * bandwidth**2)), rtol=1e-4, atol=1e-6)
    assert null_kernels.null_kernel is null_kernels.null_kernel  # still reachable as null_kernels.null_kernel
    for args, message in [
        (("cosine",), "unknown null kernel 'cosine'"),
        (("linear", 1.0), "takes no bandwidth"),
        (("rbf",), "positive bandwidth, got None"),
        (("rbf", -1.0), "positive bandwidth"),
    ]:
        with pytest.raises(ValueError, match=message):
            null_kernels.null_kernel(*args)
