"""Finite-width networks trained with optax, and how far they move (laziness).

The MSE loss is the one of ``ntk_notes.predictors``: 0.5 * mean((f(X) - Y)^2) over all
entries, so ``learning_rate * steps`` of full-batch gradient descent is the time ``t`` of
the kernel predictor f_t. Networks can be trained as they are, centred (f − f_0, starting
from the zero function like the kernel predictor) or linearised around their initialisation.
"""

from __future__ import annotations

from functools import lru_cache, partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import neural_tangents as nt
import numpy as np
import optax
from jax.tree_util import Partial

from ntk_notes.attacks import as_model, default_loss, per_example_loss, predicted_class
from ntk_notes.progress import progress

TRAINING_LOSSES = ("mse", "cross_entropy")


class TrainedNet(NamedTuple):
    apply_fn: object  # (params, x) -> outputs, the function that was trained
    params_init: object
    params: object
    losses: np.ndarray  # training loss after every chunk of steps
    learning_rate: float
    steps: int

    @property
    def time(self) -> float:
        """Training time in the kernel predictor's units: learning rate x steps."""
        return self.learning_rate * self.steps

    def logits_fn(self) -> Partial:
        """The trained network as a jit-compiled function x -> outputs (for attacks): a
        ``jax.tree_util.Partial`` whose leaves are the parameters."""
        return Partial(call_model, as_model(self.apply_fn), self.params)


@jax.jit
def call_model(model, params, x):
    """``model(params, x)``, compiled once per model structure and input shape: with
    ``Partial(call_model, model, params)`` a trained model becomes a function x -> outputs
    whose parameters are leaves (arguments), not constants folded into the compiled code."""
    return model(params, x)


