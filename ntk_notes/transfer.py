"""Transfer of adversarial examples to trained networks, with laziness varied alone.

Laziness is set by the output scale α of Chizat, Oyallon & Bach (2019): the model
α·(f(x; θ) − f(x; θ₀)) trained on the squared loss with learning rate η/α² moves its
function at the same speed for every α, but its parameters by a factor 1/α: large α is
lazy (the empirical NTK stays put), small α is rich (the kernel turns). Every run is
trained to the same training loss, so runs differ in how they fit, not in how well.

Per run the chapter measures, on the same test images, per example: clean, white-box
(the strongest per example of PGD, FGSM and FGSM on a noise-averaged gradient: on lazy
ReLU nets at large α plain FGSM can be weak), each surrogate's transferred examples and
random noise; and how far the kernel moved on a fixed probe (cosine distance and norm
ratio, separately). The transfer ratio (clean − transfer) / (clean − white-box) says how
much of what the white-box attack removes the surrogate's examples remove too.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from ntk_notes import attacks, empirical, kernel_metrics, training


def scaled(apply_fn, params_init, alpha: float) -> Partial:
    """The model α·(f(x; θ) − f(x; θ₀)) (Chizat et al. 2019): zero at θ₀, and the larger
    α, the less θ must move to change it. A ``Partial`` with α and θ₀ as leaves, so one
    compilation serves every α."""
    if not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")
    return Partial(_scaled_fn(apply_fn), jnp.asarray(alpha), params_init)


@lru_cache(maxsize=64)
def _scaled_fn(apply_fn):
    return lambda alpha, params_init, params, x: alpha * (apply_fn(params, x) - apply_fn(params_init, x))


def scaled_learning_rate(learning_rate: float, alpha: float) -> float:
    """η/α²: the rate at which the α-scaled model's function moves as fast as the unscaled
    one's (its tangent kernel is α² times the network's)."""
    return float(learning_rate) / float(alpha) ** 2


def train_to_loss(
    model,
    params,
    x,
    y,
    learning_rate: float,
    target_loss: float,
    max_steps: int,
    chunk: int = 50,
    retries: int = 3,
    patience: int = 10,
) -> training.TrainedNet:
    """Full-batch gradient descent on the squared loss until the training loss is at most
    ``target_loss`` (checked every ``chunk`` steps) or ``max_steps`` steps. If the loss
    diverges (non-finite, or 10⁴ times its start) or stalls above the target (less than 1%
    lower than ``patience`` chunks before: at a too large rate ReLU units die and the
    network freezes) the run restarts from ``params`` at half the rate, up to ``retries``
    times. The returned net's ``learning_rate`` is the rate used, ``steps`` the steps taken
    and ``losses`` the loss after every chunk; it may end above the target (the caller
    checks ``losses[-1]``): then it is the attempt that ended lowest."""
    if not target_loss > 0:
        raise ValueError(f"target_loss must be > 0, got {target_loss!r}")
    start_loss = float(training.training_loss("mse", attacks.as_model(model), params, x, y))
    best = None
    for _ in range(retries + 1):
        current, losses, steps, failed = params, [], 0, False
        while steps < max_steps:
            length = min(chunk, max_steps - steps)
            net = training.train(model, current, x, y, learning_rate, length, chunk=chunk, show_progress=False)
            current, steps = net.params, steps + length
            losses.append(float(net.losses[-1]))
            if losses[-1] <= target_loss:
                return training.TrainedNet(model, params, current, np.asarray(losses), learning_rate, steps)
            failed = (
                not np.isfinite(losses[-1])
                or losses[-1] > 1e4 * max(start_loss, 1e-12)
                or (len(losses) > patience and losses[-1] > 0.99 * losses[-1 - patience])
            )
            if failed:
                break
        attempt = training.TrainedNet(model, params, current, np.asarray(losses), learning_rate, steps)
        if np.isfinite(losses[-1]) and (best is None or losses[-1] < best.losses[-1]):
            best = attempt
        if not failed:  # ran out of steps while still improving: a lower rate would not help
            return best
        learning_rate /= 2
    if best is None:
        raise FloatingPointError(f"training diverged at every rate down to {learning_rate * 2:.3g}")
    return best


class Laziness(NamedTuple):
    """How far the empirical NTK moved during training, on a fixed probe."""

    cosine_distance: float  # S(K_0, K_T) = 1 − cos(K_0, K_T): how far it turned
    norm_ratio: float  # ‖K_T‖_F / ‖K_0‖_F: how much it grew or shrank


def laziness(apply_fn, params_init, params, probe) -> Laziness:
    """The cosine distance and the norm ratio of the network's empirical NTK (of f, not of
    the α-scaled model, whose kernel is α² times it: both measures are scale-free) on
    ``probe`` between θ₀ and θ."""
    k0 = empirical.empirical_ntk(apply_fn, params_init, probe, trace=True, implementation="jacobian_contraction")
    kt = empirical.empirical_ntk(apply_fn, params, probe, trace=True, implementation="jacobian_contraction")
    return Laziness(kernel_metrics.kernel_distance(k0, kt), float(np.linalg.norm(kt) / np.linalg.norm(k0)))


def smoothed(logits_fn, image_shape, sigma: float, samples: int, seed: int = 0) -> Partial:
    """x -> the mean of ``logits_fn`` over ``samples`` Gaussian perturbations of x (std
    ``sigma``, drawn once, shape ``image_shape`` each): its input gradient is the
    noise-averaged gradient, informative where a ReLU net's own gradient is not."""
    if not sigma >= 0 or not (isinstance(samples, int) and samples >= 1):
        raise ValueError(f"need sigma >= 0 and an integer samples >= 1, got {sigma!r}, {samples!r}")
    noise = sigma * jax.random.normal(jax.random.PRNGKey(seed), (samples, *image_shape))
    return Partial(_smoothed_logits, attacks.as_model(logits_fn), noise)


