"""Adversarial attacks on any JAX function from inputs to logits.

A model here is any ``logits_fn: x (n, ...) -> logits (n, C)``: one logit (a binary task,
positive = class 1) or C logits (class = argmax). It must treat examples independently (no
batch statistics), so the gradient of the summed loss is every example's own gradient.
Labels are class indices. Inputs are images with pixels in [0, 1]; every adversarial image
stays inside the ε-ball around its clean image and inside [0, 1].

- FGSM: one step of size ε along sign(∇ₓL) (ℓ∞) or ∇ₓL/‖∇ₓL‖ (ℓ2).
- PGD: ``steps`` such steps of ``step_size`` (default 2.5 ε / steps, Madry et al.), each
  followed by projection onto the ε-ball and clipping to [0, 1]; optional random start;
  ``restarts`` keeps, per example, the worst case (misclassified first, then highest loss).
  Its steps run in a ``lax.scan``, unrolled where that is faster (``loop_unroll``).
- noise: a random perturbation of the same size (random signs for ℓ∞, a random direction
  for ℓ2), the baseline an attack must beat by far.
"""

from __future__ import annotations

import os
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Literal
from jax.tree_util import Partial

from ntk_notes.progress import progress

NORMS = ("linf", "l2")
LOSSES = ("softmax_cross_entropy", "binary_cross_entropy", "margin", "mse")
METHODS = ("fgsm", "pgd", "noise")


def default_loss(n_outputs: int) -> str:
    """The paper's choice: binary cross-entropy on one logit, softmax cross-entropy on many."""
    return "binary_cross_entropy" if n_outputs == 1 else "softmax_cross_entropy"


def targets_from_labels(labels, n_outputs: int) -> jnp.ndarray:
    """Regression targets of class indices: ±1 in one column (binary), else one-hot."""
    labels = jnp.asarray(labels)
    if n_outputs == 1:
        return (2.0 * labels - 1.0)[:, None]
    return jax.nn.one_hot(labels, n_outputs)


def per_example_loss(loss: str, logits, labels) -> jnp.ndarray:
    """The loss of each example, shape (n,); an attack increases it.

    - ``binary_cross_entropy``: log(1 + e^{-y f}) with y = ±1 (one logit);
    - ``softmax_cross_entropy``: -log softmax(f)_label (C logits);
    - ``margin``: -y f (one logit) or max_{j≠label} f_j - f_label (C logits); > 0 means wrong;
    - ``mse``: 0.5 * mean over outputs of (f - target)², targets as ``targets_from_labels``.
    """
    n_outputs = logits.shape[-1]
    targets = targets_from_labels(labels, n_outputs)
    if loss == "binary_cross_entropy":
        if n_outputs != 1:
            raise ValueError(
                f"binary_cross_entropy needs one logit, the model gives {n_outputs}; use softmax_cross_entropy"
            )
        return jax.nn.softplus(-targets[:, 0] * logits[:, 0])
    if loss == "softmax_cross_entropy":
        if n_outputs == 1:
            raise ValueError(
                "softmax_cross_entropy needs at least two logits, the model gives one; use binary_cross_entropy"
            )
        return -jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1)
    if loss == "margin":
        if n_outputs == 1:
            return -targets[:, 0] * logits[:, 0]
        true_logit = jnp.sum(targets * logits, axis=-1)
        return jnp.max(jnp.where(targets > 0, -jnp.inf, logits), axis=-1) - true_logit
    if loss == "mse":
        return 0.5 * jnp.mean((logits - targets) ** 2, axis=-1)
    raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")


def predicted_class(logits):
    """The class each row of ``logits`` (n, C) predicts: 1 where the one logit is > 0 (else 0),
    or the argmax of C logits. NumPy in, NumPy out (in the input's precision); anything else
    (jax arrays, tracers) goes through jax.numpy."""
    xp = np if isinstance(logits, np.ndarray) else jnp
    return (logits[:, 0] > 0).astype(xp.int32) if logits.shape[-1] == 1 else xp.argmax(logits, -1)