def check_labels(model, params, x, labels) -> np.ndarray:
    """``labels`` as an array, checked to be integer class indices (n,) of ``x`` that the
    model's outputs can score (0..C−1 for C outputs, 0..1 for one); ValueError otherwise."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(x) or labels.dtype.kind not in "iu":
        raise ValueError(
            f"labels must be integer class indices of shape ({len(x)},), got {labels.dtype} of shape {labels.shape}"
        )
    n_out = jax.eval_shape(model, params, jnp.asarray(x[:1])).shape[-1]
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= max(n_out, 2):
        raise ValueError(
            f"labels must lie in 0..{max(n_out, 2) - 1} for a network with {n_out} output(s); "
            f"got {labels.min()}..{labels.max()}"
        )
    return labels


def training_loss(loss: str, apply_fn, params, x, y):
    """Mean loss over the examples. ``mse``: 0.5 * mean over all N x C entries of (f - y)²
    (the kernel predictor's convention); ``cross_entropy``: log(1 + e^{-y f}) for one output
    with y = ±1, softmax cross-entropy against one-hot y for several. The formulas are the
    attacks' per-example losses (``ntk_notes.attacks.per_example_loss``)."""
    outputs = apply_fn(params, x)
    labels = predicted_class(y)
    name = "mse" if loss == "mse" else default_loss(y.shape[-1])
    return jnp.mean(per_example_loss(name, outputs, labels))


def centred(apply_fn, params_init) -> Partial:
    """f(x; θ) − f(x; θ₀): the network with its random initial function removed, so that it
    starts at f_0 = 0 like the kernel predictor (Hu et al. 2020; Chizat et al. 2019).

    Like every model here it is a ``jax.tree_util.Partial`` with θ₀ as a leaf, so compiled
    training and attacks take θ₀ as an argument instead of folding f(X; θ₀) in as a constant.
    """
    return Partial(_centred_fn(apply_fn), params_init)


@lru_cache(maxsize=64)
def _centred_fn(apply_fn):
    return lambda params_init, params, x: apply_fn(params, x) - apply_fn(params_init, x)


def linearised(apply_fn, params_init) -> Partial:
    """The first-order Taylor expansion of the network in its parameters around θ₀
    (``nt.linearize``): gradient descent on it is exactly kernel regression with the
    empirical NTK at θ₀, the ideal lazy network. A ``Partial`` with θ₀ as a leaf."""
    return Partial(_linearised_fn(apply_fn), params_init)


@lru_cache(maxsize=64)
def _linearised_fn(apply_fn):
    return lambda params_init, params, x: nt.linearize(apply_fn, params_init)(params, x)


def train(
    apply_fn,
    params,
    x,
    y,
    learning_rate: float,
    steps: int,
    loss: str = "mse",
    batch_size: int | None = None,
    seed: int = 0,
    chunk: int = 50,
    show_progress: bool | None = None,
) -> TrainedNet:
    """Gradient descent (optax.sgd) on ``loss`` for ``steps`` steps: full-batch when
    ``batch_size`` is None, else SGD on minibatches of ``batch_size`` drawn from a fresh
    permutation of the training set every epoch (seeded by ``seed``; the remainder of an epoch
    is dropped). ``y`` holds the targets (±1 in one column, or one-hot).

    Steps run inside ``lax.scan`` in chunks of ``chunk`` (one compiled loop, a progress
    tick and a recorded full-batch loss per chunk).
    """
    if loss not in TRAINING_LOSSES:
        raise ValueError(f"unknown training loss {loss!r}; allowed: {', '.join(TRAINING_LOSSES)}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    if y.ndim != 2 or len(y) != len(x):
        raise ValueError(f"targets must have shape ({len(x)}, C), got {tuple(y.shape)}")
    n = len(x)
    if batch_size is not None and not (isinstance(batch_size, int) and 1 <= batch_size <= n):
        raise ValueError(f"batch_size must be None (full batch) or an integer in 1..{n}, got {batch_size!r}")
    model = as_model(apply_fn)
    state = optax.sgd(learning_rate).init(params)
    key = jax.random.PRNGKey(seed)
    params_init, losses, done = params, [], 0
    with progress(total=steps, desc="training", enabled=show_progress) as bar:
        while done < steps:
            length = min(chunk, steps - done)
            params, state, value = _train_chunk(
                model, params, state, x, y, learning_rate, key, done, length=length, loss=loss, batch_size=batch_size
            )
            losses.append(float(value))
            done += length
            bar.update(length)
    return TrainedNet(apply_fn, params_init, params, np.asarray(losses), learning_rate, steps)


@partial(jax.jit, static_argnames=("length", "loss", "batch_size"))
def _train_chunk(model, params, state, x, y, learning_rate, key, first_step, *, length, loss, batch_size):
    """``length`` steps of ``train``: model, data and rate are arguments, so one compilation
    serves every call with the same shapes (all seeds of a width, every chunk)."""
    optimizer = optax.sgd(learning_rate)
    n = len(x)
    batches_per_epoch = 1 if batch_size is None else n // batch_size

    def minibatch(step):
        if batch_size is None:
            return x, y
        order = jax.random.permutation(jax.random.fold_in(key, step // batches_per_epoch), n)
        rows = jax.lax.dynamic_slice(order, ((step % batches_per_epoch) * batch_size,), (batch_size,))
        return x[rows], y[rows]

    def step(carry, i):
        params, state = carry
        grads = jax.grad(lambda p: training_loss(loss, model, p, *minibatch(i)))(params)
        updates, state = optimizer.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, state), _ = jax.lax.scan(step, (params, state), first_step + jnp.arange(length))
    return params, state, training_loss(loss, model, params, x, y)


def stable_learning_rate(k_train_train, n_outputs: int = 1, fraction: float = 1.0) -> float:
    """A learning rate with η λ_max / (N C) = ``fraction`` (gradient descent on our MSE loss
    is stable below 2), from the infinite-width kernel's largest eigenvalue."""
    k = np.asarray(k_train_train, dtype=np.float64)
    return float(fraction * k.shape[0] * n_outputs / np.linalg.eigvalsh(k)[-1])
