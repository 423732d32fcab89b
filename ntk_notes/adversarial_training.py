"""Adversarial training of a small network, epoch by epoch, checkpointed (PAPER.md, claim 7).

``adversarial_train``: plain SGD (optax) on cross-entropy, on clean minibatches
(``standard``) or on their FGSM / PGD versions made against the current parameters
(``fgsm``, ``pgd``), with a deterministic data order under a seed, an optional linear
warm-up of the budget, and optionally the linearised network (``training.linearised``)
from a chosen epoch on. The parameters of every recorded epoch are checkpointed
(``ntk_notes.checkpoints``), so a rerun reuses them and an interrupted run resumes. The
networks are ``architectures.network``'s; what is measured on a run lives in
``ntk_notes.empirical`` (its kernels) and ``ntk_notes.linearisation`` (its accuracy).
"""

from __future__ import annotations

import itertools
from functools import partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.tree_util import Partial

from ntk_notes import attacks, checkpoints, training
from ntk_notes.progress import progress

MODES = ("standard", "fgsm", "pgd")
CHECKPOINT_FORMAT = 2  # 2: the checkpoints module's format (arrays under their own names)
FAST_FGSM_STEP = 1.25  # Wong, Rice & Kolter (2020): FGSM step α = 1.25 ε after a random start
HISTORY_FIELDS = ("loss", "accuracy", "max_perturbation", "pixel_min", "pixel_max")


class EpochHistory(NamedTuple):
    """One entry per trained epoch (index 0 = epoch 1), over the examples trained on
    (adversarial ones under FGSM / PGD training), before each step's update."""

    loss: np.ndarray  # mean training loss
    accuracy: np.ndarray  # training accuracy
    max_perturbation: np.ndarray  # largest |x_adv − x| over all minibatches (ℓ∞); 0 when standard
    pixel_min: np.ndarray  # smallest pixel trained on
    pixel_max: np.ndarray  # largest pixel trained on

    def head(self, epochs: int) -> EpochHistory:
        return EpochHistory(*(a[:epochs] for a in self))


class AdversarialRun(NamedTuple):
    """A run of ``adversarial_train``: parameters at the recorded epochs and all it needs to
    continue (data, settings, checkpoint directory)."""

    apply_fn: object
    x: np.ndarray  # training images
    labels: np.ndarray  # training class indices
    settings: dict  # mode, epsilon, step_size, steps, random_start, learning_rate, batch_size, seed, config
    epochs: np.ndarray  # (R,) recorded epochs, increasing; 0 = initialisation
    params: list  # (R,) parameters at each recorded epoch
    history: EpochHistory  # per trained epoch 1..final
    trained: tuple  # epochs trained by this call (the others were loaded from checkpoints)
    linearise_from_epoch: int | None
    directory: Path | None

    @property
    def final_epoch(self) -> int:
        return int(self.epochs[-1])

    def params_at(self, epoch: int):
        where = np.flatnonzero(self.epochs == epoch)
        if len(where) == 0:
            raise ValueError(f"epoch {epoch!r} was not recorded; recorded: {self.epochs.tolist()}")
        return self.params[int(where[0])]

    def model_at(self, epoch: int) -> Partial:
        """The function (params, x) -> outputs trained during ``epoch`` (and evaluated at its
        end): the network, or its linearisation at the parameters of ``linearise_from_epoch``
        for later epochs."""
        k = self.linearise_from_epoch
        if k is not None and epoch > k:
            return training.linearised(self.apply_fn, self.params_at(k))
        return attacks.as_model(self.apply_fn)

    def logits_fn(self, epoch: int | None = None) -> Partial:
        """x -> outputs of the model at the end of ``epoch`` (default: the last), jitted."""
        epoch = self.final_epoch if epoch is None else epoch
        return Partial(training.call_model, self.model_at(epoch), self.params_at(epoch))


def _minibatches(key, n: int, batch_size: int) -> jnp.ndarray:
    """Rows of each minibatch of an epoch, (B, batch_size): a permutation drawn from ``key``,
    the remainder dropped."""
    n_batches = n // batch_size
    return jax.random.permutation(key, n)[: n_batches * batch_size].reshape(n_batches, batch_size)