def is_correct(logits, labels):
    """Whether each prediction is right, (n,) bool: ``predicted_class(logits) == labels``."""
    return predicted_class(logits) == (np if isinstance(logits, np.ndarray) else jnp).asarray(labels)


def accuracy(outputs, labels) -> float:
    """The fraction of right predictions, the mean of ``is_correct``: outputs (n, 1) thresholded
    at 0, or (n, C) by argmax, against class indices."""
    return float(np.mean(is_correct(np.asarray(outputs), labels)))


def as_model(logits_fn) -> Partial:
    """``logits_fn`` as a ``jax.tree_util.Partial``, the form the jitted attacks take: arrays it
    holds as leaves (a kernel predictor's training set and weights, a network's parameters)
    are passed to the compiled attack as arguments, not folded in as constants; the function
    itself is the compilation's key."""
    return logits_fn if isinstance(logits_fn, Partial) else Partial(logits_fn)


def _per_example_norm(v, norm: str):
    flat = v.reshape(len(v), -1)
    return jnp.max(jnp.abs(flat), axis=1) if norm == "linf" else jnp.linalg.norm(flat, axis=1)


def _expand(v, like):
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def direction(g, norm: str):
    """The steepest-ascent unit step for the gradients g (one per example) in the given norm:
    sign(g) for ℓ∞, g / ‖g‖₂ per example for ℓ2."""
    if norm == "linf":
        return jnp.sign(g)
    return g / _expand(jnp.maximum(_per_example_norm(g, "l2"), 1e-12), g)


def project(x, x_adv, epsilon, norm: str):
    """x_adv moved into the ε-ball around x, then into [0, 1] (clipping to the box only
    shrinks each coordinate of the perturbation, so it stays in the ball)."""
    delta = x_adv - x
    if norm == "linf":
        delta = jnp.clip(delta, -epsilon, epsilon)
    else:
        size = _per_example_norm(delta, "l2")
        delta = delta * _expand(jnp.minimum(1.0, epsilon / jnp.maximum(size, 1e-12)), delta)
    return jnp.clip(x + delta, 0.0, 1.0)


def random_in_ball(key, x, epsilon, norm: str, on_sphere: bool):
    """A random perturbation of x: uniform in the ε-ball, or on its surface (random signs for
    ℓ∞, a uniform direction of length ε for ℓ2), clipped to [0, 1]."""
    if norm == "linf":
        step = (
            jax.random.rademacher(key, x.shape, x.dtype)
            if on_sphere
            else jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0)
        )
        return jnp.clip(x + epsilon * step, 0.0, 1.0)
    key_dir, key_radius = jax.random.split(key)
    unit = direction(jax.random.normal(key_dir, x.shape, x.dtype), "l2")
    if on_sphere:
        radius = jnp.ones((len(x),), x.dtype)
    else:
        dim = x[0].size
        radius = jax.random.uniform(key_radius, (len(x),), x.dtype) ** (1.0 / dim)
    return project(x, x + epsilon * _expand(radius, x) * unit, epsilon, norm)


def default_step_size(epsilon, steps: int):
    """PGD's step when none is given: 2.5 ε / steps (Madry et al.), so that the steps
    together could cross the ball and back."""
    return 2.5 * epsilon / steps


def step_plan(method: str, epsilon, steps: int, step_size=None, random_start: bool = False):
    """The PGD run an attack ``method`` means, as (steps, step_size, random_start): FGSM is
    one PGD step of size ε from x; PGD is ``steps`` steps of ``step_size`` (None:
    ``default_step_size``) with the given ``random_start``."""
    if method == "fgsm":
        return 1, epsilon, False
    return steps, default_step_size(epsilon, steps) if step_size is None else step_size, random_start