@jax.jit
def _smoothed_logits(logits_fn, noise, x):
    return jnp.mean(jax.vmap(lambda z: logits_fn(x + z[None]))(noise), axis=0)


def correct_on(logits_fn, x, labels) -> np.ndarray:
    """Whether ``logits_fn`` classifies each of ``x`` correctly, (n,) bool."""
    return np.asarray(attacks.is_correct(attacks.as_model(logits_fn)(jnp.asarray(x)), labels))


def strongest(*correct) -> np.ndarray:
    """The strongest of several attacks per example: an example survives only if it
    survived every one (the per-example minimum of correctness)."""
    if not correct:
        raise ValueError("strongest needs at least one attack's outcomes")
    shapes = {np.shape(c) for c in correct}
    if len(shapes) != 1:
        raise ValueError(f"every attack's outcomes must have one shape, got {sorted(shapes)}")
    return np.logical_and.reduce([np.asarray(c, bool) for c in correct])


class WhiteBox(NamedTuple):
    """Per-example outcomes (n,) of each white-box attack and of the strongest per example."""

    pgd: np.ndarray
    fgsm: np.ndarray
    fgsm_smoothed: np.ndarray
    strongest: np.ndarray


def white_box(
    logits_fn, x, labels, epsilon: float, steps: int = 10, sigma: float = 0.1, samples: int = 16, seed: int = 0
) -> WhiteBox:
    """PGD (``steps`` steps of 2.5 ε / steps, no random start), FGSM and FGSM on the
    noise-averaged gradient (``smoothed``), all ℓ∞ at ``epsilon``, and their strongest per
    example."""
    pgd = attacks.attack(logits_fn, x, labels, epsilon, "pgd", steps=steps).correct
    fgsm = attacks.attack(logits_fn, x, labels, epsilon, "fgsm").correct
    smooth_fn = smoothed(logits_fn, np.shape(x)[1:], sigma, samples, seed)
    x_smooth = attacks.attack(smooth_fn, x, labels, epsilon, "fgsm").x_adv
    fgsm_smoothed = correct_on(logits_fn, x_smooth, labels)
    return WhiteBox(pgd, fgsm, fgsm_smoothed, strongest(pgd, fgsm, fgsm_smoothed))