@partial(jax.jit, static_argnames=("attack", "steps", "random_start"))
def train_step(model, params, x, labels, rows, learning_rate, epsilon, step_size, key, *, attack, steps, random_start):
    """One SGD step on the minibatch ``rows`` of (x, labels), or under ``attack`` on its PGD
    version (FGSM: one step of size ε) made by the attacks' PGD core against the current
    parameters. Everything that varies between runs of one architecture is an argument: one
    compilation per shape and mode. Returns the new parameters and the step's statistics,
    ``HISTORY_FIELDS``.

    The epoch is a Python loop over this step, not a ``lax.scan``: XLA on CPU runs a
    network's convolution gradients inside a loop far slower (measured: a 28x28 CNN epoch,
    13 s vs 0.3 s). The attack inside the step is ``attacks.pgd``, which unrolls its own
    steps on CPU for the same reason (``attacks.loop_unroll``).
    """
    optimizer = optax.sgd(learning_rate)
    xb, yb = x[rows], labels[rows]
    loss_name = attacks.default_loss(jax.eval_shape(model, params, xb).shape[-1])
    x_train = xb
    if attack:
        x_train, _, _ = attacks.pgd(
            Partial(training.call_model, model, params),
            xb,
            yb,
            epsilon,
            step_size,
            key,
            loss=loss_name,
            norm="linf",
            steps=steps,
            random_start=random_start,
        )

    def loss_fn(p):
        logits = model(p, x_train)
        return jnp.mean(attacks.per_example_loss(loss_name, logits, yb)), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)  # plain SGD: no state to carry
    stats = jnp.stack(
        [
            loss,
            jnp.mean(attacks.is_correct(logits, yb)),
            jnp.max(jnp.abs(x_train - xb)),
            jnp.min(x_train),
            jnp.max(x_train),
        ]
    )
    return optax.apply_updates(params, updates), stats