# The PGD loop's form, chosen by measurement (benchmarks/bench_dynamics.py loop; 28x28 MNIST,
# 2 CPU cores). XLA on CPU runs a network's input gradient through a convolution slower inside
# a while loop (lax.scan, fori_loop, even a scan of one step) than unrolled: in the loop, the
# transposed convolution keeps a filter layout Eigen does not take and falls back to generated
# code. With XLA's CPU optimisations (the default) that costs the chapter's CNN 1.2-1.4x at
# PGD-10 on an idle machine (unrolled, it runs at the floor of ten gradient calls), 1.8-2.4x
# at load 9-16; without them (--xla_backend_optimization_level=0 in XLA_FLAGS, as the tests
# and CI's smoke build compile) 39-64x. A
# chunked scan (unroll=k < steps) keeps the loop and the slowness. Without such convolutions
# (MLPs, FC and conv NTK predictors) the scan is as fast or faster (0.3-1.0x: it hoists the
# work on the training set out of the loop). Unrolling compiles in time growing faster than
# the steps (CNN, batch 50, optimised: +0.1-3 s at 10 steps, +0.5-7 s at 20, +3-37 s at 50,
# against 0.03-1.6 s saved per call at 20 and 50): worth it up to 20 steps (the book's network
# attacks: 3, 10, 20 steps, called many times); without optimisations always (50 steps: +1.5 s
# once, 23 s saved per call).
MAX_UNROLLED_STEPS = 20  # beyond, the extra compilation outweighs the gain of all but many calls


def uses_convolution(logits_fn, x) -> bool:
    """Whether ``logits_fn`` at inputs shaped like ``x`` convolves with a filter made from its
    own arrays (a network's weights: the case the loop rule is about), traced for shapes only.
    A filter built inside (the ones-filters of neural-tangents' Myrtle kernels) does not count."""

    def convolves(jaxpr, from_model) -> bool:  # from_model: variables computed from the model's arrays
        held = lambda v: not isinstance(v, Literal) and v in from_model  # noqa: E731 (literals: unhashable)
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "conv_general_dilated" and held(eqn.invars[1]):
                return True
            for param in eqn.params.values():
                for sub in param if isinstance(param, (tuple, list)) else (param,):
                    sub = getattr(sub, "jaxpr", sub)  # a closed jaxpr holds its jaxpr
                    if hasattr(sub, "eqns"):  # a nested call: its inputs are the equation's, in order
                        mapped = len(sub.invars) == len(eqn.invars)
                        inner = {w for w, v in zip(sub.invars, eqn.invars) if mapped and held(v)}
                        if convolves(sub, inner):
                            return True
            if any(map(held, eqn.invars)):
                from_model |= set(eqn.outvars)
        return False

    model, z = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), (as_model(logits_fn), x))
    jaxpr = jax.make_jaxpr(lambda leaves, z: jax.tree.unflatten(jax.tree.structure(model), leaves)(z))(
        jax.tree.leaves(model), z
    ).jaxpr
    return convolves(jaxpr, set(jaxpr.invars[: len(jax.tree.leaves(model))]))


def xla_cpu_optimised() -> bool:
    """Whether XLA compiles CPU code with its optimisations: not when ``XLA_FLAGS`` holds
    ``--xla_backend_optimization_level=0`` (as the tests set it, before jax starts)."""
    return "--xla_backend_optimization_level=0" not in os.environ.get("XLA_FLAGS", "").split()


def loop_unroll(steps: int, backend: str, convolutional: bool, optimised: bool = True) -> int:
    """How many PGD steps ``pgd`` puts in one iteration of its ``lax.scan``: ``steps`` (no
    loop at all) on CPU for a convolutional model, up to ``MAX_UNROLLED_STEPS`` steps if XLA
    ``optimised`` its CPU code, else 1 (a rolled loop: on CPU for models without convolutions
    and for long attacks, and on GPU and TPU, where loops are cheap; not measured here, no
    GPU). See the measurements above."""
    if not is_count(steps):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if backend == "cpu" and convolutional and (steps <= MAX_UNROLLED_STEPS or not optimised):
        return int(steps)
    return 1


