"""The experiment of the chapter on claim 7 (``book/adversarial_training_dynamics.py``): does
the empirical NTK settle earlier under adversarial training than under standard training?

One network trained three ways (``MODES``) from each seed's initialisation
(``train_runs``); its final accuracy (``final_outcomes``); its empirical NTK on three probes
at every recorded epoch (``probe_kernels``); four tests of "settles earlier" on each probe
(``settling_tests``); the inputs of the claim-7 rule (``epochs_of``, ``outcomes_by_mode``);
and a positive control (``positive_control``). The tables, sentences and glued numbers the
chapter and the reproduction report show are in ``ntk_notes.dynamics_tables``. ``cfg`` is
the chapter's settings (``ntk_notes.profiles``, through ``ntk_notes.chapter.begin``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import pandas as pd

from ntk_notes import architectures, attacks, checkpoints, claims, data, empirical, kernel_metrics, linearisation
from ntk_notes.adversarial_training import MODES, adversarial_train

CHAPTER = "adversarial_training_dynamics"
PROBES = ("clean", "fixed adversarial", "moving")
BOOKKEEPING = ("data_dir", "started")  # attributes ``chapter.begin`` adds: no setting of the runs
SETTLING_COLUMNS = dict(
    zip(claims.SETTLING_TESTS, ["settling_epoch", "direction_and_norm_epoch", "linearisation_epoch"])
)


def describe(cfg) -> str:
    """The one-line setting the chapter glues as ``dynamics_setting``."""
    pair = "digits {} vs {}".format(*cfg.classes) if cfg.classes else "all classes"
    return (
        f"{cfg.dataset}, {pair}, {cfg.image_size}² images, {cfg.n_train} train / "
        f"{cfg.n_test} test; {cfg.network.upper()} {tuple(cfg.widths)}, {cfg.epochs} "
        f"epochs of SGD, rate {cfg.learning_rate}, batch {cfg.batch_size}, "
        f"{len(cfg.seeds)} seeds; ε = {cfg.epsilon:.3g} (warm-up {cfg.warmup_epochs} "
        f"epochs), PGD-{cfg.pgd_steps} training, PGD-{cfg.eval_steps} evaluation"
    )


def recorded_epochs(cfg) -> list[int]:
    """The epochs whose parameters and kernels are kept: every ``record_every``-th and the last."""
    return sorted(set(range(0, cfg.epochs + 1, cfg.record_every)) | {cfg.epochs})


def checkpoint_folder(cfg) -> Path:
    """One checkpoint directory per configuration and compiler, so that runs with other
    settings (an exercise, a test's stand-in) or compiled otherwise (another jax, other
    XLA_FLAGS: the tests compile without LLVM's optimisations, which changes even the initial
    parameters' last bits; another form of the PGD loop, ``attacks.loop_unroll``, whose
    rounding order PGD training amplifies) never meet this one's files: ``<cache>/checkpoints/
    <chapter>/<profile>-<first 12 hex digits of the sha256 of the settings and the compiler>``."""
    settings = {name: value for name, value in vars(cfg).items() if name not in BOOKKEEPING}
    compiler = f"jax {jax.__version__}, XLA_FLAGS {os.environ.get('XLA_FLAGS', '')!r}"
    convolves = architectures.network_convolves(cfg.network)
    unroll = attacks.loop_unroll(cfg.pgd_steps, jax.default_backend(), convolves, attacks.xla_cpu_optimised())
    compiler += f", PGD loop unroll {unroll}" if unroll > 1 else ""  # the scan's (old) folders stay valid
    digest = checkpoints.digest({}, repr(sorted(settings.items())) + compiler)[:12]
    return data.cache_dir() / "checkpoints" / CHAPTER / f"{cfg.profile}-{digest}"


def train_runs(cfg, task, directory=None, verbose: bool = True) -> dict:
    """{(seed, mode): ``AdversarialRun``}: ``cfg.network`` trained in each mode from each
    seed's initialisation (shared by its three runs), checkpointed under ``directory``
    (default ``checkpoint_folder(cfg)``). ``verbose`` prints the epochs each run trained."""
    init_fn, apply_fn, _ = architectures.network(cfg.network, n_out=task.y_train.shape[1], widths=cfg.widths)
    directory = checkpoint_folder(cfg) if directory is None else Path(directory)
    runs = {}
    for s in cfg.seeds:
        _, params = init_fn(jax.random.PRNGKey(s), task.x_train.shape)
        for mode in MODES:
            start = time.perf_counter()
            runs[s, mode] = adversarial_train(
                apply_fn,
                params,
                task.x_train,
                task.labels_train,
                epochs=cfg.epochs,
                learning_rate=cfg.learning_rate,
                batch_size=cfg.batch_size,
                mode=mode,
                epsilon=cfg.epsilon,
                step_size=cfg.step_size,
                steps=cfg.pgd_steps,
                random_start=mode == "fgsm" and cfg.fgsm_random_start,
                warmup_epochs=cfg.warmup_epochs,
                seed=s,
                record_epochs=recorded_epochs(cfg),
                directory=directory / f"seed{s}-{mode}",
                config={"network": cfg.network, "widths": list(cfg.widths), "dataset": cfg.dataset},
            )
            if verbose:
                print(
                    f"seed {s}, {mode}: {len(runs[s, mode].trained)} epochs trained, "
                    f"{time.perf_counter() - start:.1f} s"
                )
    return runs


def final_outcomes(runs: dict, task, cfg) -> tuple[dict, pd.DataFrame]:
    """Per-example test outcomes of every run at its last epoch, {(seed, mode):
    ``claims.RunOutcomes``} (clean, and under PGD-``eval_steps`` with a random start), and
    their accuracies, one row per run (seed, mode, clean_accuracy, robust_accuracy)."""
    outcomes = {
        key: claims.RunOutcomes(
            *linearisation.final_outcomes(
                run, task.x_test, task.labels_test, cfg.epsilon, steps=cfg.eval_steps, random_start=True, seed=0
            )
        )
        for key, run in runs.items()
    }
    final = pd.DataFrame(
        [
            {"seed": s, "mode": mode, "clean_accuracy": o.clean.mean(), "robust_accuracy": o.robust.mean()}
            for (s, mode), o in outcomes.items()
        ]
    )
    return outcomes, final


def majority_rate(labels) -> float:
    """The accuracy of always predicting the most common class."""
    return np.bincount(labels).max() / len(labels)


def probe_step(cfg) -> float:
    """The step of the probes' PGD, one for every run: ``step_size``, default 2.5 ε / steps."""
    return cfg.step_size or attacks.default_step_size(cfg.epsilon, cfg.pgd_steps)


