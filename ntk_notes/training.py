"""Finite-width networks trained with optax, and how far they move (laziness).

The loss is the one of ``ntk_notes.kernels``: 0.5 * mean((f(X) - Y)^2) over all entries,
so ``learning_rate * steps`` of full-batch gradient descent is the time ``t`` of the
kernel predictor f_t.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import neural_tangents as nt
import numpy as np
import optax

from ntk_notes.progress import progress


class TrainedNet(NamedTuple):
    params_init: object
    params: object
    losses: np.ndarray  # training loss after every chunk of steps
    learning_rate: float
    steps: int

    @property
    def time(self) -> float:
        """Training time in the kernel predictor's units: learning rate x steps."""
        return self.learning_rate * self.steps


def mse_loss(apply_fn, params, x, y):
    return 0.5 * jnp.mean((apply_fn(params, x) - y) ** 2)


def train_full_batch(apply_fn, params, x, y, learning_rate: float, steps: int, chunk: int = 50,
                     show_progress: bool | None = None) -> TrainedNet:
    """Full-batch gradient descent (optax.sgd) on the MSE loss for ``steps`` steps.

    Steps run inside ``lax.scan`` in chunks of ``chunk`` (one compiled loop, a progress
    tick and a recorded loss per chunk).
    """
    if learning_rate <= 0 or steps < 0:
        raise ValueError(f"need learning_rate > 0 and steps >= 0, got {learning_rate!r} and {steps!r}")
    optimizer = optax.sgd(learning_rate)
    grad = jax.grad(lambda p: mse_loss(apply_fn, p, x, y))

    @partial(jax.jit, static_argnums=2)  # at most two compilations: chunk and the remainder
    def run(params, state, n):
        def step(carry, _):
            params, state = carry
            updates, state = optimizer.update(grad(params), state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, state), _ = jax.lax.scan(step, (params, state), None, length=n)
        return params, state, mse_loss(apply_fn, params, x, y)

    params_init, state, losses, done = params, optimizer.init(params), [], 0
    with progress(total=steps, desc="training", enabled=show_progress) as bar:
        while done < steps:
            n = min(chunk, steps - done)
            params, state, loss = run(params, state, n)
            losses.append(float(loss))
            done += n
            bar.update(n)
    return TrainedNet(params_init, params, np.asarray(losses), learning_rate, steps)


def stable_learning_rate(k_train_train, n_outputs: int = 1, fraction: float = 1.0) -> float:
    """A learning rate with η λ_max / (N C) = ``fraction`` (gradient descent on our MSE loss
    is stable below 2), from the infinite-width kernel's largest eigenvalue."""
    k = np.asarray(k_train_train, dtype=np.float64)
    return float(fraction * k.shape[0] * n_outputs / np.linalg.eigvalsh(k)[-1])


def relative_change(a, b) -> float:
    """‖b − a‖ / ‖a‖ over all leaves of two pytrees (parameters, or kernels)."""
    diff = sum(float(jnp.sum((u - v) ** 2)) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    norm = sum(float(jnp.sum(u ** 2)) for u in jax.tree.leaves(a))
    return (diff / norm) ** 0.5


def empirical_ntk(apply_fn, params, x1, x2=None):
    """The empirical NTK of a single-output (or traced) network, shape (n1, n2)."""
    fn = nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0,
                             implementation=nt.NtkImplementation.JACOBIAN_CONTRACTION)
    return np.asarray(jax.jit(fn)(x1, x2, params))
