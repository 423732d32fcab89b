"""Adversarial attacks (ntk_notes.attacks) and their evaluation (ntk_notes.robustness) on
toy models and on the kernel predictor.

What is checked, and against what:
- every adversarial image lies in the ε-ball around its clean image and in [0, 1]
  (deterministically on an NTK predictor, and as a property on random inputs and models);
- the input gradient the attacks follow matches finite differences of the float64 predictor,
  and FGSM is exactly the clipped sign step along it;
- each loss against an independent numpy formula;
- restarts keep each example's worst case;
- the paper's numbers and Carlini et al.'s sanity checks on MNIST 3 vs 5 (PAPER.md, "What to
  expect on the embedded data"), and that those checks do fail on a gradient-masked model;
- a 10-class predictor, bad arguments, and the sweep helpers.
"""

import re
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ntk_notes import architectures, attacks, data, predictors, robustness, training

FLOAT32_EPS = float(np.finfo(np.float32).eps)


# ---------------------------------------------------------------------------- helpers


def _toy_images(rng, n, shape=(6, 6, 1)):
    """Random images with a few pixels pinned at exactly 0 and 1, where clipping matters."""
    x = rng.uniform(size=(n,) + shape).astype(np.float32)
    x[:, 0, 0, :] = 0.0
    x[:, -1, -1, :] = 1.0
    return x


def _binary_labels(x):
    """A learnable rule for random images: class 1 if brighter than average."""
    return (x.mean(axis=(1, 2, 3)) > 0.5).astype(np.int64)


def _per_example_norms(x_adv, x):
    delta = (np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)).reshape(len(x), -1)
    return np.abs(delta).max(axis=1), np.linalg.norm(delta, axis=1)


def assert_in_ball_and_box(x_adv, x, epsilon, norm):
    """The threat model: inside [0, 1] and inside the ε-ball. The ℓ2 bound allows, besides a
    relative 1e-5, one float32 rounding of x + δ per pixel (half an ulp of numbers ≤ 1): an
    image in float32 cannot sit closer to the sphere than that."""
    x_adv = np.asarray(x_adv)
    assert x_adv.shape == np.shape(x)
    assert np.all(np.isfinite(x_adv))
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    linf, l2 = _per_example_norms(x_adv, x)
    if norm == "linf":
        assert linf.max() <= epsilon + 1e-6, (linf.max(), epsilon)
    else:
        rounding = np.sqrt(x_adv[0].size) * FLOAT32_EPS / 2
        assert l2.max() <= epsilon * (1 + 1e-5) + rounding, (l2.max(), epsilon)


def _loss_of(logits_fn, loss, labels):
    """The scalar the attacks differentiate: the summed per-example loss."""
    return lambda z: jnp.sum(attacks.per_example_loss(loss, logits_fn(z), labels))


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fc_kernel_fn():
    return architectures.architecture("fc", 1)[2]


@pytest.fixture(scope="module")
def toy(fc_kernel_fn):
    """An FC NTK predictor fitted on 40 random 6x6 images, and 24 test images to attack."""
    rng = np.random.default_rng(0)
    x_train, x_test = _toy_images(rng, 40), _toy_images(rng, 24)
    labels_train, labels_test = _binary_labels(x_train), _binary_labels(x_test)
    y_train = (2.0 * labels_train - 1.0)[:, None]
    predictor = predictors.KernelPredictor(fc_kernel_fn, x_train, y_train)
    logits_fn = predictor.logits_fn()
    clean = np.asarray(attacks.is_correct(logits_fn(x_test), labels_test))
    assert 0.6 <= clean.mean() < 1.0, "the toy task should be learnable yet leave room for attacks"
    return SimpleNamespace(logits_fn=logits_fn, x=x_test, labels=labels_test, clean=clean)


@pytest.fixture(scope="module")
def task():
    return data.make_task("mnist-5k", classes=(3, 5), n_train=800, n_test=200, seed=0)


@pytest.fixture(scope="module")
def mnist_logits(task, fc_kernel_fn):
    return predictors.KernelPredictor(fc_kernel_fn, task.x_train, task.y_train).logits_fn()


# ---------------------------------------------------------------------------- 1. ε-ball and box

ATTACK_SETTINGS = [
    dict(method="fgsm"),
    dict(method="pgd", steps=5),
    dict(method="pgd", steps=5, random_start=True),
    dict(method="pgd", steps=5, random_start=True, restarts=3),
    dict(method="pgd", steps=3, step_size=0.7),  # steps larger than most ε here: projection must act
    dict(method="noise"),
    dict(method="noise", restarts=3),
]