def _is_epoch(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0


def adversarial_train(
    apply_fn,
    params,
    x,
    labels,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    mode: str = "standard",
    epsilon: float = 0.0,
    step_size: float | None = None,
    steps: int = 10,
    random_start: bool = False,
    warmup_epochs: int = 0,
    seed: int = 0,
    record_epochs=None,
    linearise_from_epoch: int | None = None,
    directory=None,
    config: dict | None = None,
    show_progress: bool | None = None,
    base_run: AdversarialRun | None = None,
) -> AdversarialRun:
    """Train ``apply_fn`` from ``params`` for ``epochs`` epochs of plain SGD (optax.sgd, rate
    ``learning_rate``) on minibatches of ``batch_size``: a fresh permutation of (x, labels)
    each epoch, drawn from ``fold_in(PRNGKey(seed), epoch)`` so that epoch e's order does not
    depend on how the run got there (a resumed or linearised run sees the same batches). The
    loss is the attacks' cross-entropy on the labels (class indices): log(1 + e^{−y f}) with
    y = ±1 for one output, softmax cross-entropy for several (``attacks.per_example_loss``).

    ``mode``: ``standard`` trains on the clean minibatch; ``fgsm`` on x + ε·sign(∇ₓL);
    ``pgd`` on ``steps`` steps of size ``step_size`` (default 2.5 ε / steps, Madry et al.;
    the authors used ε = 8/255, 2/255, 20 steps), each projected onto the ℓ∞ ε-ball and
    [0, 1], from x itself (zero init, as the authors) or a random point (``random_start``).
    FGSM with ``random_start`` is the "fast" adversarial training of Wong, Rice & Kolter
    (2020): a uniform start in the ε-ball and one step of ``step_size`` (default 1.25 ε),
    which avoids the catastrophic overfitting of plain FGSM training. Attacks are made
    against the current parameters of the model being trained. ``warmup_epochs`` = w > 0
    ramps the budget linearly, ε·min(1, e / w) in epoch e (and the step in proportion), so
    that a small network is not asked to be robust before it has learned anything.

    ``record_epochs``: increasing epochs in 0..epochs whose parameters are kept (default all;
    0 and ``epochs`` are always kept). ``linearise_from_epoch=k``: from epoch k + 1 on, the
    model trained is ``training.linearised(apply_fn, θ_k)`` (the authors' ``nt.linearize``
    switch); its parameters are still the full θ.

    ``directory``: every recorded epoch is saved there as ``epoch-EEEE.npz`` (linearised
    epochs under ``linearised-from-KKKK/``) with the run's configuration (these settings,
    sha256s of the data and of the initial parameters, and the caller's ``config``, which
    should name the architecture). A rerun loads them instead of training; a run asked for
    more epochs, or interrupted, trains from the last epoch it finds. A file that cannot be
    trusted is recomputed with a ``CheckpointWarning``. Plain SGD keeps no optimiser state,
    so the parameters are the whole state and a resumed run equals an uninterrupted one.

    ``base_run``: the run being linearised (``linearisation.continue_linearised``), whose
    epochs up to ``linearise_from_epoch`` are taken as they are.
    """
    if mode not in MODES:
        raise ValueError(f"unknown training mode {mode!r}; allowed: {', '.join(MODES)}")
    if not np.isfinite(epsilon) or epsilon < 0:
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    if not attacks.is_count(steps):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if mode == "fgsm":
        steps = 1
        if step_size is None or not random_start:
            step_size = (FAST_FGSM_STEP if random_start else 1.0) * float(epsilon)
    elif step_size is None:
        step_size = attacks.default_step_size(epsilon, steps)
    if not np.isfinite(step_size) or step_size < 0:
        raise ValueError(f"step_size must be a finite number >= 0, got {step_size!r}")
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    if not _is_epoch(epochs):
        raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}")
    if not (attacks.is_count(batch_size) and batch_size <= len(x)):
        raise ValueError(f"batch_size must be an integer in 1..{len(x)}, got {batch_size!r}")
    record = list(range(epochs + 1)) if record_epochs is None else list(record_epochs)
    if not all(_is_epoch(e) and e <= epochs for e in record) or any(b <= a for a, b in itertools.pairwise(record)):
        raise ValueError(f"record_epochs must be strictly increasing integers in 0..{epochs}, got {record_epochs!r}")
    if not _is_epoch(warmup_epochs):
        raise ValueError(f"warmup_epochs must be an integer >= 0, got {warmup_epochs!r}")
    k = linearise_from_epoch
    if k is not None and not (_is_epoch(k) and k <= epochs):
        raise ValueError(f"linearise_from_epoch must be an integer in 0..{epochs} or None, got {k!r}")
    record = sorted(set(record) | {0, epochs} | ({k} if k is not None else set()))
    x = np.asarray(x)
    if x.min(initial=0) < 0 or x.max(initial=0) > 1:
        raise ValueError(f"pixels must lie in [0, 1]; these images span [{x.min():.3g}, {x.max():.3g}]")
    labels = training.check_labels(attacks.as_model(apply_fn), params, x, labels)

    settings = dict(
        mode=mode,
        epsilon=float(epsilon),
        step_size=float(step_size),
        steps=int(steps),
        random_start=bool(random_start),
        warmup_epochs=int(warmup_epochs),
        learning_rate=float(learning_rate),
        batch_size=int(batch_size),
        seed=int(seed),
        config=checkpoints.canonical(config or {}),
    )
    leaves = checkpoints.named_leaves(params)
    base_config = {
        "format": CHECKPOINT_FORMAT,
        **settings,
        "data_sha256": checkpoints.digest({"x": x, "labels": labels}),
        "init_sha256": checkpoints.digest(leaves),
    }
    directory = None if directory is None else Path(directory)
    template = {name: (np.shape(leaf), np.asarray(leaf).dtype) for name, leaf in leaves.items()}

    def run_with(recorded: dict, history: list, trained: tuple) -> AdversarialRun:
        fields = np.array(history, dtype=np.float64).reshape(-1, len(HISTORY_FIELDS)).T
        return AdversarialRun(
            apply_fn,
            x,
            labels,
            settings,
            np.array(sorted(recorded)),
            [recorded[e] for e in sorted(recorded)],
            EpochHistory(*fields),
            trained,
            k,
            directory,
        )

    def file_config(epoch):
        return {**base_config, "epoch": epoch, **({"linearised_from": k} if k is not None and epoch > k else {})}

    def load(epoch):
        if base_run is not None and epoch <= k:  # the base run of a linearisation holds these
            return base_run.params_at(epoch), np.stack(base_run.history.head(epoch), axis=1).tolist()
        if epoch == 0 and directory is None:
            return params, []
        if directory is None:
            return None
        expected = {f"params{n}": spec for n, spec in template.items()}
        expected |= {f"history/{f}": ((epoch,), np.float64) for f in HISTORY_FIELDS}
        path = checkpoints.epoch_path(directory, k, epoch, "epoch")
        saved = checkpoints.load_npz(path, file_config(epoch), expected)
        if saved is None:
            return None
        named = {n: saved[f"params{n}"] for n in template}
        history = np.stack([saved[f"history/{f}"] for f in HISTORY_FIELDS], axis=1).tolist()
        return checkpoints.rebuild(params, named), history

    # Resume from the last recorded epoch before the first one that is missing.
    recorded, history, current = {}, [], None
    for epoch in record:
        found = load(epoch)
        if found is None:
            break
        recorded[epoch], history = found[0], found[1]
        current = epoch
    if current is None:  # not even epoch 0 was saved: start from the given parameters
        current, recorded[0] = 0, params
        if directory is not None:
            _save_epoch(directory, k, 0, params, history, file_config(0))
    state = recorded[current]
    trained = []
    data = jnp.asarray(x), jnp.asarray(labels)
    partial_run = run_with(recorded, history, ())
    with progress(total=epochs - current, desc=f"{mode} training", enabled=show_progress) as bar:
        for epoch in range(current + 1, epochs + 1):
            model = partial_run.model_at(epoch)
            order_key, attack_key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), epoch))
            stats, ramp = [], warmup_ramp(epoch, warmup_epochs)
            for b, rows in enumerate(np.asarray(_minibatches(order_key, len(x), int(batch_size)))):
                state, step_stats = train_step(
                    model,
                    state,
                    *data,
                    rows,
                    learning_rate,
                    ramp * epsilon,
                    ramp * step_size,
                    jax.random.fold_in(attack_key, b),
                    attack=mode != "standard",
                    steps=int(steps),
                    random_start=bool(random_start),
                )
                stats.append(step_stats)
            if not all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(state)):
                raise FloatingPointError(
                    f"training diverged in epoch {epoch} (non-finite parameters); lower learning_rate {learning_rate!r}"
                )
            stats = np.asarray(jnp.stack(stats), dtype=np.float64)
            history.append(
                [stats[:, 0].mean(), stats[:, 1].mean(), stats[:, 2].max(), stats[:, 3].min(), stats[:, 4].max()]
            )
            trained.append(epoch)
            if epoch in record:
                recorded[epoch] = state
                partial_run = run_with(recorded, history, ())
                if directory is not None:
                    _save_epoch(directory, k, epoch, state, history, file_config(epoch))
            bar.update(1)
    return run_with(recorded, history, tuple(trained))


def warmup_ramp(epoch: int, warmup_epochs: int) -> float:
    """The share of the budget ε used in training epoch ``epoch`` (1, 2, …) under a linear
    warm-up over ``warmup_epochs`` epochs: min(1, epoch / warmup_epochs); 1 without warm-up."""
    return 1.0 if warmup_epochs == 0 else min(1.0, epoch / warmup_epochs)


def _save_epoch(directory, k, epoch, params, history, config):
    arrays = {f"params{name}": np.asarray(leaf) for name, leaf in checkpoints.named_leaves(params).items()}
    fields = np.array(history, dtype=np.float64).reshape(-1, len(HISTORY_FIELDS))
    arrays |= {f"history/{f}": fields[:, i] for i, f in enumerate(HISTORY_FIELDS)}
    checkpoints.save_npz(checkpoints.epoch_path(directory, k, epoch, "epoch"), arrays, config)