def probe_kernels(runs: dict, task, cfg) -> dict:
    """{(seed, mode): {probe: (T, m, m) kernels}} at the recorded epochs, on the first
    ``probe_size`` training images: ``clean``; ``moving``, attacked again every epoch against
    that epoch's network; ``fixed adversarial``, attacked once against the seed's θ₀."""
    probe, labels = task.x_train[: cfg.probe_size], task.labels_train[: cfg.probe_size]
    kernels = {}
    for (s, mode), run in runs.items():
        moving = empirical.kernel_trajectory(
            run, probe, labels, method="pgd", epsilon=cfg.epsilon, step_size=probe_step(cfg), steps=cfg.pgd_steps
        )
        fixed = empirical.fixed_adversarial_probe(
            runs[s, "standard"], probe, labels, cfg.epsilon, epoch=0, steps=cfg.pgd_steps, step_size=probe_step(cfg)
        )
        kernels[s, mode] = {
            "clean": moving.clean,
            "moving": moving.adversarial,
            "fixed adversarial": empirical.probe_kernels(run, fixed, "fixed-adversarial"),
        }
    return kernels


def outside_label(top_k: int) -> str:
    return f"centred mass outside top {top_k}"


def kernel_curves(kernels: dict, cfg, n_out: int) -> pd.DataFrame:
    """One row per (seed, mode, probe, recorded epoch): the cosine distance to K_0, the norm
    ratio ‖K_t‖ / ‖K_0‖ and the centred spectral mass outside the top ``top_k``."""
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "epoch": recorded_epochs(cfg),
                    "seed": s,
                    "mode": mode,
                    "probe": name,
                    "cosine distance to K_0": kernel_metrics.cosine_distance(k),
                    "‖K_t‖ / ‖K_0‖": np.linalg.norm(k, axis=(1, 2)) / np.linalg.norm(k[0]),
                    outside_label(cfg.top_k): 1
                    - kernel_metrics.spectral_mass(k, cfg.top_k, centred=True, n_outputs=n_out),
                }
            )
            for (s, mode), by_probe in kernels.items()
            for name, k in by_probe.items()
        ],
        ignore_index=True,
    )