@pytest.mark.parametrize("norm,epsilon", [("linf", 0.3), ("linf", 0.02), ("l2", 1.5), ("l2", 0.1)])
@pytest.mark.parametrize("kwargs", ATTACK_SETTINGS, ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_every_perturbation_stays_in_the_ball_and_the_box(toy, norm, epsilon, kwargs):
    result = attacks.attack(toy.logits_fn, toy.x, toy.labels, epsilon, norm=norm, seed=1, **kwargs)
    assert_in_ball_and_box(result.x_adv, toy.x, epsilon, norm)
    assert result.correct.shape == result.loss.shape == (len(toy.x),) and result.correct.dtype == bool
    # The attack does move: a perturbation that is always zero would pass the bounds trivially.
    linf, l2 = _per_example_norms(result.x_adv, toy.x)
    assert np.median(linf if norm == "linf" else l2) > epsilon / 10


def test_noise_has_exactly_the_budget_away_from_the_box_edges():
    """Random-sign noise moves every pixel by ±ε (ℓ∞); ℓ2 noise has norm exactly ε."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0.2, 0.8, size=(16, 6, 6, 1)).astype(np.float32)  # no clipping at these ε
    labels = _binary_labels(x)
    model = lambda z: jnp.sum(z.reshape(len(z), -1), axis=1, keepdims=True) - 18.0  # noqa: E731
    linf = attacks.attack(model, x, labels, 0.05, "noise", norm="linf").x_adv - x
    np.testing.assert_allclose(np.abs(linf), 0.05, atol=1e-6)
    assert 0.3 < np.mean(linf > 0) < 0.7  # random signs, not a fixed direction
    l2 = attacks.attack(model, x, labels, 0.5, "noise", norm="l2").x_adv - x
    np.testing.assert_allclose(np.linalg.norm(l2.reshape(16, -1), axis=1), 0.5, rtol=1e-5)


# A fixed-shape property test: the models and shapes never change, so each combination of the
# static arguments compiles once and hypothesis only varies data, ε and options.
PROPERTY_SHAPE = (5, 4, 4, 1)
_rng = np.random.default_rng(42)
_WEIGHTS = {
    c: (jnp.asarray(_rng.normal(size=(16, c)), jnp.float32), jnp.asarray(_rng.normal(size=(1, c)), jnp.float32))
    for c in (1, 3)
}


def _tanh_model(z, n_logits):
    w, b = _WEIGHTS[n_logits]
    return 3.0 * jnp.tanh(z.reshape(len(z), -1) @ w + b)


PROPERTY_MODELS = {1: lambda z: _tanh_model(z, 1), 3: lambda z: _tanh_model(z, 3)}
pixels = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0, width=32))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    x=hnp.arrays(np.float32, PROPERTY_SHAPE, elements=pixels),
    epsilon=st.floats(0.0, 1.5),
    n_logits=st.sampled_from([1, 3]),
    method=st.sampled_from(attacks.METHODS),
    norm=st.sampled_from(attacks.NORMS),
    random_start=st.booleans(),
    restarts=st.sampled_from([1, 3]),
    seed=st.integers(0, 2**16),
    data_=st.data(),
)
def test_property_perturbations_stay_in_the_ball_and_the_box(
    x, epsilon, n_logits, method, norm, random_start, restarts, seed, data_
):
    labels = np.asarray(
        data_.draw(hnp.arrays(np.int64, PROPERTY_SHAPE[0], elements=st.integers(0, max(n_logits, 2) - 1)))
    )
    result = attacks.attack(
        PROPERTY_MODELS[n_logits],
        x,
        labels,
        epsilon,
        method,
        norm=norm,
        steps=3,
        random_start=random_start,
        restarts=restarts,
        seed=seed,
    )
    assert_in_ball_and_box(result.x_adv, x, epsilon, norm)
    if epsilon == 0.0:  # up to subnormal pixels, which XLA on CPU flushes to zero
        np.testing.assert_allclose(result.x_adv, x, rtol=0, atol=np.finfo(np.float32).tiny)


# ---------------------------------------------------------------------------- 2. gradients


def _float64_problem(kernel_fn, n_outputs):
    rng = np.random.default_rng(3)
    x_train = rng.uniform(0.05, 0.95, size=(30, 6, 6, 1))
    x = rng.uniform(0.05, 0.95, size=(3, 6, 6, 1))
    if n_outputs == 1:
        labels_train, labels = _binary_labels(x_train), np.array([0, 1, 1])
        y_train = (2.0 * labels_train - 1.0)[:, None]
    else:
        labels_train, labels = rng.integers(0, n_outputs, 30), np.array([0, 2, 1])
        y_train = np.eye(n_outputs)[labels_train]
    predictor = predictors.KernelPredictor(kernel_fn, jnp.asarray(x_train), y_train, float64=True)
    return predictor, jnp.asarray(x), labels


def _numpy_loss(loss, logits, labels):
    """Independent reference formulas, float64 numpy."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    n, c = logits.shape
    if loss == "binary_cross_entropy":
        y = 2.0 * labels - 1.0
        return np.log1p(np.exp(-y * logits[:, 0]))
    if loss == "softmax_cross_entropy":
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return -log_probs[np.arange(n), labels]
    if loss == "margin":
        if c == 1:
            return -(2.0 * labels - 1.0) * logits[:, 0]
        others = [np.max(np.delete(row, label)) for row, label in zip(logits, labels)]
        return np.array(others) - logits[np.arange(n), labels]
    if loss == "mse":
        targets = (2.0 * labels - 1.0)[:, None] if c == 1 else np.eye(c)[labels]
        return 0.5 * np.mean((logits - targets) ** 2, axis=1)
    raise AssertionError(loss)


@pytest.mark.parametrize(
    "n_outputs,loss",
    [(1, "binary_cross_entropy"), (1, "margin"), (1, "mse"), (3, "softmax_cross_entropy"), (3, "margin"), (3, "mse")],
)
def test_attack_gradient_matches_central_finite_differences(float64, fc_kernel_fn, n_outputs, loss):
    """jax.grad through logits_fn and per_example_loss against finite differences of the
    host-side predictor (predict) and the numpy loss: two independent paths."""
    predictor, x, labels = _float64_problem(fc_kernel_fn, n_outputs)
    grad = np.asarray(jax.grad(_loss_of(predictor.logits_fn(), loss, labels))(x))
    assert grad.dtype == np.float64
    # Every pixel of every example, all perturbed inputs in one predict call: the summed loss
    # moves only through the perturbed example's own term.
    n, d, h = len(x), x[0].size, 1e-6
    flat = np.asarray(x).reshape(n, d)
    bumps = np.eye(d)[None] * h  # (1, d, d)
    plus, minus = (flat[:, None, :] + s * bumps for s in (1.0, -1.0))  # (n, d, d)
    rows = np.repeat(labels, d)
    f_plus = _numpy_loss(loss, predictor.predict(plus.reshape((n * d,) + x.shape[1:])), rows)
    f_minus = _numpy_loss(loss, predictor.predict(minus.reshape((n * d,) + x.shape[1:])), rows)
    numeric = ((f_plus - f_minus) / (2 * h)).reshape(x.shape)
    assert np.abs(numeric).max() > 1e-3
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7 * np.abs(numeric).max())