def transfer_ratio(clean: float, transfer: float, white_box: float) -> float:
    """(clean − transfer) / (clean − white-box): the share of what the white-box attack
    removes that the transferred examples remove too; NaN when the white-box attack removes
    nothing."""
    removed = float(clean) - float(white_box)
    return (float(clean) - float(transfer)) / removed if removed > 0 else float("nan")


class TransferRun(NamedTuple):
    """One trained network's measurements: per-example outcomes (n,) on the test images,
    clean, under the strongest white-box attack, on a surrogate's adversarial images and
    under noise; how far its kernel turned; optionally its outcomes on a baseline
    surrogate's examples (one that knows nothing of the kernel) and its transfer ratio at
    matched white-box robustness (``matched_ratio``)."""

    seed: int
    distance: float  # cosine distance S(K_0, K_T) on the probe
    clean: np.ndarray
    white_box: np.ndarray
    transfer: np.ndarray
    noise: np.ndarray
    baseline: np.ndarray | None = None
    matched_ratio: float = float("nan")

    @property
    def ratio(self) -> float:
        return transfer_ratio(np.mean(self.clean), np.mean(self.transfer), np.mean(self.white_box))


class Evaluation(NamedTuple):
    """Per-example outcomes of one network on every evaluation set."""

    clean: np.ndarray
    white_box: WhiteBox
    transfer: dict  # surrogate name -> (n,) outcomes on its adversarial images
    noise: np.ndarray

    def run(
        self,
        seed: int,
        distance: float,
        surrogate: str,
        baseline: str | None = None,
        matched_ratio: float = float("nan"),
    ) -> TransferRun:
        """The measurements a claim rule takes, for one surrogate (and a baseline one)."""
        return TransferRun(
            seed,
            distance,
            self.clean,
            self.white_box.strongest,
            self.transfer[surrogate],
            self.noise,
            None if baseline is None else self.transfer[baseline],
            float(matched_ratio),
        )

    def row(self) -> dict:
        """Accuracies and transfer ratios, for a table."""
        clean, strongest_ = float(np.mean(self.clean)), float(np.mean(self.white_box.strongest))
        row = {
            "clean": clean,
            "PGD": float(np.mean(self.white_box.pgd)),
            "FGSM": float(np.mean(self.white_box.fgsm)),
            "FGSM, smoothed gradient": float(np.mean(self.white_box.fgsm_smoothed)),
            "white-box": strongest_,
            "noise": float(np.mean(self.noise)),
        }
        for name, correct in self.transfer.items():
            row[f"transfer from {name}"] = float(np.mean(correct))
            row[f"ratio, {name}"] = transfer_ratio(clean, np.mean(correct), strongest_)
        return row


def evaluate(
    logits_fn,
    x,
    labels,
    epsilon: float,
    adversarial: Mapping[str, np.ndarray],
    noise_images,
    steps: int = 10,
    sigma: float = 0.1,
    samples: int = 16,
    seed: int = 0,
) -> Evaluation:
    """One network on the clean images, under ``white_box``, on every surrogate's adversarial
    images (``adversarial``: name -> images of the shape of x) and on ``noise_images``."""
    return Evaluation(
        correct_on(logits_fn, x, labels),
        white_box(logits_fn, x, labels, epsilon, steps, sigma, samples, seed),
        {name: correct_on(logits_fn, images, labels) for name, images in adversarial.items()},
        correct_on(logits_fn, noise_images, labels),
    )


def white_box_beats_transfer(evaluation: Evaluation, tolerance: float = 0.03) -> dict:
    """Per surrogate, whether the white-box accuracy is at most the transfer accuracy (plus
    ``tolerance``): a white-box attack weaker than a transferred one is broken."""
    strongest_ = float(np.mean(evaluation.white_box.strongest))
    return {name: strongest_ <= float(np.mean(c)) + tolerance for name, c in evaluation.transfer.items()}


