"""Training dynamics: adversarial training (``adversarial_training``, ``linearisation``), its
checkpoints (``checkpoints``), the empirical NTK through training (``empirical``), the
kernel metrics and settling tests (``kernel_metrics``) and the networks (``architectures``).

What is checked, and against what:
- every kernel metric against a hand computation on small matrices;
- every empirical NTK implementation, and the one chosen, against an explicit Jacobian
  contraction (jax.jacobian over the parameters, flattened), on the CNN and the MLP, full
  and traced; the linearised network's NTK is the network's at the linearisation point;
- one epoch of full-batch FGSM training is exactly one SGD step on ``attacks.attack``'s
  FGSM images; the images trained on stay in the ε-ball and in [0, 1];
- PGD adversarial training buys robustness on MNIST 3 vs 5 (8x8) at the same seed;
- determinism, checkpoint resume (only missing epochs are trained; a resumed run equals an
  uninterrupted one), damaged files detected with a warning and recomputed, no temporary
  files left;
- after ``linearise_from_epoch`` the NTK on the probe stops moving, while the network's moves;
- bad input raises ValueError naming the value.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_notes import (
    adversarial_training,
    architectures,
    attacks,
    checkpoints,
    data,
    empirical,
    kernel_metrics,
    linearisation,
    training,
)

EPSILON = 0.05


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def task():
    return data.make_task("mnist-5k", classes=(3, 5), n_train=128, n_test=128, image_size=8, seed=0)


@pytest.fixture(scope="module")
def mlp():
    init_fn, apply_fn, _ = architectures.network("mlp", 1, (32, 32))
    return apply_fn, init_fn(jax.random.PRNGKey(0), (1, 8, 8, 1))[1]


def _train(mlp, task, **kwargs):
    apply_fn, params = mlp
    options = dict(epochs=2, learning_rate=0.1, batch_size=32, mode="pgd", epsilon=EPSILON, steps=3)
    return adversarial_training.adversarial_train(
        apply_fn, params, task.x_train, task.labels_train, **{**options, **kwargs}
    )


def _same(a, b) -> bool:
    return all(bool(jnp.array_equal(u, v)) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _no_temporary_files(directory):
    assert not [p for p in directory.rglob("*") if ".tmp" in p.name]


# ---------------------------------------------------------------------------- metrics


def test_similarity_and_distance_by_hand():
    k1, k2 = np.diag([1.0, 0.0]), np.ones((2, 2))
    assert kernel_metrics.similarity(k1, k2) == pytest.approx(1 / 2)  # <K1,K2> = 1, ‖K1‖ = 1, ‖K2‖ = 2
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    k = a @ a.T
    assert kernel_metrics.similarity(k, 2 * k) == pytest.approx(1.0)
    assert kernel_metrics.kernel_distance(k, 3 * k) == pytest.approx(0.0, abs=1e-12)
    kernels = [k, 2 * k, k + np.eye(5), k2[:1, :1] * np.ones((5, 5))]
    d = kernel_metrics.distance_matrix(kernels)
    assert d.shape == (4, 4) and np.array_equal(d, d.T) and np.all(np.diag(d) == 0)
    assert d[0, 1] == pytest.approx(0.0, abs=1e-12)
    assert d[2, 3] == pytest.approx(kernel_metrics.kernel_distance(kernels[2], kernels[3]))
    np.testing.assert_allclose(kernel_metrics.velocity(kernels), [d[0, 1], d[1, 2], d[2, 3]])
    assert [kernel_metrics.relative_change(k, other) for other in (k, 2 * k)] == pytest.approx([0.0, 1.0])
    np.testing.assert_allclose(kernel_metrics.cosine_distance([k, 2 * k, k]), [0.0, 0.0, 0.0], atol=1e-12)


def test_polar_trajectory_by_hand():
    """K_t = I + t·D with ⟨I, D⟩ = 0: s(K_t, K_0) = 1/√(1 + t²), so θ_t = arctan t, and
    ‖K_t − K_0‖ = t‖D‖, so r_t = t / T."""
    d = np.array([[0.0, 1.0], [1.0, 0.0]])
    ts = np.arange(5.0)
    result = kernel_metrics.polar([np.eye(2) + t * d for t in ts])
    np.testing.assert_allclose(result.radius, ts / ts[-1])
    np.testing.assert_allclose(result.angle, np.arctan(ts), atol=1e-7)
    assert np.all(np.isnan(kernel_metrics.polar([np.eye(2)] * 3).radius))  # never moved: undefined

    rng = np.random.default_rng(1)
    factors = [rng.normal(size=(6, 6)) for _ in range(4)]
    kernels = [a @ a.T for a in factors]
    parts = kernel_metrics.polar_trajectory(kernels, k=2)
    for part in parts:
        assert part.radius[0] == 0.0 and part.radius[-1] == pytest.approx(1.0)
        assert part.angle[0] == pytest.approx(0.0, abs=1e-6)
    top, rest = kernel_metrics.truncate(kernels[0], 2)
    np.testing.assert_allclose(top + rest, kernels[0], atol=1e-12)
    values = np.linalg.eigvalsh(kernels[0])[::-1]
    np.testing.assert_allclose(np.linalg.eigvalsh(top)[::-1][:2], values[:2])
    assert np.linalg.matrix_rank(top) == 2
    top1 = kernel_metrics.truncate(kernels[1], 2)[0]
    assert parts.top.angle[1] == pytest.approx(np.arccos(kernel_metrics.similarity(top1, top)))


def test_spectral_mass_by_hand():
    k = np.diag([3.0, 2.0, 1.0])
    np.testing.assert_allclose(kernel_metrics.spectral_mass([k], 1), [9 / 14])
    np.testing.assert_allclose(kernel_metrics.spectral_mass([k], 2), [13 / 14])
    np.testing.assert_allclose(kernel_metrics.spectral_mass([k], 1, skip_top=True), [4 / 5])
    v = np.array([1.0, -2.0, 0.5, 3.0])
    rank_one = np.outer(v, v)
    np.testing.assert_allclose(kernel_metrics.spectral_mass([rank_one, 5 * rank_one], 1), [1.0, 1.0])
    # Nothing left beyond the top eigenvalue, or after centring a constant kernel: NaN, no warning.
    assert np.isnan(kernel_metrics.spectral_mass([rank_one], 1, skip_top=True)[0])
    constant = np.full((4, 4), 0.7)
    assert np.isnan(kernel_metrics.spectral_mass([constant], 1, centred=True)[0])
    # A constant plus a little structure: the raw mass sits in the constant mode, the centred
    # mass does not.
    structured = 100 * constant + np.diag([1.0, 0.0, 0.0, 0.0])
    assert kernel_metrics.spectral_mass([structured], 1)[0] > 0.999
    assert kernel_metrics.spectral_mass([structured], 1, centred=True)[0] == pytest.approx(1.0)


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_centring_is_hkh(n_outputs):
    n = 5
    rng = np.random.default_rng(2)
    a = rng.normal(size=(n * n_outputs, 7))
    k = a @ a.T
    h = np.kron(np.eye(n) - np.ones((n, n)) / n, np.eye(n_outputs))  # rows i·C + c
    np.testing.assert_allclose(kernel_metrics.centre(k, n_outputs), h @ k @ h, atol=1e-12)


def test_alignment_and_label_energy_by_hand():
    y = np.array([[1.0], [-1.0], [1.0], [1.0]])
    target = y @ y.T
    np.testing.assert_allclose(kernel_metrics.target_alignment([target, 2 * target], y), [1.0, 1.0])
    np.testing.assert_allclose(kernel_metrics.target_alignment([np.eye(4)], y), [4 / (2 * 4)])  # n / (√n · n)
    onehot = np.eye(3)[[0, 2, 1, 2]]  # n = 4, C = 3
    full = np.outer(onehot.reshape(-1), onehot.reshape(-1))  # the (n·C, n·C) target kernel
    np.testing.assert_allclose(kernel_metrics.target_alignment([full], onehot), [1.0])
    np.testing.assert_allclose(kernel_metrics.target_alignment([onehot @ onehot.T], onehot), [1.0])
    np.testing.assert_allclose(kernel_metrics.target_alignment([full], onehot, centred=True, n_outputs=3), [1.0])
    np.testing.assert_allclose(kernel_metrics.top_label_energy([target + 0.01 * np.eye(4)], y, 1), [1.0])
    np.testing.assert_allclose(kernel_metrics.top_label_energy([np.eye(4) + 0.0], y, 4), [1.0])
    table = kernel_metrics.kernel_metrics([target + np.eye(4), 2 * target + np.eye(4)], y, ks=(1, 2), epochs=[0, 5])
    assert list(table.epoch) == [0, 5] and np.isnan(table.velocity[0])
    np.testing.assert_allclose(
        table.mass_top1_centred,
        kernel_metrics.spectral_mass([target + np.eye(4), 2 * target + np.eye(4)], 1, centred=True),
    )
    np.testing.assert_allclose(table.label_energy_top1, [1.0, 1.0])


# ---------------------------------------------------------------------------- empirical NTK


def _jacobian_ntk(apply_fn, params, x):
    """J Jᵀ with J the (n·C, P) Jacobian of the outputs in the parameters, rows i·C + c; and
    the traced kernel, the mean of its C diagonal output blocks (neural-tangents' convention)."""
    jac = jax.jit(jax.jacobian(lambda p: apply_fn(p, x)))(params)
    n, c = apply_fn(params, x).shape
    flat = jnp.concatenate([leaf.reshape(n * c, -1) for leaf in jax.tree.leaves(jac)], axis=1)
    full = np.asarray(flat @ flat.T, dtype=np.float64)
    return full, full.reshape(n, c, n, c).trace(axis1=1, axis2=3) / c


@pytest.mark.parametrize("name, widths", [("cnn", (4, 4, 8)), ("mlp", (16, 16))])
def test_empirical_ntk_matches_an_explicit_jacobian_contraction(task, name, widths):
    init_fn, apply_fn, _ = architectures.network(name, 3, widths)
    _, params = init_fn(jax.random.PRNGKey(3), (1, 8, 8, 1))
    x = jnp.asarray(task.x_train[:5])
    expected = dict(zip((False, True), _jacobian_ntk(apply_fn, params, x)))
    for trace in (False, True):
        choice = empirical.choose_ntk_implementation(apply_fn, params, x, trace=trace, repeats=1)
        assert choice.implementation in empirical.IMPLEMENTATIONS and not choice.errors
        assert max(choice.relative_difference.values()) < empirical.AGREEMENT_RTOL
        for implementation in empirical.IMPLEMENTATIONS:
            kernel = empirical.empirical_ntk(apply_fn, params, x, trace=trace, implementation=implementation)
            assert kernel.dtype == np.float64 and kernel.shape == expected[trace].shape
            np.testing.assert_allclose(kernel, expected[trace], rtol=2e-4, atol=1e-4 * np.abs(expected[trace]).max())
    # The linearised network's kernel, at any parameters, is the network's at θ₀.
    moved = jax.tree.map(lambda a: 1.1 * a + 0.01, params)
    linear = empirical.empirical_ntk(training.linearised(apply_fn, params), moved, x)
    np.testing.assert_allclose(linear, expected[False], rtol=2e-4, atol=1e-4 * np.abs(expected[False]).max())
    cross = empirical.empirical_ntk(apply_fn, params, x[:2], x, trace=True)
    np.testing.assert_allclose(cross, expected[True][:2], rtol=2e-4, atol=1e-4 * np.abs(expected[True]).max())


def test_disagreeing_implementations_are_refused(mlp, task, monkeypatch):
    apply_fn, params = mlp
    monkeypatch.setattr(empirical, "AGREEMENT_RTOL", -1.0)
    with pytest.raises(RuntimeError, match="disagree"):
        empirical.choose_ntk_implementation(apply_fn, params, task.x_train[:4], trace=True, repeats=1)


# ---------------------------------------------------------------------------- training


def test_fgsm_training_is_sgd_on_the_attacks_fgsm_images(mlp, task):
    """One full-batch epoch: the update is one SGD step on the images ``attacks.attack`` makes
    against the initial parameters."""
    apply_fn, params = mlp
    run = _train(mlp, task, epochs=1, batch_size=len(task.x_train), mode="fgsm")
    x_adv = attacks.attack(run.logits_fn(0), task.x_train, task.labels_train, EPSILON, "fgsm").x_adv
    grads = jax.grad(
        lambda p: jnp.mean(
            attacks.per_example_loss("binary_cross_entropy", apply_fn(p, jnp.asarray(x_adv)), task.labels_train)
        )
    )(params)
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
    for got, want in zip(jax.tree.leaves(run.params_at(1)), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["fgsm", "pgd"])
def test_training_images_stay_in_the_ball_and_the_box(mlp, task, mode):
    run = _train(mlp, task, mode=mode, epochs=3)
    assert np.all(run.history.max_perturbation <= EPSILON + 1e-6)
    assert np.all(run.history.max_perturbation > EPSILON / 2)  # the attack did perturb
    assert run.history.pixel_min.min() >= 0.0 and run.history.pixel_max.max() <= 1.0
    assert run.trained == (1, 2, 3) and list(run.epochs) == [0, 1, 2, 3]
    assert np.all(_train(mlp, task, mode="standard", epochs=1).history.max_perturbation == 0.0)


def test_pgd_training_buys_robustness(task):
    """MNIST 3 vs 5 at 8x8, ε = 0.05, MLP 64-64, 40 epochs: PGD training raises PGD accuracy
    (random start) on held-out images by 0.1 or more over standard training at every init
    seed tried (0–3), while staying far above the majority class (0.55)."""
    init_fn, apply_fn, _ = architectures.network("mlp", 1, (64, 64))
    _, params = init_fn(jax.random.PRNGKey(0), (1, 8, 8, 1))
    results = {}
    for mode in ("standard", "pgd"):
        run = adversarial_training.adversarial_train(
            apply_fn,
            params,
            task.x_train,
            task.labels_train,
            epochs=40,
            learning_rate=0.1,
            batch_size=32,
            mode=mode,
            epsilon=EPSILON,
            steps=5,
            record_epochs=[0, 40],
        )
        results[mode] = linearisation.accuracy_over_epochs(
            run, task.x_test, task.labels_test, EPSILON, "pgd", epochs=[40], steps=10, random_start=True
        ).iloc[0]
    assert results["pgd"].robust_accuracy >= results["standard"].robust_accuracy + 0.08, results
    assert results["pgd"].clean_accuracy > 0.8 and results["standard"].clean_accuracy > 0.85, results


def test_same_seed_same_parameters_another_seed_another_order(mlp, task):
    runs = [_train(mlp, task, seed=s) for s in (0, 0, 1)]
    assert _same(runs[0].params, runs[1].params)
    assert kernel_metrics.relative_change(runs[0].params_at(2), runs[2].params_at(2)) > 1e-4
    # Seeds, rates and ε are arguments of the compiled epoch: no new compilation.
    compiled = adversarial_training.train_step._cache_size()
    _train(mlp, task, seed=5, learning_rate=0.03, epsilon=0.02, step_size=0.01)
    assert adversarial_training.train_step._cache_size() == compiled


# ---------------------------------------------------------------------------- checkpoints


def test_a_longer_run_trains_only_the_missing_epochs(mlp, task, tmp_path):
    first = _train(mlp, task, epochs=2, directory=tmp_path)
    assert first.trained == (1, 2)
    longer = _train(mlp, task, epochs=4, directory=tmp_path)
    assert longer.trained == (3, 4) and list(longer.epochs) == [0, 1, 2, 3, 4]
    again = _train(mlp, task, epochs=4, directory=tmp_path)
    assert again.trained == ()
    uninterrupted = _train(mlp, task, epochs=4)
    assert _same(longer.params, uninterrupted.params) and _same(again.params, uninterrupted.params)
    np.testing.assert_array_equal(again.history.loss, uninterrupted.history.loss)
    assert len(again.history.loss) == 4
    _no_temporary_files(tmp_path)


def _damage(path, how, mlp):
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbage":
        path.write_bytes(b"not an npz file" * 10)
    else:
        arrays, config = checkpoints.read_npz(path)
        first = sorted(arrays)[0]
        if how == "nan":
            arrays[first] = np.full_like(arrays[first], np.nan)
        elif how == "shapes":
            arrays[first] = arrays[first][:1]
        elif how == "config":
            config = {**config, "learning_rate": 0.5}
        elif how == "bit flip":  # one value changed, the checksum not updated
            with np.load(path) as saved:
                entries = {name: saved[name] for name in saved.files}
            entries[first] = entries[first] + 1.0
            np.savez(path, **entries)
            return
        checkpoints.save_npz(path, arrays, config)


@pytest.mark.parametrize("how", ["truncated", "garbage", "nan", "shapes", "config", "bit flip"])
def test_a_damaged_checkpoint_is_recomputed_with_a_warning(mlp, task, tmp_path, how):
    clean = _train(mlp, task, epochs=3, directory=tmp_path)
    _damage(tmp_path / "epoch-0002.npz", how, mlp)
    with pytest.warns(checkpoints.CheckpointWarning, match="epoch-0002.npz"):
        rerun = _train(mlp, task, epochs=3, directory=tmp_path)
    assert rerun.trained == (2, 3)  # resumed from epoch 1, the last good one
    assert _same(rerun.params, clean.params)
    assert _train(mlp, task, epochs=3, directory=tmp_path).trained == ()  # repaired
    _no_temporary_files(tmp_path)


def test_another_configuration_is_detected_and_not_reused(mlp, task, tmp_path):
    _train(mlp, task, epochs=2, directory=tmp_path)
    with pytest.warns(checkpoints.CheckpointWarning, match=r"epoch-0000.npz.*another configuration.*learning_rate"):
        other = _train(mlp, task, epochs=2, learning_rate=0.05, directory=tmp_path)
    assert other.trained == (1, 2)
    assert not _same(other.params_at(2), _train(mlp, task, epochs=2).params_at(2))


def test_npz_round_trip_and_expected_shapes(tmp_path):
    arrays = {"a": np.arange(6.0).reshape(2, 3), "b": np.array([1, 2], dtype=np.int32)}
    checkpoints.save_npz(tmp_path / "x.npz", arrays, {"k": (1, 2)})
    expected = {"a": ((2, 3), np.float64), "b": ((2,), np.int32)}
    loaded = checkpoints.load_npz(tmp_path / "x.npz", {"k": [1, 2]}, expected)
    assert loaded is not None and all(np.array_equal(loaded[n], arrays[n]) for n in arrays)
    assert checkpoints.load_npz(tmp_path / "absent.npz", {}, expected) is None
    with pytest.warns(checkpoints.CheckpointWarning, match="x.npz.*unexpected names or shapes"):
        assert checkpoints.load_npz(tmp_path / "x.npz", {"k": [1, 2]}, {"a": ((3, 2), np.float64)}) is None
    _no_temporary_files(tmp_path)


# ---------------------------------------------------------------------------- kernels through training


def test_linearised_training_freezes_the_kernel(mlp, task, tmp_path):
    probe, probe_labels = task.x_train[:12], task.labels_train[:12]
    network = _train(mlp, task, epochs=4, mode="standard", learning_rate=0.5, directory=tmp_path)
    linear = linearisation.continue_linearised(network, 2)
    assert linear.trained == (3, 4)  # epochs 0-2 are the network's
    direct = _train(mlp, task, epochs=4, mode="standard", learning_rate=0.5, linearise_from_epoch=2)
    assert _same(linear.params, direct.params)
    assert kernel_metrics.relative_change(linear.params_at(2), linear.params_at(4)) > 1e-3  # it did train
    kernels = {
        name: empirical.kernel_trajectory(run, probe, probe_labels, trace=True, epochs=[2, 3, 4], epsilon=EPSILON)
        for name, run in (("network", network), ("linear", linear))
    }

    def moved(series):
        return np.array([kernel_metrics.relative_change(series[0], k) for k in series])

    assert np.all(moved(kernels["linear"].clean) < 1e-5)
    assert moved(kernels["network"].clean)[-1] > 1e-3
    # Attacked probes move with the model, so the kernel on them does change.
    assert moved(kernels["linear"].adversarial)[-1] > 1e-5
    # Saved beside the parameters and reused: no implementation chosen on the second call.
    again = empirical.kernel_trajectory(linear, probe, probe_labels, trace=True, epochs=[2, 3, 4], epsilon=EPSILON)
    assert again.choice is None and np.array_equal(again.clean, kernels["linear"].clean)
    assert (tmp_path / "linearised-from-0002" / "kernel-traced-0004.npz").exists()

    table = linearisation.ablation(network, [2, 4], task.x_test[:32], task.labels_test[:32], EPSILON, steps=3)
    assert list(table.linearised_from) == [2, 4] and list(table["mode"]) == ["standard"] * 2
    final = linearisation.accuracy_over_epochs(
        network, task.x_test[:32], task.labels_test[:32], EPSILON, epochs=[4], steps=3
    )
    assert table.clean_accuracy[1] == final.clean_accuracy[0]  # k = final epoch: the network itself
    _no_temporary_files(tmp_path)


def test_full_kernel_trajectory_on_a_two_output_network(task):
    init_fn, apply_fn, _ = architectures.network("cnn", 2, (4, 4, 8))
    _, params = init_fn(jax.random.PRNGKey(0), (1, 8, 8, 1))
    run = adversarial_training.adversarial_train(
        apply_fn,
        params,
        task.x_train,
        task.labels_train,
        epochs=1,
        learning_rate=0.1,
        batch_size=64,
        mode="fgsm",
        epsilon=EPSILON,
    )
    result = empirical.kernel_trajectory(run, task.x_train[:6], task.labels_train[:6])
    assert result.clean.shape == (2, 12, 12) and result.attack["method"] == "fgsm"
    expected, _ = _jacobian_ntk(apply_fn, run.params_at(1), jnp.asarray(task.x_train[:6]))
    np.testing.assert_allclose(result.clean[1], expected, rtol=2e-4, atol=1e-4 * np.abs(expected).max())
    table = kernel_metrics.kernel_metrics(result.clean, np.eye(2)[task.labels_train[:6]], ks=(2,), n_outputs=2)
    assert table.shape[0] == 2 and np.all(np.isfinite(table.mass_top2_centred))


# ---------------------------------------------------------------------------- bad input


def test_bad_input_names_the_value(mlp, task):
    apply_fn, params = mlp
    cases = [
        (dict(mode="trades"), "trades"),
        (dict(epsilon=-0.1), "-0.1"),
        (dict(record_epochs=[0, 2, 1]), r"\[0, 2, 1\]"),
        (dict(epochs=2, record_epochs=[0, 3]), r"\[0, 3\]"),
        (dict(linearise_from_epoch=5), "5"),
        (dict(batch_size=1000), "1000"),
        (dict(learning_rate=0.0), "0.0"),
        (dict(steps=0), "steps"),
        (dict(epochs=-1), "-1"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            _train(mlp, task, **kwargs)
    with pytest.raises(ValueError, match="7"):
        adversarial_training.adversarial_train(
            apply_fn, params, task.x_train, task.labels_train + 7, epochs=1, learning_rate=0.1, batch_size=32
        )
    with pytest.raises(ValueError, match="resnet"):
        architectures.network("resnet")
    with pytest.raises(ValueError, match=r"\(8, 8\)"):
        architectures.network("cnn", widths=(8, 8))
    with pytest.raises(ValueError, match="AUTO"):
        empirical.empirical_ntk(apply_fn, params, task.x_train[:2], implementation="auto")
    with pytest.raises(ValueError, match="jacobian_contraction',\\)"):
        empirical.choose_ntk_implementation(apply_fn, params, task.x_train[:2], candidates=["jacobian_contraction"])
    with pytest.raises(ValueError, match="k must be"):
        kernel_metrics.spectral_mass([np.eye(3)], 4)
    with pytest.raises(ValueError, match="one shape"):
        kernel_metrics.distance_matrix([np.eye(3), np.eye(2)])
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        kernel_metrics.target_alignment([np.eye(4)], np.ones((3, 2)))
    run = _train(mlp, task, epochs=2, record_epochs=[0, 2])
    with pytest.raises(ValueError, match="epoch 1"):
        linearisation.continue_linearised(run, 1)


# ---------------------------------------------------------------------------- settling, warm-up, fast FGSM


def _rotating(angles, norms=None):
    """2x2 kernels v vᵀ + 0.1 I with v at the given angles (radians), scaled by ``norms``."""
    norms = np.ones(len(angles)) if norms is None else norms
    out = []
    for a, s in zip(angles, norms):
        v = np.array([np.cos(a), np.sin(a)])
        out.append(s * (np.outer(v, v) + 0.1 * np.eye(2)))
    return np.stack(out)


def test_settling_epoch_by_hand():
    kernels = _rotating([0.0, 0.5, 0.9, 1.0, 1.0, 1.0])
    distance = [kernel_metrics.kernel_distance(k, kernels[-1]) for k in kernels]
    assert distance[2] < 0.01 < distance[1]  # by hand: settled from index 2 on
    assert kernel_metrics.settling_epoch(kernels, threshold=0.01) == 2
    assert kernel_metrics.settling_epoch(kernels, epochs=[0, 5, 10, 15, 20, 25], threshold=0.01) == 10
    # Leaving the band again later moves the settling epoch past the excursion.
    wobbly = _rotating([0.0, 1.0, 1.0, 0.3, 1.0, 1.0])
    assert kernel_metrics.settling_epoch(wobbly, threshold=0.01) == 4
    # A kernel that never moved measurably has nothing to settle; scale does not count.
    assert np.isnan(kernel_metrics.settling_epoch(_rotating([0.0] * 4, [1, 10, 100, 1000]), threshold=0.01))


def test_direction_and_norm_settle_separately():
    angles = [0.0, 0.5, 1.0, 1.0, 1.0, 1.0]
    direction, size = kernel_metrics.direction_and_norm_settling(_rotating(angles, [1, 1, 1, 2, 4, 4]), tolerance=0.1)
    assert direction == 2 and size == 4
    direction, size = kernel_metrics.direction_and_norm_settling(_rotating([0.0] * 4, [1, 2, 4, 8]))
    assert np.isnan(direction) and size == 3


def test_warmup_ramp_and_fast_fgsm_settings(mlp, task):
    assert [adversarial_training.warmup_ramp(e, 4) for e in (1, 2, 4, 9)] == [0.25, 0.5, 1.0, 1.0]
    assert adversarial_training.warmup_ramp(1, 0) == 1.0
    fast = _train(mlp, task, mode="fgsm", random_start=True, epochs=1)
    assert fast.settings["step_size"] == pytest.approx(1.25 * EPSILON) and fast.settings["steps"] == 1
    assert _train(mlp, task, mode="fgsm", epochs=1).settings["step_size"] == EPSILON
    # Under a 4-epoch warm-up the images of epoch e lie in the ball of ε·e/4, and reach it.
    run = _train(mlp, task, mode="pgd", epochs=5, warmup_epochs=4)
    ramp = np.array([0.25, 0.5, 0.75, 1.0, 1.0]) * EPSILON
    assert np.all(run.history.max_perturbation <= ramp + 1e-6)
    assert np.all(run.history.max_perturbation > ramp / 2)
    with pytest.raises(ValueError, match="warmup_epochs"):
        _train(mlp, task, warmup_epochs=-1)


def test_fixed_probes_and_their_kernels(mlp, task, tmp_path):
    probe, labels = task.x_train[:10], task.labels_train[:10]
    run = _train(mlp, task, epochs=2, mode="standard", learning_rate=0.5, directory=tmp_path)
    fixed = empirical.fixed_adversarial_probe(run, probe, labels, EPSILON, steps=3)
    expected = attacks.attack(run.logits_fn(0), probe, labels, EPSILON, "pgd", steps=3).x_adv
    np.testing.assert_array_equal(fixed, expected)  # attacked once, against θ₀
    kernels = empirical.probe_kernels(run, fixed, "fixed-adversarial")
    assert kernels.shape == (3, 10, 10)
    direct = empirical.empirical_ntk(run.apply_fn, run.params_at(2), fixed)
    np.testing.assert_allclose(kernels[2], direct, rtol=1e-6)
    assert (tmp_path / "kernel-fixed-adversarial-0002.npz").exists()
    again = empirical.probe_kernels(run, fixed, "fixed-adversarial", implementation="jacobian_contraction")
    np.testing.assert_array_equal(again, kernels)
    with pytest.raises(ValueError, match="name"):
        empirical.probe_kernels(run, fixed, "a/b")


def test_linearisation_epoch(mlp, task, tmp_path):
    """A run linearised from epoch 2 matches itself from epoch 2 on (it is lazy there by
    construction): the search finds 2 or earlier, and stops at the first miss."""
    network = _train(mlp, task, epochs=4, mode="standard", learning_rate=0.5, directory=tmp_path)
    x, labels = task.x_test[:32], task.labels_test[:32]
    found = linearisation.linearisation_epoch(network, [0, 1, 2, 3], x, labels, EPSILON, steps=3, seed=0)
    final = linearisation.accuracy_over_epochs(network, x, labels, EPSILON, epochs=[4], steps=3, seed=0)
    assert found.full == (final.clean_accuracy[0], final.robust_accuracy[0])
    assert list(found.table.linearised_from) == sorted(found.table.linearised_from, reverse=True)
    within = found.table.within.to_numpy()
    assert within[:-1].all()  # tried from the latest down, stopping at the first miss
    assert found.epoch == (
        found.table.linearised_from.iloc[-1]
        if within[-1]
        else (found.table.linearised_from.iloc[-2] if len(within) > 1 else 4)
    )
    tolerant = linearisation.linearisation_epoch(network, [0, 1, 2, 3], x, labels, EPSILON, tolerance=1.0, steps=3)
    assert tolerant.epoch == 0 and len(tolerant.table) == 4


def test_the_authors_cnn_has_their_parameter_count():
    """PAPER.md: about 369k parameters on CIFAR-10 (32x32x3, 10 outputs)."""
    init_fn, apply_fn, _ = architectures.network("authors_cnn", 10)
    _, params = init_fn(jax.random.PRNGKey(0), (1, 32, 32, 3))
    assert 365_000 < sum(leaf.size for leaf in jax.tree.leaves(params)) < 373_000
    assert apply_fn(params, jnp.zeros((2, 32, 32, 3))).shape == (2, 10)
    with pytest.raises(ValueError, match="6 entries"):
        architectures.network("authors_cnn", 10, widths=(8, 8, 8))