def test_fgsm_is_the_clipped_sign_step_along_the_loss_gradient(float64, fc_kernel_fn):
    predictor, x, labels = _float64_problem(fc_kernel_fn, 1)
    x = x.at[:, 0, 0, 0].set(0.0).at[:, 1, 1, 0].set(1.0).at[:, 2, 2, 0].set(0.9995)  # clipping in play
    logits_fn = predictor.logits_fn()
    grad = np.asarray(jax.grad(_loss_of(logits_fn, "binary_cross_entropy", labels))(x))
    assert np.mean(grad != 0) > 0.9
    epsilon = 1e-3
    fgsm = attacks.attack(logits_fn, x, labels, epsilon, "fgsm")
    np.testing.assert_allclose(fgsm.x_adv, np.clip(np.asarray(x) + epsilon * np.sign(grad), 0, 1), rtol=0, atol=1e-12)
    # ℓ2 FGSM: a step of length ε along the normalised gradient (interior pixels: no clipping).
    _, interior, _ = _float64_problem(fc_kernel_fn, 1)
    g = np.asarray(jax.grad(_loss_of(logits_fn, "binary_cross_entropy", labels))(interior))
    unit = g / np.linalg.norm(g.reshape(len(g), -1), axis=1)[:, None, None, None]
    l2 = attacks.attack(logits_fn, interior, labels, epsilon, "fgsm", norm="l2")
    np.testing.assert_allclose(l2.x_adv, np.asarray(interior) + epsilon * unit, rtol=0, atol=1e-12)
    # And the loss it reports is the loss at the image it returns.
    np.testing.assert_allclose(
        fgsm.loss, _numpy_loss("binary_cross_entropy", predictor.predict(fgsm.x_adv), labels), rtol=1e-8
    )


# ---------------------------------------------------------------------------- 3. losses


# Every loss with every number of logits it is defined for (the others raise, tested below).
DEFINED_LOSSES = [
    (loss, c)
    for loss in attacks.LOSSES
    for c in (1, 4)
    if (loss, c) not in {("binary_cross_entropy", 4), ("softmax_cross_entropy", 1)}
]


@pytest.mark.parametrize("loss,n_outputs", DEFINED_LOSSES)
def test_per_example_loss_matches_numpy_formulas(loss, n_outputs):
    rng = np.random.default_rng(7)
    logits = rng.normal(scale=3.0, size=(50, n_outputs)).astype(np.float32)
    labels = rng.integers(0, max(n_outputs, 2), 50)
    ours = np.asarray(attacks.per_example_loss(loss, jnp.asarray(logits), jnp.asarray(labels)))
    assert ours.shape == (50,)
    np.testing.assert_allclose(ours, _numpy_loss(loss, logits, labels), rtol=1e-5, atol=1e-6)


def test_margin_is_positive_exactly_when_the_prediction_is_wrong():
    rng = np.random.default_rng(8)
    for c in (1, 5):
        logits = jnp.asarray(rng.normal(size=(200, c)), jnp.float32)
        labels = jnp.asarray(rng.integers(0, max(c, 2), 200))
        wrong = ~np.asarray(attacks.is_correct(logits, labels))
        assert 0 < wrong.mean() < 1
        np.testing.assert_array_equal(np.asarray(attacks.per_example_loss("margin", logits, labels)) > 0, wrong)