def matched_epsilon(epsilons, accuracy, level: float) -> float:
    """The ε at which an accuracy curve (measured at increasing ``epsilons``) first falls to
    ``level``, by linear interpolation; NaN if it never does, ``epsilons[0]`` if it starts
    there."""
    epsilons, accuracy = np.asarray(epsilons, np.float64), np.asarray(accuracy, np.float64)
    if epsilons.ndim != 1 or epsilons.shape != accuracy.shape or np.any(np.diff(epsilons) <= 0):
        raise ValueError("epsilons must increase and match the accuracies in shape")
    if accuracy[0] <= level:
        return float(epsilons[0])
    below = np.flatnonzero(accuracy <= level)
    if len(below) == 0:
        return float("nan")
    i = below[0]
    a0, a1, e0, e1 = accuracy[i - 1], accuracy[i], epsilons[i - 1], epsilons[i]
    return float(e0 + (a0 - level) / (a0 - a1) * (e1 - e0))


def at_epsilon(epsilons, values, epsilon: float) -> float:
    """A curve measured at ``epsilons``, linearly interpolated at ``epsilon`` (NaN stays NaN)."""
    return float(np.interp(epsilon, epsilons, values)) if np.isfinite(epsilon) else float("nan")


def time_to_loss(predictor, target_loss: float) -> float:
    """The training time t at which the kernel predictor f_t reaches the training loss
    ½·mean((f_t(X) − Y)²) = ``target_loss`` (bisection in log t): the f_t matched to
    networks trained to that loss."""
    k, y = predictor.k_train_train, predictor.y_train

    def loss(t):
        return 0.5 * float(np.mean((k @ predictor.weights(t) - y) ** 2))

    if loss(None) > target_loss:
        raise ValueError(f"even f_∞ does not reach the training loss {target_loss!r}")
    low, high = 1e-6, 1.0
    while loss(high) > target_loss:
        low, high = high, high * 10
    for _ in range(60):
        middle = np.sqrt(low * high)
        low, high = (middle, high) if loss(middle) > target_loss else (low, middle)
    return float(high)


def linear_surrogate(x_train, labels_train, regularisation: float = 1.0) -> Partial:
    """Logistic regression on the pixels (scikit-learn, L2 penalty with C =
    ``regularisation``) as a model x -> logit (n, 1): the baseline surrogate that knows
    nothing of the kernel."""
    from sklearn.linear_model import LogisticRegression

    flat = np.asarray(x_train, np.float64).reshape(len(x_train), -1)
    fit = LogisticRegression(C=regularisation, max_iter=2000).fit(flat, np.asarray(labels_train))
    return Partial(_linear_logits, jnp.asarray(fit.coef_[0], jnp.float32), jnp.asarray(fit.intercept_, jnp.float32))


@jax.jit
def _linear_logits(weights, bias, x):
    return (x.reshape(len(x), -1) @ weights)[:, None] + bias[None]


class ScaledRun(NamedTuple):
    """One network of an α sweep: its scale, seed, training and laziness."""

    alpha: float  # NaN for the linearised control
    seed: int
    net: training.TrainedNet
    laziness: Laziness
    reached: bool  # the training loss reached the target


def train_scaled(
    init_fn,
    apply_fn,
    x,
    y,
    alpha: float | None,
    seed: int,
    learning_rate: float,
    target_loss: float,
    max_steps: int,
    probe,
    chunk: int = 50,
) -> ScaledRun:
    """Initialise the network with ``seed``, train α·(f − f₀) at rate η/α² to
    ``target_loss`` (``train_to_loss``) and measure its laziness on ``probe``.
    ``alpha=None`` trains the linearised network instead (centred as well, at rate η): the
    maximally lazy control, whose kernel cannot move (distance 0, norm ratio 1)."""
    _, params = init_fn(jax.random.PRNGKey(seed), x.shape)
    if alpha is None:
        linear = training.linearised(apply_fn, params)
        model = Partial(_centred_linear, linear, params)
        net = train_to_loss(model, params, x, y, learning_rate, target_loss, max_steps, chunk)
        return ScaledRun(float("nan"), seed, net, Laziness(0.0, 1.0), bool(net.losses[-1] <= target_loss))
    model = scaled(apply_fn, params, alpha)
    net = train_to_loss(model, params, x, y, scaled_learning_rate(learning_rate, alpha), target_loss, max_steps, chunk)
    return ScaledRun(
        float(alpha), seed, net, laziness(apply_fn, params, net.params, probe), bool(net.losses[-1] <= target_loss)
    )


def _centred_linear(linear, params_init, params, x):
    return linear(params, x) - linear(params_init, x)
