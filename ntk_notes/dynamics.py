"""How training, standard or adversarial, moves a network's empirical NTK (PAPER.md, claim 7).

- ``network``: a small CNN and an MLP (neural-tangents ``stax``, standard parameterization).
- ``adversarial_train``: plain SGD (optax) on cross-entropy, on clean minibatches
  (``standard``) or on their FGSM / PGD versions made against the current parameters
  (``fgsm``, ``pgd``), with a deterministic data order under a seed; optionally the
  linearised network (``ntk_notes.training.linearised``) from a chosen epoch on. Parameters
  are checkpointed as .npz so a rerun reuses them and an interrupted run resumes.
- ``empirical_ntk`` / ``choose_ntk_implementation`` / ``kernel_trajectory``: the empirical
  NTK on a fixed probe batch, clean and attacked, at the recorded epochs, by the fastest of
  neural-tangents' implementations that agree.
- Metrics of a sequence of kernels K_0 … K_T (PAPER.md, "Kernel dynamics"), with
  ⟨A, B⟩ = Tr(ABᵀ) and ‖·‖ the Frobenius norm: similarity s(K₁, K₂) = ⟨K₁, K₂⟩ / (‖K₁‖ ‖K₂‖),
  kernel distance S = 1 − s, velocity S(K_t, K_{t+1}), the polar trajectory, top-k spectral
  mass, relative change, kernel–target alignment and label energy.
- ``ablation``: continue training the linearised network from epoch k, for several k.

Kernel layout. ``trace=True`` averages over the outputs (neural-tangents' ``trace_axes``
convention, (1/C) Σ_c Θ_cc, comparable to the infinite-width kernel): K has shape (n, n). The full kernel
(``trace=False``) keeps every pair of outputs, shape (n·C, n·C), row ``i·C + c`` being
example i, output c (example-major); its targets are Y (n, C) flattened the same way,
``Y.reshape(-1)``. With one output both are the same (n, n) matrix.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
import warnings
import zipfile
import zlib
from functools import lru_cache, partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import neural_tangents as nt
import numpy as np
import optax
import pandas as pd
from jax.tree_util import Partial
from neural_tangents import stax

from ntk_notes import attacks, spectral, training
from ntk_notes.progress import progress

MODES = ("standard", "fgsm", "pgd")
IMPLEMENTATIONS = {
    "jacobian_contraction": nt.NtkImplementation.JACOBIAN_CONTRACTION,
    "ntk_vector_products": nt.NtkImplementation.NTK_VECTOR_PRODUCTS,
    "structured_derivatives": nt.NtkImplementation.STRUCTURED_DERIVATIVES,
}
AGREEMENT_RTOL = 1e-4  # relative Frobenius difference allowed between two implementations
CHECKPOINT_FORMAT = 1
FAST_FGSM_STEP = 1.25  # Wong, Rice & Kolter (2020): FGSM step α = 1.25 ε after a random start
HISTORY_FIELDS = ("loss", "accuracy", "max_perturbation", "pixel_min", "pixel_max")


# ------------------------------------------------------------------------- architectures


def _cnn(n_out: int, widths: tuple[int, ...], W_std: float, b_std: float) -> list:
    if len(widths) != 3:
        raise ValueError(f"the CNN has three conv layers: widths must have 3 entries, got {widths!r}")
    conv = lambda width, stride: stax.Conv(width, (3, 3), strides=(stride, stride), padding="SAME",  # noqa: E731
                                           W_std=W_std, b_std=b_std, parameterization="standard")
    return [conv(widths[0], 1), stax.Relu(), conv(widths[1], 2), stax.Relu(), conv(widths[2], 2), stax.Relu(),
            stax.Flatten(), stax.Dense(n_out, W_std, b_std, parameterization="standard")]


def _authors_cnn(n_out: int, widths: tuple[int, ...], W_std: float, b_std: float) -> list:
    """The authors' 6-conv CIFAR-10 network (PAPER.md), with 2x2 average pooling where they
    max-pool (stax has no max pooling)."""
    if len(widths) != 6:
        raise ValueError(f"the authors' CNN has six conv layers: widths must have 6 entries, got {widths!r}")
    conv = lambda width: [stax.Conv(width, (3, 3), padding="SAME", W_std=W_std, b_std=b_std,  # noqa: E731
                                    parameterization="standard"), stax.Relu()]
    pool = stax.AvgPool((2, 2), strides=(2, 2))
    return [*conv(widths[0]), *conv(widths[1]), pool, *[layer for w in widths[2:] for layer in conv(w)], pool,
            stax.Flatten(), stax.Dense(n_out, W_std, b_std, parameterization="standard")]


def _mlp(n_out: int, widths: tuple[int, ...], W_std: float, b_std: float) -> list:
    dense = lambda width: stax.Dense(width, W_std, b_std, parameterization="standard")  # noqa: E731
    hidden = [layer for width in widths for layer in (dense(width), stax.Relu())]
    return [stax.Flatten()] + hidden + [dense(n_out)]


NETWORKS = {"cnn": (_cnn, (32, 32, 64)), "mlp": (_mlp, (256, 256)),
            "authors_cnn": (_authors_cnn, (32, 32, 64, 64, 128, 128))}  # name -> (layers, default widths)


def network(name: str, n_out: int = 1, widths=None, W_std: float = 2 ** 0.5, b_std: float = 0.1):
    """The stax triple ``(init_fn, apply_fn, kernel_fn)`` of a small trainable network, in the
    standard parameterization (weights ~ N(0, W_std² / fan_in), the way networks are
    trained in practice; ``ntk_notes.kernels`` uses the NTK parameterization for kernels):

    - ``cnn``: Conv(w₁, 3x3) → Relu → Conv(w₂, 3x3, stride 2) → Relu → Conv(w₃, 3x3, stride 2)
      → Relu → Flatten → Dense(n_out), all convolutions SAME; default widths (32, 32, 64);
    - ``mlp``: Flatten → [Dense(w) → Relu] per width → Dense(n_out); default (256, 256);
    - ``authors_cnn``: the authors' CIFAR-10 CNN, Conv(w₁) → Conv(w₂) → AvgPool 2 → Conv(w₃)
      → Conv(w₄) → Conv(w₅) → Conv(w₆) → AvgPool 2 → Flatten → Dense(n_out), 3x3 SAME
      convolutions each followed by Relu, default widths (32, 32, 64, 64, 128, 128)
      (about 0.37 M parameters on 32x32x3 images, 10 outputs); they max-pooled.

    ``apply_fn(params, x)`` maps images (n, H, W, channels) to outputs (n, n_out).
    """
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; allowed: {', '.join(NETWORKS)}")
    widths = NETWORKS[name][1] if widths is None else tuple(widths)
    if not widths or not all(attacks._is_count(w) for w in widths):
        raise ValueError(f"widths must be positive integers, got {widths!r}")
    if not attacks._is_count(n_out):
        raise ValueError(f"n_out must be a positive integer, got {n_out!r}")
    return _network(name, int(n_out), tuple(int(w) for w in widths), float(W_std), float(b_std))


@lru_cache(maxsize=64)  # the same spec gives the same functions, so compiled code is reused
def _network(name, n_out, widths, W_std, b_std):
    return stax.serial(*NETWORKS[name][0](n_out, widths, W_std, b_std))


# ------------------------------------------------------------------------- checkpoints


class CheckpointWarning(UserWarning):
    """A saved file was not trusted (unreadable, altered, another configuration, wrong
    shapes, non-finite values) and is being computed again."""


def _digest(arrays: dict, text: str = "") -> str:
    """sha256 of named arrays (name, dtype, shape and bytes of each, in name order) and a text."""
    h = hashlib.sha256(text.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _canonical(config: dict) -> dict:
    """The config as it reads back from JSON (tuples become lists); fails now if unsavable."""
    return json.loads(json.dumps(config, sort_keys=True))


def save_npz(path, arrays: dict, config: dict) -> None:
    """Write named arrays and a JSON config to ``path`` (.npz, no pickle), with a sha256 of
    both, atomically: a private temporary file (named with the pid) renamed into place, so a
    crash never leaves a half-written file under the real name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(arrays)
    arrays = {name: np.asarray(arrays[name]) for name in names}
    text = json.dumps(_canonical(config), sort_keys=True)
    meta = json.dumps({"names": names, "config": json.loads(text), "sha256": _digest(arrays, text)})
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            np.savez(file, meta=np.array(meta), **{f"a{i}": arrays[name] for i, name in enumerate(names)})
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load_npz(path, config: dict, expected: dict) -> dict | None:
    """The arrays saved by ``save_npz`` at ``path``, or None if the file is absent or not to
    be trusted: unreadable (truncated, garbage), checksum mismatch, saved under another
    ``config``, arrays other than ``expected`` (name -> (shape, dtype)), or non-finite
    values. Every rejection warns (``CheckpointWarning``, naming the file)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            meta = json.loads(str(saved["meta"][()]))
            arrays = {name: saved[f"a{i}"] for i, name in enumerate(meta["names"])}
            stored_config, checksum = meta["config"], meta["sha256"]
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, zlib.error) as error:
        return _distrust(path, f"is unreadable ({type(error).__name__}: {error})")
    if _digest(arrays, json.dumps(stored_config, sort_keys=True)) != checksum:
        return _distrust(path, "does not match its checksum")
    config = _canonical(config)
    if stored_config != config:
        changed = sorted(k for k in set(config) | set(stored_config) if config.get(k) != stored_config.get(k))
        return _distrust(path, f"was saved under another configuration (differs in {', '.join(changed)})")
    found = {name: (a.shape, a.dtype) for name, a in arrays.items()}
    wanted = {name: (tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in expected.items()}
    if found != wanted:
        wrong = sorted(n for n in set(found) | set(wanted) if found.get(n) != wanted.get(n))
        return _distrust(path, f"holds arrays of unexpected names or shapes ({', '.join(wrong[:4])})")
    if not all(np.all(np.isfinite(a)) for a in arrays.values() if a.dtype.kind == "f"):
        return _distrust(path, "holds NaN or infinite values")
    return arrays


def _distrust(path: Path, reason: str) -> None:
    warnings.warn(f"{path} {reason}; computing it again", CheckpointWarning, stacklevel=3)


def _named_leaves(tree) -> dict:
    """{key path string: leaf}: names that do not depend on the treedef's flattening order."""
    return {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _rebuild(template, named: dict):
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(named[jax.tree_util.keystr(p)]) for p, _ in paths])