def test_binary_cross_entropy_is_finite_for_large_logits():
    logits = jnp.asarray([[200.0], [-200.0]])
    loss = np.asarray(attacks.per_example_loss("binary_cross_entropy", logits, jnp.asarray([0, 0])))
    np.testing.assert_allclose(loss, [200.0, 0.0], atol=1e-6)


def test_losses_refuse_the_wrong_number_of_logits():
    labels = jnp.asarray([0, 1])
    with pytest.raises(ValueError, match="binary_cross_entropy needs one logit.* 3"):
        attacks.per_example_loss("binary_cross_entropy", jnp.zeros((2, 3)), labels)
    with pytest.raises(ValueError, match="softmax_cross_entropy needs at least two logits"):
        attacks.per_example_loss("softmax_cross_entropy", jnp.zeros((2, 1)), labels)
    with pytest.raises(ValueError, match="'hinge'"):
        attacks.per_example_loss("hinge", jnp.zeros((2, 1)), labels)


# ---------------------------------------------------------------------------- 4. restarts


def _split_is_a_prefix():
    """attack draws restart r's key as split(PRNGKey(seed), restarts)[r]; restart 0 of a run
    with many restarts is the run with one restart iff splitting is prefix-consistent (true
    with jax_threefry_partitionable, the default since jax 0.5)."""
    key = jax.random.PRNGKey(11)
    return bool(jnp.all(jax.random.split(key, 1)[0] == jax.random.split(key, 4)[0]))


