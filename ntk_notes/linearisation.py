"""What a run of ``adversarial_training`` reaches, and how lazy it was: accuracy over epochs,
final per-example outcomes, and continuing it linearised (the linearisation test of
laziness and the authors' ablation).

``continue_linearised(run, k)`` trains, from epoch k on, the network's first-order Taylor
expansion around θ_k (``training.linearised``) in place of the network, with the same data
order and attacks: a run whose kernel is frozen from k on. If it ends where the network
ended, training was linear (lazy) from k on.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pandas as pd

from ntk_notes import attacks
from ntk_notes.adversarial_training import AdversarialRun, adversarial_train


def _accuracies(logits_fn, x, labels, epsilon: float, method: str, **attack_args) -> tuple[float, float]:
    """(clean accuracy, accuracy under ``attacks.attack(..., epsilon, method, **attack_args)``)."""
    clean = float(np.mean(np.asarray(attacks.is_correct(logits_fn(x), labels))))
    return clean, attacks.attack(logits_fn, x, labels, epsilon, method, **attack_args).accuracy


class Linearisation(NamedTuple):
    epoch: float  # earliest k from which every linearised continuation tried ends within tolerance
    table: pd.DataFrame  # linearised_from, clean_accuracy, robust_accuracy, clean_gap, robust_gap, within
    full: tuple  # (clean, robust) accuracy of the network trained throughout


def linearisation_epoch(
    run: AdversarialRun,
    candidates,
    x_test,
    labels_test,
    epsilon: float,
    tolerance: float = 0.02,
    show_progress: bool | None = None,
    **attack_args,
) -> Linearisation:
    """The linearisation test of laziness: the earliest of ``candidates`` (recorded epochs
    below the final one) from which a linearised continuation (``continue_linearised``)
    ends within ``tolerance`` of the full run's final clean and robust test accuracy
    (``attacks.attack(..., epsilon, "pgd", **attack_args)``; pass a ``seed`` so every model
    meets the same random starts). Candidates are tried from the latest down and the search
    stops at the first that misses, so the epoch returned is one from which every later
    candidate matched too; the final epoch when even the latest misses."""
    x_test = jnp.asarray(x_test)

    def scores(logits_fn):
        return _accuracies(logits_fn, x_test, labels_test, epsilon, "pgd", **attack_args)

    full = scores(run.logits_fn())
    rows, epoch = [], float(run.final_epoch)
    for k in sorted({int(c) for c in candidates if int(c) < run.final_epoch}, reverse=True):
        clean, robust = scores(continue_linearised(run, k, show_progress).logits_fn())
        within = abs(clean - full[0]) <= tolerance and abs(robust - full[1]) <= tolerance
        rows.append(
            {
                "linearised_from": k,
                "clean_accuracy": clean,
                "robust_accuracy": robust,
                "clean_gap": clean - full[0],
                "robust_gap": robust - full[1],
                "within": within,
            }
        )
        if not within:
            break
        epoch = float(k)
    return Linearisation(epoch, pd.DataFrame(rows), full)


# ------------------------------------------------------------------------- evaluation and ablation


def accuracy_over_epochs(
    run: AdversarialRun, x, labels, epsilon: float, method: str = "pgd", epochs=None, **attack_args
) -> pd.DataFrame:
    """Clean and robust accuracy of the model at each recorded epoch (default all), one row
    per epoch: (epoch, clean_accuracy, robust_accuracy). The attack is
    ``attacks.attack(..., epsilon, method, **attack_args)``; for evaluation use PGD with a
    random start (Madry et al.), which the training attack need not be."""
    epochs = run.epochs if epochs is None else np.asarray(epochs)
    x = jnp.asarray(x)
    rows = []
    for epoch in (int(e) for e in epochs):
        clean, robust = _accuracies(run.logits_fn(epoch), x, labels, epsilon, method, **attack_args)
        rows.append({"epoch": epoch, "clean_accuracy": clean, "robust_accuracy": robust})
    return pd.DataFrame(rows)


def final_outcomes(
    run: AdversarialRun, x, labels, epsilon: float, method: str = "pgd", **attack_args
) -> tuple[np.ndarray, np.ndarray]:
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
        raise ValueError(
            f"this run is already linearised from epoch {run.linearise_from_epoch}; continue the network's own run"
        )
    run.params_at(k)  # k must be recorded
    s = dict(run.settings)
    config = s.pop("config")
    return adversarial_train(
        run.apply_fn,
        run.params[0],
        run.x,
        run.labels,
        epochs=run.final_epoch,
        record_epochs=run.epochs.tolist(),
        linearise_from_epoch=int(k),
        directory=run.directory,
        config=config,
        show_progress=show_progress,
        base_run=run,
        **s,
    )


def ablation(
    run: AdversarialRun,
    ks,
    x_test,
    labels_test,
    epsilon: float,
    method: str = "pgd",
    show_progress: bool | None = None,
    **attack_args,
) -> pd.DataFrame:
    """The linearisation ablation: for each k of ``ks``, train the linearised network from
    epoch k to the end (``continue_linearised``) and measure the final model's clean and
    robust accuracy on the test set (``attacks.attack(..., epsilon, method, **attack_args)``).
    One row per k: (mode, linearised_from, clean_accuracy, robust_accuracy); k = the final
    epoch is the network trained throughout."""
    x_test = jnp.asarray(x_test)
    rows = []
    for k in ks:
        clean, robust = _accuracies(
            continue_linearised(run, int(k), show_progress).logits_fn(),
            x_test,
            labels_test,
            epsilon,
            method,
            **attack_args,
        )
        rows.append(
            {
                "mode": run.settings["mode"],
                "linearised_from": int(k),
                "clean_accuracy": clean,
                "robust_accuracy": robust,
            }
        )
    return pd.DataFrame(rows)