@partial(jax.jit, static_argnames=("loss", "norm", "steps", "random_start", "unroll"))
def pgd(logits_fn, x, labels, epsilon, step_size, key, *, loss, norm, steps, random_start, unroll=None):
    """One run of PGD: ``steps`` steps of ``step_size`` along ``direction`` of the summed
    ``loss``'s gradient, each followed by ``project``, from a random point of the ball if
    ``random_start`` (``step_plan`` gives FGSM as one step). ``logits_fn``: a ``Partial``
    (``as_model``). ``unroll``: steps per iteration of the loop (``steps`` or more: no loop);
    None chooses by ``loop_unroll`` for the default backend. Returns the adversarial images,
    their per-example loss and correctness."""
    if unroll is None:
        unroll = loop_unroll(steps, jax.default_backend(), uses_convolution(logits_fn, x), xla_cpu_optimised())
    if not is_count(unroll):
        raise ValueError(f"unroll must be a positive integer or None, got {unroll!r}")
    total_loss = lambda z: jnp.sum(per_example_loss(loss, logits_fn(z), labels))  # noqa: E731
    x_adv = random_in_ball(key, x, epsilon, norm, on_sphere=False) if random_start else x

    def step(x_adv, _):
        x_adv = x_adv + step_size * direction(jax.grad(total_loss)(x_adv), norm)
        return project(x, x_adv, epsilon, norm), None

    if unroll >= steps:  # no loop: even a scan of one step compiles to a while loop (FGSM is one step)
        for _ in range(steps):
            x_adv, _ = step(x_adv, None)
    else:
        x_adv, _ = jax.lax.scan(step, x_adv, None, length=steps, unroll=unroll)
    logits = logits_fn(x_adv)
    return x_adv, per_example_loss(loss, logits, labels), is_correct(logits, labels)


@partial(jax.jit, static_argnames=("loss", "norm"))
def _noise(logits_fn, x, labels, epsilon, key, *, loss, norm):
    x_adv = random_in_ball(key, x, epsilon, norm, on_sphere=True)
    logits = logits_fn(x_adv)
    return x_adv, per_example_loss(loss, logits, labels), is_correct(logits, labels)


class AttackResult(NamedTuple):
    x_adv: np.ndarray  # adversarial images, the shape of x
    correct: np.ndarray  # (n,) bool: still classified correctly
    loss: np.ndarray  # (n,) the attack loss at x_adv

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.correct))


def is_count(value) -> bool:
    """Whether ``value`` is a positive integer (a bool is not)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def validate(logits_fn, x, labels, epsilon, method, norm, loss, steps, restarts, batch_size):
    """Check an attack's arguments (a ValueError naming the first bad one); returns the
    labels as a NumPy array and the loss (None: ``default_loss`` of the model's outputs)."""
    if method not in METHODS:
        raise ValueError(f"unknown attack method {method!r}; allowed: {', '.join(METHODS)}")
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; allowed: {', '.join(NORMS)}")
    if not np.isfinite(epsilon) or epsilon < 0:
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    for name, value in [("steps", steps), ("restarts", restarts), ("batch_size", batch_size)]:
        if not is_count(value):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(x):
        raise ValueError(f"labels must be class indices of shape ({len(x)},), got shape {labels.shape}")
    low, high = float(jnp.min(x)), float(jnp.max(x))
    if low < 0 or high > 1:
        raise ValueError(f"pixels must lie in [0, 1]; these inputs span [{low:.3g}, {high:.3g}]")
    n_outputs = jax.eval_shape(logits_fn, x).shape[-1]  # shapes only: nothing is computed
    loss = default_loss(n_outputs) if loss is None else loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")
    if labels.max(initial=0) >= max(n_outputs, 2) or labels.min(initial=0) < 0:
        raise ValueError(
            f"labels must lie in 0..{max(n_outputs, 2) - 1} for a model with {n_outputs} "
            f"output(s); got {labels.min()}..{labels.max()}"
        )
    return labels, loss


def _pad(a, size: int):
    extra = size - len(a)
    return a if extra == 0 else jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)])