@pytest.mark.parametrize("method,norm,batch_size", [("pgd", "linf", 500), ("pgd", "l2", 10), ("noise", "linf", 10)])
def test_restarts_keep_the_worst_case_of_each_example(toy, method, norm, batch_size):
    epsilon = 0.1 if norm == "linf" else 0.6
    # A short PGD with small steps, so that the random start matters.
    args = dict(
        method=method, norm=norm, steps=2, step_size=epsilon / 4, random_start=True, seed=4, batch_size=batch_size
    )
    one = attacks.attack(toy.logits_fn, toy.x, toy.labels, epsilon, restarts=1, **args)
    four = attacks.attack(toy.logits_fn, toy.x, toy.labels, epsilon, restarts=4, **args)
    assert four.accuracy <= one.accuracy
    # The result is self-consistent: its loss and correctness are those of the image it returns.
    logits = toy.logits_fn(four.x_adv)
    np.testing.assert_allclose(
        four.loss, attacks.per_example_loss("binary_cross_entropy", logits, toy.labels), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(four.correct, attacks.is_correct(logits, toy.labels))
    if not _split_is_a_prefix():
        pytest.skip("restart keys are not prefix-consistent here: only the accuracy comparison is valid")
    assert np.all(~one.correct <= ~four.correct), "a misclassified example became correct"
    both_correct = one.correct & four.correct
    assert np.all(four.loss[both_correct] >= one.loss[both_correct])
    # Restarts do something: some example is strictly worse than after the first one.
    worse = (~four.correct & one.correct) | (four.loss > one.loss)
    assert worse.any()


def test_pgd_without_random_start_ignores_restarts(toy):
    one = attacks.attack(toy.logits_fn, toy.x, toy.labels, 0.05, "pgd", restarts=1)
    three = attacks.attack(toy.logits_fn, toy.x, toy.labels, 0.05, "pgd", restarts=3, seed=9)
    np.testing.assert_array_equal(one.x_adv, three.x_adv)


def test_batching_does_not_change_a_deterministic_attack(toy):
    """Batches of 7 (the last one padded) give the images of one batch."""
    for method in ("fgsm", "pgd"):
        whole = attacks.attack(toy.logits_fn, toy.x, toy.labels, 0.1, method, steps=4)
        batched = attacks.attack(toy.logits_fn, toy.x, toy.labels, 0.1, method, steps=4, batch_size=7)
        np.testing.assert_allclose(batched.x_adv, whole.x_adv, atol=1e-6)
        np.testing.assert_array_equal(batched.correct, whole.correct)


# ---------------------------------------------------------------------------- 5. the paper's numbers


def test_mnist_3_vs_5_matches_the_expected_numbers(task, mnist_logits):
    x, labels = task.x_test, task.labels_test
    clean = float(np.mean(np.asarray(attacks.is_correct(mnist_logits(x), labels))))
    assert clean == pytest.approx(0.985, abs=0.02)
    fgsm_01 = attacks.attack(mnist_logits, x, labels, 0.1, "fgsm")
    assert 0.15 <= fgsm_01.accuracy <= 0.4
    assert attacks.attack(mnist_logits, x, labels, 0.2, "fgsm").accuracy <= 0.02
    assert attacks.attack(mnist_logits, x, labels, 0.1, "noise").accuracy >= 0.95
    pgd_01 = attacks.attack(mnist_logits, x, labels, 0.1, "pgd")
    assert pgd_01.accuracy <= fgsm_01.accuracy + 0.01
    madry = attacks.attack(mnist_logits, x, labels, 0.1, "pgd", random_start=True, restarts=2)
    assert madry.accuracy <= fgsm_01.accuracy + 0.01


def test_sanity_checks_pass_on_the_kernel_predictor(task, mnist_logits):
    table = robustness.sanity_checks(mnist_logits, task.x_test, task.labels_test, 0.1)
    assert list(table.columns) == ["check", "measured", "criterion", "passed"]
    assert len(table) == 5
    assert table.passed.all(), table.to_string()


def test_accuracy_vs_epsilon_table(task, mnist_logits):
    epsilons = [0.0, 0.05, 0.1, 0.2]
    table = robustness.accuracy_vs_epsilon(mnist_logits, task.x_test, task.labels_test, epsilons)
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["method", "epsilon", "accuracy"]
    assert len(table) == 3 * len(epsilons)
    assert not table.duplicated(["method", "epsilon"]).any()
    assert set(table.method) == {"fgsm", "pgd", "noise"}
    pgd = table[table.method == "pgd"].sort_values("epsilon")
    np.testing.assert_allclose(pgd.epsilon, epsilons)
    assert np.all(np.diff(pgd.accuracy.to_numpy()) <= 0), pgd
    # At ε = 0 every method is the clean predictor.
    at_zero = table[table.epsilon == 0.0].accuracy
    assert at_zero.nunique() == 1 and at_zero.iloc[0] == pytest.approx(0.985, abs=0.02)


# ---------------------------------------------------------------------------- 6. the checks can fail


@pytest.mark.parametrize("masking", ["stop_gradient", "quantised_input"])
def test_sanity_checks_catch_masked_gradients(task, mnist_logits, masking):
    """A model whose input gradient is zero looks robust to gradient attacks; the unbounded
    attack and the noise comparison must expose it."""
    if masking == "stop_gradient":
        masked = lambda z: mnist_logits(jax.lax.stop_gradient(z))  # noqa: E731
    else:
        masked = lambda z: mnist_logits(jnp.round(z * 8.0) / 8.0)  # noqa: E731  (zero gradient a.e.)
    x, labels = task.x_test, task.labels_test
    assert float(jnp.abs(jax.grad(_loss_of(masked, "binary_cross_entropy", labels))(jnp.asarray(x))).max()) == 0.0
    table = robustness.sanity_checks(masked, x, labels, 0.1).set_index("check")
    assert not table.passed.all(), table.to_string()
    assert not table.loc["unbounded attack reaches 0%", "passed"]
    assert not table.loc["random noise much weaker", "passed"]


# ---------------------------------------------------------------------------- 7. many classes


@pytest.fixture(scope="module")
def ten_classes(fc_kernel_fn):
    task = data.make_task("mnist-5k", classes=None, n_train=300, n_test=100, seed=1, image_size=14)
    logits_fn = predictors.KernelPredictor(fc_kernel_fn, task.x_train, task.y_train).logits_fn()
    return task, logits_fn


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "margin", None])
def test_ten_class_predictor_is_broken_by_pgd(ten_classes, loss):
    task, logits_fn = ten_classes
    x, labels = task.x_test, task.labels_test
    logits = logits_fn(x)
    assert logits.shape == (100, 10)
    clean = float(np.mean(np.asarray(attacks.is_correct(logits, labels))))
    assert clean >= 0.7
    result = attacks.attack(logits_fn, x, labels, 0.2, "pgd", loss=loss)
    assert result.accuracy <= clean / 3
    assert_in_ball_and_box(result.x_adv, x, 0.2, "linf")
    if loss is None:  # the default for many logits is softmax cross-entropy
        reference = attacks.attack(logits_fn, x, labels, 0.2, "pgd", loss="softmax_cross_entropy")
        np.testing.assert_array_equal(result.x_adv, reference.x_adv)


# ---------------------------------------------------------------------------- 8. bad arguments


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(epsilon=-0.1), "-0.1"),
        (dict(epsilon=float("nan")), "nan"),
        (dict(norm="l3"), "'l3'"),
        (dict(loss="hinge"), "'hinge'"),
        (dict(method="cw"), "'cw'"),
        (dict(labels=np.array([0, 1, 1, 0])), re.escape("got shape (4,)")),
        (dict(labels=np.array([0, 1, 2, 0, 1])), "0..2"),
        (dict(x="above"), "1.5"),
        (dict(x="below"), "-0.25"),
        (dict(steps=0), "got 0"),
        (dict(restarts=0), "got 0"),
        (dict(step_size=-0.01), "-0.01"),
    ],
)
def test_attack_refuses_bad_arguments_and_names_them(change, message):
    x = np.full((5, 4, 4, 1), 0.5, np.float32)
    if change.get("x") == "above":
        x[2, 1, 1, 0] = 1.5
    elif change.get("x") == "below":
        x[0, 0, 0, 0] = -0.25
    args = dict(logits_fn=PROPERTY_MODELS[1], x=x, labels=np.array([0, 1, 1, 0, 1]), epsilon=0.1, method="pgd")
    args.update({k: v for k, v in change.items() if k != "x"})
    with pytest.raises(ValueError, match=message):
        attacks.attack(**args)