# ------------------------------------------------------------------------- training


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
        return Partial(training._call_model, self.model_at(epoch), self.params_at(epoch))


def _minibatches(key, n: int, batch_size: int) -> jnp.ndarray:
    """Rows of each minibatch of an epoch, (B, batch_size): a permutation drawn from ``key``,
    the remainder dropped."""
    n_batches = n // batch_size
    return jax.random.permutation(key, n)[:n_batches * batch_size].reshape(n_batches, batch_size)


@partial(jax.jit, static_argnames=("attack", "steps", "random_start"))
def _train_step(model, params, x, labels, rows, learning_rate, epsilon, step_size, key, *, attack, steps,
                random_start):
    """One SGD step on the minibatch ``rows`` of (x, labels), or under ``attack`` on its PGD
    version (FGSM: one step of size ε) made by ``ntk_notes.attacks._pgd`` against the current
    parameters. Everything that varies between runs of one architecture is an argument: one
    compilation per shape and mode. Returns the new parameters and the step's statistics,
    ``HISTORY_FIELDS``.

    The epoch is a Python loop over this step, not a ``lax.scan``: XLA on CPU runs
    convolutions inside a loop some 40x slower (measured: a 28x28 CNN epoch, 13 s vs 0.3 s).
    """
    optimizer = optax.sgd(learning_rate)
    xb, yb = x[rows], labels[rows]
    loss_name = attacks.default_loss(jax.eval_shape(model, params, xb).shape[-1])
    x_train = xb
    if attack:
        x_train, _, _ = attacks._pgd(Partial(training._call_model, model, params), xb, yb, epsilon, step_size, key,
                                     loss=loss_name, norm="linf", steps=steps, random_start=random_start)

    def loss_fn(p):
        logits = model(p, x_train)
        return jnp.mean(attacks.per_example_loss(loss_name, logits, yb)), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)  # plain SGD: no state to carry
    stats = jnp.stack([loss, jnp.mean(attacks.is_correct(logits, yb)), jnp.max(jnp.abs(x_train - xb)),
                       jnp.min(x_train), jnp.max(x_train)])
    return optax.apply_updates(params, updates), stats