def linearisation_candidates(cfg) -> list[int]:
    """The epochs k tried by the linearisation test: ``linearise_fractions`` of the run,
    recorded, before the last."""
    return sorted({round(f * cfg.epochs) for f in cfg.linearise_fractions} & set(recorded_epochs(cfg)) - {cfg.epochs})


def settling_tests(runs: dict, kernels: dict, task, cfg) -> tuple[pd.DataFrame, dict]:
    """The four tests of "settles earlier": one row per (seed, mode, probe) of
    ``kernel_metrics.settling_summary`` (tests 1, 2 and 4) plus the run's
    ``linearisation_epoch`` (test 3, which does not depend on a probe); and the
    ``linearisation.Linearisation`` of each run."""
    n_out = task.y_train.shape[1]
    rows = [
        {
            "seed": s,
            "mode": mode,
            "probe": name,
            **kernel_metrics.settling_summary(
                k, recorded_epochs(cfg), cfg.settle_threshold, cfg.norm_tolerance, cfg.top_k, n_out
            ),
        }
        for (s, mode), by_probe in kernels.items()
        for name, k in by_probe.items()
    ]
    settling = pd.DataFrame(rows)
    linearisations = {
        key: linearisation.linearisation_epoch(
            run,
            linearisation_candidates(cfg),
            task.x_test,
            task.labels_test,
            cfg.epsilon,
            tolerance=cfg.linearise_tolerance,
            steps=cfg.eval_steps,
            random_start=True,
            seed=0,
        )
        for key, run in runs.items()
    }
    settling["linearisation_epoch"] = [linearisations[r.seed, r.mode].epoch for r in settling.itertuples()]
    return settling, linearisations


def epochs_of(settling: pd.DataFrame, probe: str, seeds) -> dict:
    """{test: {mode: one epoch per seed}} on one probe: the input of ``claims.claim7``."""
    table = settling[settling.probe == probe].set_index(["mode", "seed"])
    return {
        test: {m: table.loc[m, column].reindex(seeds).to_numpy() for m in MODES}
        for test, column in SETTLING_COLUMNS.items()
    }


def outcomes_by_mode(outcomes: dict, seeds) -> dict:
    """{mode: one ``claims.RunOutcomes`` per seed}: the gates of ``claims.claim7``."""
    return {m: [outcomes[s, m] for s in seeds] for m in MODES}


class Control(NamedTuple):
    k0: int  # the epoch from which the controls are linearised
    rows: pd.DataFrame  # settling_summary of each control's clean-probe kernels, one row per seed
    standard: np.ndarray  # the standard runs' settling epochs (test 1), one per seed
    result: object  # claims.ClaimResult of the rule with the controls in place of adversarial runs


def positive_control(runs: dict, task, settling: pd.DataFrame, cfg) -> Control:
    """Each standard run continued linearised from k₀, the earliest linearisation epoch
    tried (its kernel frozen from k₀ on by construction), handed to the claim-7 rule in
    place of the adversarial runs (no accuracy gates): the rule should find it settles
    earlier. Its linearisation epoch is k₀ by construction."""
    k0 = linearisation_candidates(cfg)[0]
    probe = task.x_train[: cfg.probe_size]
    control = {s: linearisation.continue_linearised(runs[s, "standard"], k0) for s in cfg.seeds}
    rows = pd.DataFrame(
        [
            kernel_metrics.settling_summary(
                empirical.probe_kernels(run, probe, "clean"),
                recorded_epochs(cfg),
                cfg.settle_threshold,
                cfg.norm_tolerance,
                cfg.top_k,
                task.y_train.shape[1],
            )
            for run in control.values()
        ]
    )
    clean_epochs = epochs_of(settling, "clean", cfg.seeds)
    control_epochs = [rows.settling_epoch, rows.direction_and_norm_epoch, np.full(len(cfg.seeds), float(k0))]
    result = claims.claim7(
        {
            test: {"standard": clean_epochs[test]["standard"], f"linearised from {k0}": np.asarray(values, np.float64)}
            for test, values in zip(claims.SETTLING_TESTS, control_epochs)
        }
    )
    return Control(k0, rows, clean_epochs["settling epoch"]["standard"], result)