def test_sweep_refuses_an_empty_list_of_epsilons(toy):
    with pytest.raises(ValueError, match=r"non-empty.*\[\]"):
        robustness.sweep(toy.logits_fn, toy.x, toy.labels, [])


@pytest.mark.parametrize("batch_size", [0, -1])
def test_attack_refuses_a_batch_size_below_one(toy, batch_size):
    with pytest.raises(ValueError, match=f"batch_size.*{batch_size}"):
        attacks.attack(toy.logits_fn, toy.x, toy.labels, 0.1, "fgsm", batch_size=batch_size)


# ---------------------------------------------------------------------------- 9. sweep


def test_sweep_shapes_and_clean_accuracy_at_zero(toy):
    epsilons = [0.0, 0.05, 0.2]
    n = len(toy.x)
    before = attacks.pgd._cache_size()
    result = robustness.sweep(toy.logits_fn, toy.x, toy.labels, epsilons, "pgd", steps=3)
    assert attacks.pgd._cache_size() - before <= 1, "ε must be traced, not recompiled for each value"
    assert result.method == "pgd"
    np.testing.assert_array_equal(result.epsilons, epsilons)
    assert result.accuracy.shape == (3,)
    assert result.correct.shape == (3, n) and result.correct.dtype == bool
    assert result.x_adv.shape == (3,) + toy.x.shape
    np.testing.assert_allclose(result.accuracy, result.correct.mean(axis=1))
    # ε = 0: the clean images and the clean accuracy.
    np.testing.assert_array_equal(result.x_adv[0], toy.x)
    np.testing.assert_array_equal(result.correct[0], toy.clean)
    for i, e in enumerate(epsilons):
        assert_in_ball_and_box(result.x_adv[i], toy.x, e, "linf")
        single = attacks.attack(toy.logits_fn, toy.x, toy.labels, e, "pgd", steps=3)
        np.testing.assert_array_equal(result.correct[i], single.correct)
    assert result.accuracy[-1] < result.accuracy[0]
    lean = robustness.sweep(toy.logits_fn, toy.x, toy.labels, epsilons, "fgsm", keep_inputs=False)
    assert lean.x_adv is None and lean.correct.shape == (3, n)
    assert lean.accuracy[0] == pytest.approx(toy.clean.mean())


def test_attacking_a_predictor_with_images_of_another_shape_names_the_shapes():
    x_train = jax.random.uniform(jax.random.PRNGKey(0), (10, 6, 6, 1))
    y_train = jnp.where(jnp.arange(10) % 2 == 0, 1.0, -1.0)[:, None]
    predictor = predictors.KernelPredictor(architectures.architecture("fc", 1)[2], x_train, y_train)
    wrong = jax.random.uniform(jax.random.PRNGKey(1), (4, 5, 5, 1))
    with pytest.raises(ValueError, match=r"\(5, 5, 1\).*\(6, 6, 1\)"):
        attacks.attack(predictor.logits_fn(), wrong, np.array([0, 1, 0, 1]), 0.1)


# ---------------------------------------------------------------------------- the public core


def test_predicted_class_and_is_correct_keep_numpy_in_numpy_and_jax_in_jax():
    one = np.array([[0.3], [0.0], [-2.0], [1e-50]])  # 0 is class 0; 1e-50 is > 0 in float64
    assert attacks.predicted_class(one).tolist() == [1, 0, 0, 1]
    assert isinstance(attacks.is_correct(one, [1, 0, 0, 1]), np.ndarray)
    assert attacks.is_correct(one, np.array([1, 0, 0, 1])).all()
    many = jnp.array([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3]])
    assert isinstance(attacks.is_correct(many, [1, 2]), jax.Array)
    assert attacks.is_correct(many, [1, 2]).tolist() == [True, False]
    jitted = jax.jit(attacks.is_correct)(jnp.array([[-1.0], [2.0]]), jnp.array([0, 0]))
    assert jitted.tolist() == [True, False]


def test_accuracy_is_the_mean_of_is_correct_binary_and_multiclass():
    assert attacks.accuracy(np.array([[0.3], [-2.0], [0.1]]), np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert attacks.accuracy(np.array([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3]]), np.array([1, 2])) == 0.5


def test_step_plan_fgsm_is_one_step_of_epsilon_and_pgd_defaults_to_2_5_epsilon_over_steps():
    assert attacks.default_step_size(0.1, 10) == pytest.approx(0.025)
    assert attacks.step_plan("fgsm", 0.1, 7, step_size=0.5, random_start=True) == (1, 0.1, False)
    assert attacks.step_plan("pgd", 0.1, 10) == (10, attacks.default_step_size(0.1, 10), False)
    assert attacks.step_plan("pgd", 0.1, 10, step_size=0.01, random_start=True) == (10, 0.01, True)