def _is_epoch(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0


def _check_labels(model, params, x, labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(x) or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer class indices of shape ({len(x)},), got {labels.dtype} "
                         f"of shape {labels.shape}")
    n_out = jax.eval_shape(model, params, jnp.asarray(x[:1])).shape[-1]
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= max(n_out, 2):
        raise ValueError(f"labels must lie in 0..{max(n_out, 2) - 1} for a network with {n_out} output(s); "
                         f"got {labels.min()}..{labels.max()}")
    return labels


def adversarial_train(apply_fn, params, x, labels, *, epochs: int, learning_rate: float, batch_size: int,
                      mode: str = "standard", epsilon: float = 0.0, step_size: float | None = None, steps: int = 10,
                      random_start: bool = False, warmup_epochs: int = 0, seed: int = 0, record_epochs=None,
                      linearise_from_epoch: int | None = None, directory=None, config: dict | None = None,
                      show_progress: bool | None = None, _known: AdversarialRun | None = None) -> AdversarialRun:
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
    """
    if mode not in MODES:
        raise ValueError(f"unknown training mode {mode!r}; allowed: {', '.join(MODES)}")
    if not np.isfinite(epsilon) or epsilon < 0:
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    if not attacks._is_count(steps):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if mode == "fgsm":
        steps = 1
        if step_size is None or not random_start:
            step_size = (FAST_FGSM_STEP if random_start else 1.0) * float(epsilon)
    elif step_size is None:
        step_size = 2.5 * epsilon / steps
    if not np.isfinite(step_size) or step_size < 0:
        raise ValueError(f"step_size must be a finite number >= 0, got {step_size!r}")
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    if not _is_epoch(epochs):
        raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}")
    if not (attacks._is_count(batch_size) and batch_size <= len(x)):
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
    labels = _check_labels(attacks.as_model(apply_fn), params, x, labels)

    settings = dict(mode=mode, epsilon=float(epsilon), step_size=float(step_size), steps=int(steps),
                    random_start=bool(random_start), warmup_epochs=int(warmup_epochs),
                    learning_rate=float(learning_rate), batch_size=int(batch_size),
                    seed=int(seed), config=_canonical(config or {}))
    base_config = {"format": CHECKPOINT_FORMAT, **settings, "data_sha256": _digest({"x": x, "labels": labels}),
                   "init_sha256": _digest(_named_leaves(params))}
    directory = None if directory is None else Path(directory)
    template = {name: (np.shape(leaf), np.asarray(leaf).dtype) for name, leaf in _named_leaves(params).items()}

    def run_with(recorded: dict, history: list, trained: tuple) -> AdversarialRun:
        fields = np.array(history, dtype=np.float64).reshape(-1, len(HISTORY_FIELDS)).T
        return AdversarialRun(apply_fn, x, labels, settings, np.array(sorted(recorded)),
                              [recorded[e] for e in sorted(recorded)], EpochHistory(*fields), trained, k, directory)

    def file_config(epoch):
        return {**base_config, "epoch": epoch, **({"linearised_from": k} if k is not None and epoch > k else {})}

    def load(epoch):
        if _known is not None and epoch <= k:  # the base run of a linearisation holds these
            return _known.params_at(epoch), np.stack(_known.history.head(epoch), axis=1).tolist()
        if epoch == 0 and directory is None:
            return params, []
        if directory is None:
            return None
        expected = {f"params{n}": spec for n, spec in template.items()}
        expected |= {f"history/{f}": ((epoch,), np.float64) for f in HISTORY_FIELDS}
        saved = load_npz(_epoch_path(directory, k, epoch, "epoch"), file_config(epoch), expected)
        if saved is None:
            return None
        named = {n: saved[f"params{n}"] for n in template}
        history = np.stack([saved[f"history/{f}"] for f in HISTORY_FIELDS], axis=1).tolist()
        return _rebuild(params, named), history

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
                state, step_stats = _train_step(model, state, *data, rows, learning_rate, ramp * epsilon,
                                                ramp * step_size,
                                                jax.random.fold_in(attack_key, b), attack=mode != "standard",
                                                steps=int(steps), random_start=bool(random_start))
                stats.append(step_stats)
            if not all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(state)):
                raise FloatingPointError(f"training diverged in epoch {epoch} (non-finite parameters); "
                                         f"lower learning_rate {learning_rate!r}")
            stats = np.asarray(jnp.stack(stats), dtype=np.float64)
            history.append([stats[:, 0].mean(), stats[:, 1].mean(), stats[:, 2].max(), stats[:, 3].min(),
                            stats[:, 4].max()])
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


def _epoch_path(directory: Path, k: int | None, epoch: int, stem: str) -> Path:
    folder = directory if k is None or epoch <= k else directory / f"linearised-from-{k:04d}"
    return folder / f"{stem}-{epoch:04d}.npz"


def _save_epoch(directory, k, epoch, params, history, config):
    arrays = {f"params{name}": np.asarray(leaf) for name, leaf in _named_leaves(params).items()}
    fields = np.array(history, dtype=np.float64).reshape(-1, len(HISTORY_FIELDS))
    arrays |= {f"history/{f}": fields[:, i] for i, f in enumerate(HISTORY_FIELDS)}
    save_npz(_epoch_path(directory, k, epoch, "epoch"), arrays, config)


# ------------------------------------------------------------------------- empirical NTK


def _implementation(implementation) -> nt.NtkImplementation:
    if isinstance(implementation, nt.NtkImplementation) and implementation in IMPLEMENTATIONS.values():
        return implementation
    if implementation in IMPLEMENTATIONS:
        return IMPLEMENTATIONS[implementation]
    raise ValueError(f"unknown empirical NTK implementation {implementation!r}; allowed: "
                     f"{', '.join(IMPLEMENTATIONS)} (never AUTO: it prints while choosing)")


@lru_cache(maxsize=32)
def _ntk_fn(trace_axes: tuple, implementation: nt.NtkImplementation):
    @jax.jit
    def kernel(model, params, x1, x2):
        fn = nt.empirical_ntk_fn(model, trace_axes=trace_axes, vmap_axes=0, implementation=implementation)
        return fn(x1, x2, params)

    return kernel


def _raw_ntk(model, params, x1, x2, trace: bool, implementation: nt.NtkImplementation):
    return _ntk_fn((-1,) if trace else (), implementation)(attacks.as_model(model), params, x1, x2)


def _as_matrix(raw, trace: bool) -> np.ndarray:
    k = np.asarray(raw, dtype=np.float64)
    if trace:
        return k
    n1, n2, c1, c2 = k.shape  # neural-tangents' layout for trace_axes=(): (n1, n2, C, C)
    return k.transpose(0, 2, 1, 3).reshape(n1 * c1, n2 * c2)  # row i·C + c: example-major


def empirical_ntk(model, params, x1, x2=None, trace: bool = False,
                  implementation="structured_derivatives") -> np.ndarray:
    """The empirical NTK Θ(x1, x2) = J(x1) J(x2)ᵀ of ``model`` (params, x) -> outputs (C) at
    ``params``, as float64: (n1·C, n2·C), row i·C + c (``trace=False``), or averaged over the
    outputs, (1/C) Σ_c Θ_cc, (n1, n2) (``trace=True``). ``implementation``: a name of ``IMPLEMENTATIONS``
    (``choose_ntk_implementation`` finds the fastest); all give the same kernel."""
    raw = _raw_ntk(model, params, jnp.asarray(x1), None if x2 is None else jnp.asarray(x2), trace,
                   _implementation(implementation))
    return _as_matrix(raw, trace)


class NtkChoice(NamedTuple):
    implementation: str  # the fastest implementation that agrees
    seconds: dict  # name -> best time of one call after compilation (NaN: it failed)
    compile_seconds: dict  # name -> time of the first call (compilation included)
    relative_difference: dict  # name -> ‖K − K_ref‖ / ‖K_ref‖ against the reference (NaN: it failed)
    reference: str  # jacobian_contraction, unless it failed
    errors: dict  # name -> error message, for implementations that raised (e.g. out of memory)


def choose_ntk_implementation(model, params, x, trace: bool = False, repeats: int = 3,
                              candidates=tuple(IMPLEMENTATIONS)) -> NtkChoice:
    """Compute the empirical NTK of ``model`` on ``x`` with every implementation of
    ``candidates`` (default all of ``IMPLEMENTATIONS``) once, check that they agree (relative
    Frobenius difference below ``AGREEMENT_RTOL`` against the explicit Jacobian
    contraction; RuntimeError if not), and pick the fastest by the best of ``repeats`` timed
    calls. An implementation that raises (memory) is left out; at least two must succeed,
    so that the agreement is checked. Leave an implementation out of ``candidates`` when a
    benchmark showed it hopeless: NTK_VECTOR_PRODUCTS on a 10-output CNN compiles for 20 s."""
    x = jnp.asarray(x)
    candidates = tuple(dict.fromkeys(candidates))
    if len(candidates) < 2 or not all(isinstance(c, str) and c in IMPLEMENTATIONS for c in candidates):
        raise ValueError(f"candidates must be at least two names of {', '.join(IMPLEMENTATIONS)} (to check "
                         f"them against each other); got {candidates!r}")
    kernels, seconds, compile_seconds, errors = {}, {}, {}, {}
    for name in candidates:
        implementation = IMPLEMENTATIONS[name]
        try:
            start = time.perf_counter()
            kernels[name] = _as_matrix(jax.block_until_ready(_raw_ntk(model, params, x, None, trace, implementation)),
                                       trace)
            compile_seconds[name] = time.perf_counter() - start
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                jax.block_until_ready(_raw_ntk(model, params, x, None, trace, implementation))
                times.append(time.perf_counter() - start)
            seconds[name] = min(times)
        except Exception as error:  # noqa: BLE001 -- any failure just rules this implementation out
            errors[name] = f"{type(error).__name__}: {str(error)[:300]}"
    if len(kernels) < 2:
        raise RuntimeError(f"fewer than two empirical NTK implementations ran, so none can be checked: {errors}")
    reference = "jacobian_contraction" if "jacobian_contraction" in kernels else next(iter(kernels))
    scale = np.linalg.norm(kernels[reference])
    difference = {name: float(np.linalg.norm(k - kernels[reference]) / scale) for name, k in kernels.items()}
    disagreeing = {name: d for name, d in difference.items() if not d < AGREEMENT_RTOL}
    if disagreeing:
        raise RuntimeError(f"empirical NTK implementations disagree with {reference} (relative Frobenius "
                           f"difference {disagreeing}, allowed {AGREEMENT_RTOL})")
    nan = float("nan")
    return NtkChoice(min(seconds, key=seconds.get), {n: seconds.get(n, nan) for n in candidates},
                     {n: compile_seconds.get(n, nan) for n in candidates},
                     {n: difference.get(n, nan) for n in candidates}, reference, errors)


class KernelTrajectory(NamedTuple):
    epochs: np.ndarray  # (T,)
    clean: np.ndarray  # (T, m, m) float64 kernels on the clean probe; m = n·C (full) or n (traced)
    adversarial: np.ndarray  # (T, m, m) on the probe attacked against that epoch's model
    trace: bool
    attack: dict  # method, epsilon, step_size, steps of the probe attack
    choice: NtkChoice | None  # None when every kernel was loaded from disk


def kernel_trajectory(run: AdversarialRun, x_probe, labels_probe, trace: bool = False, epochs=None,
                      method: str | None = None, epsilon: float | None = None, step_size: float | None = None,
                      steps: int | None = None, candidates=tuple(IMPLEMENTATIONS),
                      show_progress: bool | None = None) -> KernelTrajectory:
    """The empirical NTK of the trained model (``run.model_at(e)`` at ``run.params_at(e)``)
    on a fixed probe batch at each recorded epoch of ``epochs`` (default all): on the clean
    probe and on the probe attacked against that epoch's model (the authors' protocol;
    their epoch 0 used clean images).

    The probe attack defaults to the run's: FGSM for ``fgsm`` runs, PGD with the run's ε,
    step size and steps otherwise (so a ``standard`` run should be trained with the ε the
    probe is to be attacked with). The implementation is chosen once per call
    (``choose_ntk_implementation`` among ``candidates``, on the first kernel to compute). With a checkpoint
    directory each epoch's pair of kernels is saved beside its parameters
    (``kernel-full-EEEE.npz`` / ``kernel-traced-EEEE.npz``) and reused.
    """
    epochs = run.epochs if epochs is None else np.asarray(epochs)
    for e in epochs:
        run.params_at(int(e))  # names any epoch that was not recorded
    s = run.settings
    method = method or ("fgsm" if s["mode"] == "fgsm" else "pgd")
    probe_attack = dict(method=method, epsilon=s["epsilon"] if epsilon is None else float(epsilon),
                        step_size=(s["step_size"] if step_size is None else float(step_size)),
                        steps=s["steps"] if steps is None else int(steps))
    if method == "fgsm":
        probe_attack.update(step_size=probe_attack["epsilon"], steps=1)
    x_probe = jnp.asarray(x_probe)
    labels_probe = _check_labels(run.model_at(0), run.params[0], x_probe, labels_probe)
    n_out = jax.eval_shape(run.model_at(0), run.params[0], x_probe[:1]).shape[-1]
    m = len(x_probe) * (1 if trace else n_out)
    stem = f"kernel-{'traced' if trace else 'full'}"
    probe_sha = _digest({"x": np.asarray(x_probe), "labels": labels_probe})
    choice, clean, adversarial = None, [], []
    for epoch in progress([int(e) for e in epochs], desc=f"{stem}s", enabled=show_progress):
        k = run.linearise_from_epoch
        config = {"epoch": epoch, "run": run.settings, "probe_sha256": probe_sha, "trace": trace,
                  "attack": probe_attack, "linearised_from": k if k is not None and epoch > k else None,
                  "params_sha256": _digest(_named_leaves(run.params_at(epoch)))}
        path = None if run.directory is None else _epoch_path(run.directory, k, epoch, stem)
        saved = None if path is None else load_npz(path, config, {"clean": ((m, m), np.float64),
                                                                   "adversarial": ((m, m), np.float64)})
        if saved is None:
            model, params = run.model_at(epoch), run.params_at(epoch)
            if choice is None:
                choice = choose_ntk_implementation(model, params, x_probe, trace, candidates=candidates)
            x_adv = attacks.attack(run.logits_fn(epoch), x_probe, labels_probe, probe_attack["epsilon"], method,
                                   steps=probe_attack["steps"], step_size=probe_attack["step_size"],
                                   batch_size=len(x_probe)).x_adv
            saved = {"clean": empirical_ntk(model, params, x_probe, trace=trace, implementation=choice.implementation),
                     "adversarial": empirical_ntk(model, params, x_adv, trace=trace,
                                                  implementation=choice.implementation)}
            if path is not None:
                save_npz(path, saved, config)
        clean.append(saved["clean"])
        adversarial.append(saved["adversarial"])
    return KernelTrajectory(np.asarray(epochs), np.stack(clean), np.stack(adversarial), trace, probe_attack, choice)


def fixed_adversarial_probe(run: AdversarialRun, x_probe, labels_probe, epsilon: float, epoch: int = 0,
                            steps: int = 10, step_size: float | None = None) -> np.ndarray:
    """The probe attacked once, by PGD (``steps`` steps of ``step_size``, default 2.5 ε / steps,
    from x, as the authors' probe attack), against ``run``'s model at ``epoch`` (default 0:
    the initialisation θ₀, which the standard and adversarial runs of one seed share, so
    that all three are measured on the same inputs). Images (n, H, W, channels)."""
    return np.asarray(attacks.attack(run.logits_fn(epoch), x_probe, labels_probe, epsilon, "pgd", steps=steps,
                                     step_size=step_size, batch_size=len(x_probe)).x_adv)


def probe_kernels(run: AdversarialRun, x_probe, name: str, trace: bool = False, epochs=None,
                  implementation: str | None = None, show_progress: bool | None = None) -> np.ndarray:
    """The empirical NTK of ``run``'s model on fixed inputs ``x_probe`` (nothing attacked here)
    at each recorded epoch of ``epochs`` (default all), (T, m, m) float64. ``name`` labels the
    probe in the checkpoint files (``kernel-<name>-EEEE.npz`` beside the parameters), so that
    several probes of one run keep their own files. ``implementation``: default the fastest
    that agrees (``choose_ntk_implementation``, on the first kernel computed)."""
    if not (isinstance(name, str) and name.replace("-", "").isalnum()):
        raise ValueError(f"name must be letters, digits and dashes, got {name!r}")
    epochs = run.epochs if epochs is None else np.asarray(epochs)
    x_probe = jnp.asarray(x_probe)
    n_out = jax.eval_shape(run.model_at(0), run.params[0], x_probe[:1]).shape[-1]
    m = len(x_probe) * (1 if trace else n_out)
    probe_sha = _digest({"x": np.asarray(x_probe)})
    kernels = []
    for epoch in progress([int(e) for e in epochs], desc=f"kernels on {name}", enabled=show_progress):
        k = run.linearise_from_epoch
        config = {"epoch": epoch, "run": run.settings, "probe_sha256": probe_sha, "trace": trace,
                  "linearised_from": k if k is not None and epoch > k else None,
                  "params_sha256": _digest(_named_leaves(run.params_at(epoch)))}
        path = None if run.directory is None else _epoch_path(run.directory, k, epoch, f"kernel-{name}")
        saved = None if path is None else load_npz(path, config, {"kernel": ((m, m), np.float64)})
        if saved is None:
            model, params = run.model_at(epoch), run.params_at(epoch)
            if implementation is None:
                implementation = choose_ntk_implementation(model, params, x_probe, trace).implementation
            saved = {"kernel": empirical_ntk(model, params, x_probe, trace=trace, implementation=implementation)}
            if path is not None:
                save_npz(path, saved, config)
        kernels.append(saved["kernel"])
    return np.stack(kernels)


# ------------------------------------------------------------------------- kernel metrics


def _matrix(kernel) -> np.ndarray:
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"a kernel must be a square matrix, got shape {k.shape}")
    return k


def _series(kernels, at_least: int = 1) -> list:
    """A list of float64 square matrices of one shape, from a list or a stacked array."""
    series = [_matrix(k) for k in kernels]
    if len(series) < at_least:
        raise ValueError(f"need at least {at_least} kernels, got {len(series)}")
    shapes = {k.shape for k in series}
    if len(shapes) > 1:
        raise ValueError(f"kernels must all have one shape, got {sorted(shapes)}")
    return series


def similarity(k1, k2) -> float:
    """s(K₁, K₂) = ⟨K₁, K₂⟩ / (‖K₁‖ ‖K₂‖), the cosine of the angle between two kernels."""
    k1, k2 = _matrix(k1), _matrix(k2)
    return float(np.vdot(k1, k2) / (np.linalg.norm(k1) * np.linalg.norm(k2)))


def kernel_distance(k1, k2) -> float:
    """S(K₁, K₂) = 1 − s(K₁, K₂) (Fort et al. 2020): 0 for proportional kernels."""
    return 1.0 - similarity(k1, k2)


def distance_matrix(kernels) -> np.ndarray:
    """S(K_i, K_j) for every pair of kernels of a sequence, (T, T): symmetric, 0 on the
    diagonal (the authors' epoch × epoch heat map). One kernel is held at a time besides
    the pair being compared."""
    series = _series(kernels)
    norms = [np.linalg.norm(k) for k in series]
    out = np.zeros((len(series), len(series)))
    for i in range(len(series)):
        for j in range(i):
            out[i, j] = out[j, i] = 1.0 - np.vdot(series[i], series[j]) / (norms[i] * norms[j])
    return out


def velocity(kernels) -> np.ndarray:
    """Kernel velocity S(K_t, K_{t+1}) for t = 0 … T−1, shape (T,) for T + 1 kernels."""
    series = _series(kernels, at_least=2)
    return np.array([kernel_distance(a, b) for a, b in itertools.pairwise(series)])


def relative_change(kernels) -> np.ndarray:
    """‖K_t − K_0‖ / ‖K_0‖ per kernel, (T,): how far the kernel moved, norm included."""
    series = _series(kernels)
    return np.array([np.linalg.norm(k - series[0]) for k in series]) / np.linalg.norm(series[0])


def cosine_distance(kernels) -> np.ndarray:
    """S(K_t, K_0) per kernel, (T,): how far the kernel's direction moved, whatever its norm
    (a kernel can grow a hundredfold while this stays near 0)."""
    series = _series(kernels)
    return np.array([kernel_distance(k, series[0]) for k in series])


def truncate(kernel, k: int, eigen=None) -> tuple[np.ndarray, np.ndarray]:
    """(top, rest): the rank-k truncation Σ_{i≤k} λ_i v_i v_iᵀ of a symmetric kernel (its
    top-k eigenspace, float64 eigendecomposition) and the rest K − top."""
    kernel = _matrix(kernel)
    _check_k(k, len(kernel))
    values, vectors = spectral.eigendecomposition(kernel) if eigen is None else eigen
    top = (vectors[:, :k] * values[:k]) @ vectors[:, :k].T
    return top, kernel - top


class Polar(NamedTuple):
    radius: np.ndarray  # (T,) r_t = ‖K_t − K_0‖ / ‖K_T − K_0‖: 0 at t = 0, 1 at t = T
    angle: np.ndarray  # (T,) α_t = arccos s(K_t, K_0), radians (the authors call it θ_t)


class PolarTrajectory(NamedTuple):
    whole: Polar
    top: Polar  # of the rank-k truncations (each kernel's own top-k eigenspace)
    rest: Polar  # of K_t minus its rank-k truncation


def polar(kernels) -> Polar:
    """Radius r_t = ‖K_t − K_0‖ / ‖K_T − K_0‖ and angle α_t = arccos s(K_t, K_0) of a sequence
    (PAPER.md). A kernel that never moves has an undefined radius: NaN."""
    series = _series(kernels, at_least=2)
    moved = np.array([np.linalg.norm(k - series[0]) for k in series])
    with np.errstate(invalid="ignore", divide="ignore"):
        radius = moved / moved[-1]
    angle = np.arccos(np.clip([similarity(k, series[0]) for k in series], -1.0, 1.0))
    return Polar(radius, angle)


def polar_trajectory(kernels, k: int = 20, eigen=None) -> PolarTrajectory:
    """``polar`` of the whole kernels, of their rank-k truncations and of the rest, as the
    authors' metrics script (top-20 eigenspace). ``eigen``: precomputed
    ``spectral.eigendecomposition`` of each kernel."""
    series = _series(kernels, at_least=2)
    parts = [truncate(kern, k, None if eigen is None else eigen[t]) for t, kern in enumerate(series)]
    return PolarTrajectory(polar(series), polar([p[0] for p in parts]), polar([p[1] for p in parts]))


def centre(kernel, n_outputs: int = 1) -> np.ndarray:
    """HKH with H = (I_n − 11ᵀ/n) ⊗ I_C: the kernel of the outputs with their mean over the n
    examples removed (for each pair of outputs of a full (n·C, n·C) kernel; H = I − 11ᵀ/n
    for one output or a traced kernel). Float64."""
    kernel = _matrix(kernel)
    if not attacks._is_count(n_outputs) or len(kernel) % n_outputs:
        raise ValueError(f"n_outputs must be a positive integer dividing the kernel's size {len(kernel)}, "
                         f"got {n_outputs!r}")
    n, c = len(kernel) // n_outputs, n_outputs
    k = kernel.reshape(n, c, n, c)
    k = k - k.mean(axis=0, keepdims=True)
    k = k - k.mean(axis=2, keepdims=True)
    return k.reshape(n * c, n * c)


def _check_k(k, size: int):
    if not (attacks._is_count(k) and k <= size):
        raise ValueError(f"k must be an integer in 1..{size} (the kernel's size), got {k!r}")


MASS_RTOL = 1e-10  # below this share of ‖K‖² the remaining spectrum is rounding noise


def _mass(values, k: int, skip_top: bool, scale: float) -> float:
    """Σ_{i≤k} λ_i² / Σ_i λ_i² over the eigenvalues (descending), after the top one with
    ``skip_top``; NaN when the spectrum counted holds no mass (e.g. a centred constant)."""
    squares = np.asarray(values)[1:] ** 2 if skip_top else np.asarray(values) ** 2
    total = squares.sum()
    return float(squares[:k].sum() / total) if total > (MASS_RTOL * scale) ** 2 else float("nan")


def spectral_mass(kernels, k: int, centred: bool = False, skip_top: bool = False, n_outputs: int = 1) -> np.ndarray:
    """Top-k spectral mass M_k = Σ_{i≤k} λ_i² / Σ_i λ_i² of each kernel, (T,), eigenvalues
    in descending order (float64 eigendecomposition).

    ``centred``: of HKH (``centre``) rather than K, removing the constant mode that holds
    nearly all the mass of a one-output network's uncentred kernel. ``skip_top``: over
    λ_2, λ_3, … (the top eigenvalue set aside): Σ_{2≤i≤k+1} λ_i² / Σ_{i≥2} λ_i². When the
    spectrum counted is zero to rounding (relative ``MASS_RTOL`` of ‖K‖), M_k is NaN.
    """
    out = []
    for kern in _series(kernels):
        _check_k(k, len(kern) - skip_top)
        matrix = centre(kern, n_outputs) if centred else kern
        out.append(_mass(np.linalg.eigvalsh(matrix)[::-1], k, skip_top, np.linalg.norm(kern)))
    return np.array(out)


def _targets(targets, size: int) -> np.ndarray:
    """Y as a (size, columns) float64 matrix: (n, C) targets flattened to (n·C, 1) for a full
    kernel of size n·C, kept as (n, C) for a kernel of size n."""
    y = np.asarray(targets, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.shape[0] != size:
        y = y.reshape(-1, 1)
    if y.shape[0] != size:
        raise ValueError(f"targets of shape {np.shape(targets)} do not fit a kernel of size {size}: give "
                         f"(n, C) targets for an (n, n) or (n·C, n·C) kernel")
    return y


def target_alignment(kernels, targets, centred: bool = False, n_outputs: int = 1) -> np.ndarray:
    """Kernel–target alignment ⟨K, YYᵀ⟩ / (‖K‖ ‖YYᵀ‖) of each kernel, (T,) (Cristianini et
    al. 2002). For a full (n·C, n·C) kernel Y is the n·C vector of the flattened (n, C)
    targets (one-hot or ±1), for a traced (n, n) kernel the (n, C) matrix itself.
    ``centred``: with HKH and H YYᵀ H (Cortes et al. 2012), so the mean mode counts for
    nothing; ``n_outputs`` as in ``centre`` (C for a full kernel, 1 for a traced one)."""
    out = []
    for kern in _series(kernels):
        y = _targets(targets, len(kern))
        if centred:
            kern = centre(kern, n_outputs)
            y = centre(y @ y.T, n_outputs)
            target_norm = np.linalg.norm(y)
            out.append(np.vdot(kern, y) / (np.linalg.norm(kern) * target_norm))
            continue
        out.append(np.sum(y * (kern @ y)) / (np.linalg.norm(kern) * np.linalg.norm(y.T @ y)))
    return np.array(out)


def label_energy(kernels, targets, k: int, eigen=None) -> np.ndarray:
    """Share of the targets' energy in each kernel's top-k eigenvectors,
    Σ_{i≤k} ‖v_iᵀ Y‖² / ‖Y‖², (T,) (``spectral.label_energy``; Y as in ``target_alignment``)."""
    out = []
    for t, kern in enumerate(_series(kernels)):
        _check_k(k, len(kern))
        _, vectors = spectral.eigendecomposition(kern) if eigen is None else eigen[t]
        out.append(spectral.label_energy(vectors, _targets(targets, len(kern)))[k - 1])
    return np.array(out)


def kernel_metrics(kernels, targets, ks=(10, 20), n_outputs: int = 1, epochs=None) -> pd.DataFrame:
    """Every per-kernel metric of a sequence in one table, one row per kernel (``epochs``
    labels them), each kernel eigendecomposed once: ``relative_change``,
    ``cosine_distance``, ``velocity`` (S(K_{t−1}, K_t); NaN in the first row),
    ``alignment`` and ``alignment_centred``, and for each k: ``mass_top{k}`` (raw),
    ``mass_top{k}_centred``, ``mass_top{k}_after_first`` (top eigenvalue set aside) and
    ``label_energy_top{k}``. ``n_outputs``: C for full (n·C, n·C) kernels, 1 for traced ones."""
    series = _series(kernels)
    table = pd.DataFrame({"epoch": np.arange(len(series)) if epochs is None else np.asarray(epochs)})
    table["relative_change"] = relative_change(series)
    table["cosine_distance"] = cosine_distance(series)
    table["velocity"] = np.concatenate([[np.nan], velocity(series)]) if len(series) > 1 else np.nan
    table["alignment"] = target_alignment(series, targets)
    table["alignment_centred"] = target_alignment(series, targets, centred=True, n_outputs=n_outputs)
    eigen = [spectral.eigendecomposition(k) for k in series]
    centred_values = [np.linalg.eigvalsh(centre(k, n_outputs))[::-1] for k in series]
    for k in ks:
        _check_k(k, len(series[0]) - 1)
        norms = [np.linalg.norm(kern) for kern in series]
        table[f"mass_top{k}"] = [_mass(e[0], k, False, s) for e, s in zip(eigen, norms)]
        table[f"mass_top{k}_centred"] = [_mass(v, k, False, s) for v, s in zip(centred_values, norms)]
        table[f"mass_top{k}_after_first"] = [_mass(e[0], k, True, s) for e, s in zip(eigen, norms)]
        table[f"label_energy_top{k}"] = label_energy(series, targets, k, eigen=eigen)
    return table


# ------------------------------------------------------------------------- when does the kernel settle


def settling_epoch(kernels, epochs=None, threshold: float = 0.01) -> float:
    """The first recorded epoch t after which the kernel stays within ``threshold`` of its
    final direction: S(K_u, K_T) < threshold for every u ≥ t (S the kernel distance).
    NaN when the kernel never was that far from K_T (it did not move measurably, so there
    is nothing to settle). ``epochs`` labels the kernels (default 0, 1, …)."""
    series = _series(kernels, at_least=2)
    epochs = np.arange(len(series)) if epochs is None else np.asarray(epochs)
    distance = np.array([kernel_distance(k, series[-1]) for k in series])
    return _first_settled(distance < threshold, epochs)


def _first_settled(within, epochs) -> float:
    """The first epoch from which ``within`` is True to the end; NaN if it always was."""
    within = np.asarray(within, bool)
    if within.all():
        return float("nan")
    return float(epochs[np.flatnonzero(~within)[-1] + 1])


def direction_and_norm_settling(kernels, epochs=None, tolerance: float = 0.1) -> tuple[float, float]:
    """Two separate settling epochs of a kernel sequence: of its direction, the first epoch
    after which the cosine distance to K_0, S(K_t, K_0), stays within ``tolerance`` (relative)
    of its final value, and of its size, after which ‖K_t‖ stays within a factor
    1 ± ``tolerance`` of ‖K_T‖. NaN for a quantity that never left that band (it did not move)."""
    series = _series(kernels, at_least=2)
    epochs = np.arange(len(series)) if epochs is None else np.asarray(epochs)
    turned = cosine_distance(series)
    norms = np.array([np.linalg.norm(k) for k in series])
    if turned[-1] <= 0:
        direction = float("nan")
    else:
        direction = _first_settled(np.abs(turned - turned[-1]) <= tolerance * turned[-1], epochs)
    size = _first_settled(np.abs(norms / norms[-1] - 1) <= tolerance, epochs)
    return direction, size


def settling_summary(kernels, epochs=None, threshold: float = 0.01, tolerance: float = 0.1, k: int = 10,
                     n_outputs: int = 1) -> dict:
    """The settling measurements of one kernel sequence, as a row: ``settling_epoch``
    (test 1), ``direction_epoch`` and ``norm_epoch`` (``direction_and_norm_settling``) and
    ``direction_and_norm_epoch``, the later of the two (test 2; NaN if either is), how far
    the kernel turned, ``turned`` = S(K_0, K_T), its size change ``norm_ratio`` = ‖K_T‖ / ‖K_0‖,
    and ``outside_top{k}``, the centred spectral mass outside the top-k eigenspace,
    1 − M_k(HKH), at the first and last kernels (``_start``, ``_end``; test 4)."""
    series = _series(kernels, at_least=2)
    direction, size = direction_and_norm_settling(series, epochs, tolerance)
    outside = 1 - spectral_mass([series[0], series[-1]], k, centred=True, n_outputs=n_outputs)
    return {"settling_epoch": settling_epoch(series, epochs, threshold), "direction_epoch": direction,
            "norm_epoch": size, "direction_and_norm_epoch": float(np.max([direction, size])),
            "turned": kernel_distance(series[0], series[-1]),
            "norm_ratio": float(np.linalg.norm(series[-1]) / np.linalg.norm(series[0])),
            f"outside_top{k}_start": float(outside[0]), f"outside_top{k}_end": float(outside[1])}


class Linearisation(NamedTuple):
    epoch: float  # earliest k from which every linearised continuation tried ends within tolerance
    table: pd.DataFrame  # linearised_from, clean_accuracy, robust_accuracy, clean_gap, robust_gap, within
    full: tuple  # (clean, robust) accuracy of the network trained throughout


def linearisation_epoch(run: AdversarialRun, candidates, x_test, labels_test, epsilon: float,
                        tolerance: float = 0.02, show_progress: bool | None = None,
                        **attack_args) -> Linearisation:
    """The linearisation test of laziness: the earliest of ``candidates`` (recorded epochs
    below the final one) from which a linearised continuation (``continue_linearised``)
    ends within ``tolerance`` of the full run's final clean and robust test accuracy
    (``attacks.attack(..., epsilon, "pgd", **attack_args)``; pass a ``seed`` so every model
    meets the same random starts). Candidates are tried from the latest down and the search
    stops at the first that misses, so the epoch returned is one from which every later
    candidate matched too; the final epoch when even the latest misses."""
    x_test = jnp.asarray(x_test)

    def scores(logits_fn):
        clean = float(np.mean(np.asarray(attacks.is_correct(logits_fn(x_test), labels_test))))
        return clean, attacks.attack(logits_fn, x_test, labels_test, epsilon, "pgd", **attack_args).accuracy

    full = scores(run.logits_fn())
    rows, epoch = [], float(run.final_epoch)
    for k in sorted({int(c) for c in candidates if int(c) < run.final_epoch}, reverse=True):
        clean, robust = scores(continue_linearised(run, k, show_progress).logits_fn())
        within = abs(clean - full[0]) <= tolerance and abs(robust - full[1]) <= tolerance
        rows.append({"linearised_from": k, "clean_accuracy": clean, "robust_accuracy": robust,
                     "clean_gap": clean - full[0], "robust_gap": robust - full[1], "within": within})
        if not within:
            break
        epoch = float(k)
    return Linearisation(epoch, pd.DataFrame(rows), full)


# ------------------------------------------------------------------------- evaluation and ablation


def accuracy_over_epochs(run: AdversarialRun, x, labels, epsilon: float, method: str = "pgd", epochs=None,
                         **attack_args) -> pd.DataFrame:
    """Clean and robust accuracy of the model at each recorded epoch (default all), one row
    per epoch: (epoch, clean_accuracy, robust_accuracy). The attack is
    ``attacks.attack(..., epsilon, method, **attack_args)``; for evaluation use PGD with a
    random start (Madry et al.), which the training attack need not be."""
    epochs = run.epochs if epochs is None else np.asarray(epochs)
    x = jnp.asarray(x)
    rows = []
    for epoch in (int(e) for e in epochs):
        logits_fn = run.logits_fn(epoch)
        clean = float(np.mean(np.asarray(attacks.is_correct(logits_fn(x), labels))))
        robust = attacks.attack(logits_fn, x, labels, epsilon, method, **attack_args).accuracy
        rows.append({"epoch": epoch, "clean_accuracy": clean, "robust_accuracy": robust})
    return pd.DataFrame(rows)


def final_outcomes(run: AdversarialRun, x, labels, epsilon: float, method: str = "pgd",
                   **attack_args) -> tuple[np.ndarray, np.ndarray]:
    """Per-example correctness (n,) of the model at the run's last epoch: on the clean
    inputs and under ``attacks.attack(..., epsilon, method, **attack_args)``."""
    logits_fn = run.logits_fn()
    x = jnp.asarray(x)
    clean = np.asarray(attacks.is_correct(logits_fn(x), labels), bool)
    return clean, np.asarray(attacks.attack(logits_fn, x, labels, epsilon, method, **attack_args).correct, bool)


def continue_linearised(run: AdversarialRun, k: int, show_progress: bool | None = None) -> AdversarialRun:
    """``run`` continued from its recorded epoch k to its final epoch with the linearised
    network ``training.linearised(apply_fn, θ_k)`` in place of the network: same data order,
    same attack mode and settings, same recorded epochs (checkpointed under the run's
    directory, ``linearised-from-KKKK/``). k = the final epoch gives the run itself."""
    if run.linearise_from_epoch is not None:
        raise ValueError(f"this run is already linearised from epoch {run.linearise_from_epoch}; "
                         "continue the network's own run")
    run.params_at(k)  # k must be recorded
    s = dict(run.settings)
    config = s.pop("config")
    return adversarial_train(run.apply_fn, run.params[0], run.x, run.labels, epochs=run.final_epoch,
                             record_epochs=run.epochs.tolist(), linearise_from_epoch=int(k),
                             directory=run.directory, config=config, show_progress=show_progress, _known=run, **s)


def ablation(run: AdversarialRun, ks, x_test, labels_test, epsilon: float, method: str = "pgd",
             show_progress: bool | None = None, **attack_args) -> pd.DataFrame:
    """The linearisation ablation: for each k of ``ks``, train the linearised network from
    epoch k to the end (``continue_linearised``) and measure the final model's clean and
    robust accuracy on the test set (``attacks.attack(..., epsilon, method, **attack_args)``).
    One row per k: (mode, linearised_from, clean_accuracy, robust_accuracy); k = the final
    epoch is the network trained throughout."""
    x_test = jnp.asarray(x_test)
    rows = []
    for k in ks:
        logits_fn = continue_linearised(run, int(k), show_progress).logits_fn()
        clean = float(np.mean(np.asarray(attacks.is_correct(logits_fn(x_test), labels_test))))
        robust = attacks.attack(logits_fn, x_test, labels_test, epsilon, method, **attack_args).accuracy
        rows.append({"mode": run.settings["mode"], "linearised_from": int(k), "clean_accuracy": clean,
                     "robust_accuracy": robust})
    return pd.DataFrame(rows)