def attack(
    logits_fn,
    x,
    labels,
    epsilon: float,
    method: str = "pgd",
    norm: str = "linf",
    loss: str | None = None,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = False,
    restarts: int = 1,
    seed: int = 0,
    batch_size: int = 500,
    show_progress: bool | None = None,
) -> AttackResult:
    """Attack ``logits_fn`` at the inputs ``x`` (pixels in [0, 1]) with true ``labels``.

    ``method``: ``fgsm``, ``pgd`` or ``noise``; ``norm``: ``linf`` or ``l2``; ``loss``: one of
    ``LOSSES`` (default: binary / softmax cross-entropy). ``step_size`` (PGD) defaults to
    2.5 ε / steps. ``restarts`` > 1 runs PGD (with random start) or noise again with new keys
    and keeps each example's worst case. Inputs go through in batches of ``batch_size``
    (one compilation: the last batch is padded). Returns an ``AttackResult``: the
    adversarial images, whether each is still classified correctly, and its loss.

    A one-logit model whose logit is the pixel sum minus 1, at two images of class 1 and 0:
    FGSM of size 0.15 lowers every pixel of the first and raises every pixel of the second.

    >>> import jax.numpy as jnp
    >>> logits_fn = lambda x: x.sum(1, keepdims=True) - 1.0
    >>> x = jnp.array([[0.6, 0.6], [0.3, 0.2]])
    >>> result = attack(logits_fn, x, [1, 0], 0.15, "fgsm")
    >>> [[round(float(p), 2) for p in image] for image in result.x_adv]
    [[0.45, 0.45], [0.45, 0.35]]
    >>> result.correct.tolist(), result.accuracy
    ([False, True], 0.5)
    """
    x, logits_fn = jnp.asarray(x), as_model(logits_fn)
    labels, loss = validate(logits_fn, x, labels, epsilon, method, norm, loss, steps, restarts, batch_size)
    steps, restarts, batch_size = int(steps), int(restarts), int(batch_size)
    steps, step_size, random_start = step_plan(method, epsilon, steps, step_size, random_start)
    if not np.isfinite(step_size) or step_size < 0:
        raise ValueError(f"step_size must be a finite number >= 0, got {step_size!r}")
    if method != "noise" and not random_start:
        restarts = 1  # without a random start every restart is the same deterministic run
    batch_size = min(batch_size, len(x))
    starts = range(0, len(x), batch_size)
    if show_progress is None and len(starts) * restarts <= 8:
        show_progress = False
    keys = jax.random.split(jax.random.PRNGKey(seed), restarts)
    best = None
    for restart, start in progress(
        [(r, s) for r in range(restarts) for s in starts], desc=f"{method} ε={epsilon:.3g}", enabled=show_progress
    ):
        xb = _pad(x[start : start + batch_size], batch_size)
        yb = _pad(jnp.asarray(labels[start : start + batch_size]), batch_size)
        key = jax.random.fold_in(keys[restart], start)
        if method == "noise":
            out = _noise(logits_fn, xb, yb, epsilon, key, loss=loss, norm=norm)
        else:
            out = pgd(
                logits_fn, xb, yb, epsilon, step_size, key, loss=loss, norm=norm, steps=steps, random_start=random_start
            )
        n = min(batch_size, len(x) - start)
        x_adv, loss_b, correct_b = (np.asarray(a)[:n] for a in out)
        if best is None:
            best = AttackResult(np.empty(x.shape, x_adv.dtype), np.empty(len(x), bool), np.empty(len(x), loss_b.dtype))
        rows = slice(start, start + n)
        if restart == 0:
            replace = np.ones(n, bool)
        else:  # keep the worst case: a misclassified example beats a correct one, then the higher loss
            old_wrong, new_wrong = ~best.correct[rows], ~correct_b
            replace = (new_wrong & ~old_wrong) | ((new_wrong == old_wrong) & (loss_b > best.loss[rows]))
        best.x_adv[rows][replace] = x_adv[replace]
        best.correct[rows][replace] = correct_b[replace]
        best.loss[rows][replace] = loss_b[replace]
    return best