def test_attack_fgsm_equals_one_public_pgd_step(toy):
    epsilon = 0.05
    model = attacks.as_model(toy.logits_fn)
    x = jnp.asarray(toy.x)
    steps, step_size, random_start = attacks.step_plan("fgsm", epsilon, 10)
    x_adv, _, correct = attacks.pgd(
        model,
        x,
        jnp.asarray(toy.labels),
        epsilon,
        step_size,
        jax.random.PRNGKey(0),
        loss="binary_cross_entropy",
        norm="linf",
        steps=steps,
        random_start=random_start,
    )
    result = attacks.attack(toy.logits_fn, toy.x, toy.labels, epsilon, "fgsm")
    np.testing.assert_array_equal(result.x_adv, np.asarray(x_adv))
    np.testing.assert_array_equal(result.correct, np.asarray(correct))


def test_direction_and_project_per_norm():
    g = jnp.array([[[3.0, -4.0]], [[0.0, 2.0]]])
    np.testing.assert_array_equal(attacks.direction(g, "linf"), jnp.sign(g))
    np.testing.assert_allclose(attacks.direction(g, "l2"), [[[0.6, -0.8]], [[0.0, 1.0]]], rtol=1e-6)
    x = jnp.array([[[0.5, 0.5]], [[0.02, 0.5]]])
    far = x + jnp.array([[[0.3, -0.4]], [[-0.3, 0.0]]])
    linf = attacks.project(x, far, 0.1, "linf")
    np.testing.assert_allclose(linf, [[[0.6, 0.4]], [[0.0, 0.5]]], atol=1e-7)  # clipped to the box too
    l2 = attacks.project(x, far, 0.1, "l2")
    np.testing.assert_allclose(l2[0], [[0.56, 0.42]], atol=1e-6)  # scaled onto the sphere of radius 0.1
    np.testing.assert_allclose(attacks.project(x, l2, 0.1, "l2"), l2, atol=1e-7)  # idempotent


@pytest.mark.parametrize("norm", attacks.NORMS)
def test_random_in_ball_on_the_sphere_and_inside(norm):
    x = jnp.full((64, 3, 3, 1), 0.5)
    key = jax.random.PRNGKey(1)
    linf, l2 = _per_example_norms(attacks.random_in_ball(key, x, 0.1, norm, on_sphere=True), x)
    np.testing.assert_allclose(linf if norm == "linf" else l2, 0.1, rtol=1e-5)
    inside = attacks.random_in_ball(key, x, 0.1, norm, on_sphere=False)
    assert_in_ball_and_box(inside, x, 0.1, norm)


def test_is_count_and_validate():
    assert attacks.is_count(3) and attacks.is_count(np.int64(2))
    assert not any(attacks.is_count(v) for v in (0, -1, 2.0, True, "3"))
    x = jnp.full((2, 2, 2, 1), 0.5)
    labels, loss = attacks.validate(lambda z: z.reshape(2, -1)[:, :1], x, [0, 1], 0.1, "pgd", "linf", None, 3, 1, 2)
    assert loss == "binary_cross_entropy" and labels.tolist() == [0, 1]
    with pytest.raises(ValueError, match="unknown attack method 'cw'"):
        attacks.validate(lambda z: z.reshape(2, -1)[:, :1], x, [0, 1], 0.1, "cw", "linf", None, 3, 1, 2)


# ---------------------------------------------------------------------------- 11. the PGD loop's form


def _small_network(name):
    """A small network of the dynamics chapter at initialisation, its model and 12 images of 8x8."""
    x = _toy_images(np.random.default_rng(3), 12, (8, 8, 1))
    init_fn, apply_fn, _ = architectures.network(name, n_out=1, widths=(4, 8, 8) if name == "cnn" else (16,))
    _, params = init_fn(jax.random.PRNGKey(0), x.shape)
    return jax.tree_util.Partial(training.call_model, attacks.as_model(apply_fn), params), jnp.asarray(x)


def _reference_pgd(model, x, labels, epsilon, step_size, steps, norm):
    """PGD as a plain Python loop, one eager gradient per step, from x."""
    loss = _loss_of(model, "binary_cross_entropy", labels)
    x_adv = x
    for _ in range(steps):
        x_adv = attacks.project(x, x_adv + step_size * attacks.direction(jax.grad(loss)(x_adv), norm), epsilon, norm)
    return np.asarray(x_adv)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("norm,epsilon", [("linf", 0.1), ("l2", 1.0)])
@pytest.mark.parametrize("unroll", [None, 1, 2, 5])
def test_every_loop_form_gives_the_images_of_a_plain_loop(name, norm, epsilon, unroll):
    """Rolled scan, chunks of 2, fully unrolled and the rule's choice: the same PGD-5."""
    model, x = _small_network(name)
    labels = jnp.asarray(_binary_labels(np.asarray(x)))
    x_adv, loss, correct = attacks.pgd(
        model, x, labels, epsilon, 0.3 * epsilon, jax.random.PRNGKey(0),
        loss="binary_cross_entropy", norm=norm, steps=5, random_start=False, unroll=unroll,
    )  # fmt: skip
    expected = _reference_pgd(model, x, labels, epsilon, 0.3 * epsilon, 5, norm)
    assert np.abs(expected - np.asarray(x)).max() > epsilon / 10  # the attack moved
    np.testing.assert_allclose(np.asarray(x_adv), expected, atol=1e-6)
    logits = model(jnp.asarray(expected))
    np.testing.assert_allclose(loss, attacks.per_example_loss("binary_cross_entropy", logits, labels), rtol=1e-5)
    np.testing.assert_array_equal(correct, attacks.is_correct(logits, labels))


def test_uses_convolution_finds_a_networks_weights_and_not_a_kernels_filters():
    model, x = _small_network("cnn")
    assert attacks.uses_convolution(model, x)
    assert not attacks.uses_convolution(_small_network("mlp")[0], x)
    init_fn, apply_fn, _ = architectures.network("cnn", 1, (4, 8, 8))
    params = init_fn(jax.random.PRNGKey(0), x.shape)[1]
    linearised = jax.tree_util.Partial(training.call_model, training.linearised(apply_fn, params), params)
    assert attacks.uses_convolution(linearised, x)  # its JVP convolves too
    for arch in [("fc", 1), ("conv", 1), ("myrtle", 5)]:  # Myrtle's kernel convolves with ones-filters of its own
        predictor = predictors.KernelPredictor(architectures.architecture(*arch)[2], x[:4], np.ones((4, 1)))
        assert not attacks.uses_convolution(predictor.logits_fn(), x)


def test_loop_unroll_rule_per_backend_and_length():
    limit = attacks.MAX_UNROLLED_STEPS
    assert attacks.loop_unroll(10, "cpu", True) == 10 and attacks.loop_unroll(limit, "cpu", True) == limit
    assert attacks.loop_unroll(limit + 1, "cpu", True) == 1  # long attacks: compilation would outweigh the gain
    assert attacks.loop_unroll(10, "cpu", False) == 1
    assert attacks.loop_unroll(10, "gpu", True) == attacks.loop_unroll(10, "tpu", True) == 1
    # Without XLA's CPU optimisations a convolution in a loop is 39-64x slower: always unrolled
    assert attacks.loop_unroll(limit + 1, "cpu", True, optimised=False) == limit + 1
    assert attacks.loop_unroll(limit + 1, "cpu", False, optimised=False) == 1
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        attacks.loop_unroll(0, "cpu", True)


def test_xla_cpu_optimised_reads_the_optimisation_level(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_thunk_runtime=true --xla_backend_optimization_level=0")
    assert not attacks.xla_cpu_optimised()
    for flags in ("", "--xla_backend_optimization_level=2", "--xla_llvm_disable_expensive_passes=true"):
        monkeypatch.setenv("XLA_FLAGS", flags)
        assert attacks.xla_cpu_optimised(), flags
    monkeypatch.delenv("XLA_FLAGS")
    assert attacks.xla_cpu_optimised()


@pytest.fixture
def fresh_pgd_traces():
    """The loop rule runs while ``pgd`` is traced, and its traces are cached without the XLA
    flags (which never change within a process, except in a test): none kept before or after."""
    attacks.pgd.clear_cache()
    yield
    attacks.pgd.clear_cache()


@pytest.mark.parametrize(
    "name,steps,optimised,loops",
    [
        ("cnn", 3, True, 0),
        ("cnn", attacks.MAX_UNROLLED_STEPS + 1, True, 1),
        ("cnn", attacks.MAX_UNROLLED_STEPS + 1, False, 0),
        ("mlp", 3, True, 1),
        ("mlp", 1, True, 0),  # FGSM: one step, no loop (a scan of one step would still be a while loop)
        ("cnn", 1, False, 0),
    ],
)
def test_pgd_compiles_the_form_the_rule_chooses(name, steps, optimised, loops, monkeypatch, fresh_pgd_traces):
    """On this CPU: no while loop left for the CNN's short attack (any attack when XLA does not
    optimise) or for one step, one otherwise."""
    assert jax.default_backend() == "cpu"
    monkeypatch.setenv("XLA_FLAGS", "" if optimised else "--xla_backend_optimization_level=0")
    model, x = _small_network(name)
    args = (model, x, jnp.zeros(len(x), jnp.int32), 0.1, 0.01, jax.random.PRNGKey(0))
    static = dict(loss="binary_cross_entropy", norm="linf", steps=steps, random_start=False)
    assert attacks.pgd.lower(*args, **static).as_text().count("stablehlo.while") == loops


@pytest.mark.parametrize("unroll", [0, -2, 1.5, True])
def test_pgd_refuses_a_bad_unroll_and_names_it(unroll):
    model, x = _small_network("mlp")
    with pytest.raises(ValueError, match=f"unroll must be a positive integer or None, got {unroll!r}"):
        attacks.pgd(
            model, x, jnp.zeros(len(x), jnp.int32), 0.1, 0.01, jax.random.PRNGKey(0),
            loss="binary_cross_entropy", norm="linf", steps=3, random_start=False, unroll=unroll,
        )  # fmt: skip
