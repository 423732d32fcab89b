"""The experiment of the chapter on transfer and laziness, run on one task.

The chapter varies laziness alone, by the output scale α (``transfer.train_scaled``), and
evaluates every network against its own white-box attack, against several surrogates'
adversarial examples and against noise (``transfer.evaluate``). ``Experiment`` holds the
task and the settings every step shares; its methods build the surrogates, train the
sweeps (over α, with the linearised control of every seed, and over widths), evaluate
the networks and measure transfer at matched white-box robustness. The tables, the rule's
inputs and the figures are in ``ntk_notes.transfer_tables``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pandas as pd

from ntk_notes import architectures, attacks, predictors, robustness, training, transfer
from ntk_notes.progress import progress


def describe(cfg) -> str:
    """The one-line description of the chapter's setting (glued as ``transfer_setting``)."""
    return (
        f"{cfg.dataset}, digits {cfg.classes[0]} vs {cfg.classes[1]}, "
        f"{cfg.image_size}² images, {cfg.n_train} train / {cfg.n_test} test; "
        f"FC depth {cfg.depth}, width {cfg.width}, "
        f"α from {max(cfg.alphas):g} to {min(cfg.alphas):g}, {len(cfg.seeds)} seeds; "
        f"depth {cfg.deep['depth']} with {len(cfg.deep['alphas'])} values of α; "
        f"widths {', '.join(map(str, cfg.width_sweep['widths']))} at "
        f"α = {cfg.width_sweep['alpha']:g}"
    )


def alpha_label(alpha: float) -> str:
    """How a run's α is shown: ``"linearised"`` for the control (α NaN), else ``f"{α:g}"``."""
    return "linearised" if np.isnan(alpha) else f"{alpha:g}"


class Surrogates(NamedTuple):
    """An architecture, its kernel predictors and the base learning rate of its kernel."""

    init_fn: object
    apply_fn: object
    models: dict  # name -> logits function: "f_∞" and "f_t" (and whatever the caller adds)
    rate: float  # η = N / λ₁ of the infinite-width kernel
    t_matched: float  # the time at which f_t reaches the networks' target loss


class Sweep(NamedTuple):
    """One sweep: its runs (``transfer.ScaledRun``), their evaluations and matched ratios."""

    runs: list
    evaluations: list
    matched: pd.DataFrame


@dataclass(frozen=True)
class Experiment:
    """The task (a ``data.Task``) and the settings every step of the experiment shares."""

    task: object
    depth: int
    width: int
    target_loss: float
    max_steps: int
    epsilon: float
    pgd_steps: int
    smooth_sigma: float
    smooth_samples: int
    probe_size: int
    matched_epsilons: tuple
    matched_accuracy: float

    @classmethod
    def of(cls, task, cfg) -> Experiment:
        """The experiment on ``task`` with the chapter's settings ``cfg``."""
        return cls(
            task,
            cfg.depth,
            cfg.width,
            cfg.target_loss,
            cfg.max_steps,
            cfg.epsilon,
            cfg.pgd_steps,
            cfg.smooth_sigma,
            cfg.smooth_samples,
            cfg.probe_size,
            tuple(cfg.matched_epsilons),
            cfg.matched_accuracy,
        )

    @cached_property
    def x_train(self):
        return jnp.asarray(self.task.x_train)

    @cached_property
    def y_train(self):
        return jnp.asarray(self.task.y_train)

    @cached_property
    def x_test(self):
        return jnp.asarray(self.task.x_test)

    @property
    def labels(self) -> np.ndarray:
        return self.task.labels_test

    @cached_property
    def probe(self):
        """The training images on which the empirical kernel's movement is measured."""
        return self.x_train[: self.probe_size]

    def kernel_surrogates(self, depth: int | None = None, width: int | None = None) -> Surrogates:
        """The FC architecture of ``depth`` hidden layers (default: the experiment's), its
        kernel predictors f_∞ and f_t (stopped at the target loss) and its base rate."""
        init_fn, apply_fn, kernel_fn = architectures.architecture(
            "fc", depth=depth or self.depth, width=width or self.width
        )
        predictor = predictors.KernelPredictor(kernel_fn, self.x_train, self.y_train)
        rate = training.stable_learning_rate(predictor.k_train_train)
        t_matched = transfer.time_to_loss(predictor, self.target_loss)
        models = {"f_∞": predictor.logits_fn(), "f_t": predictor.logits_fn(t_matched)}
        return Surrogates(init_fn, apply_fn, models, rate, t_matched)

    def train(self, init_fn, apply_fn, alpha: float | None, seed: int, rate: float) -> transfer.ScaledRun:
        """One network trained to the target loss at scale ``alpha`` (None: linearised)."""
        return transfer.train_scaled(
            init_fn,
            apply_fn,
            self.x_train,
            self.y_train,
            alpha,
            seed,
            rate,
            self.target_loss,
            self.max_steps,
            self.probe,
        )

    def surrogates(self, alpha: float, seed: int) -> tuple[Surrogates, transfer.ScaledRun]:
        """The four surrogates: f_∞, f_t, logistic regression on the pixels and a network
        trained at ``alpha`` from ``seed``; and that network's run."""
        kernel = self.kernel_surrogates()
        kernel.models["logistic regression"] = transfer.linear_surrogate(self.task.x_train, self.task.labels_train)
        rich = self.train(kernel.init_fn, kernel.apply_fn, alpha, seed, kernel.rate)
        kernel.models["rich net"] = rich.net.logits_fn()
        return kernel, rich

    def attack_images(self, models: dict, epsilon: float | None = None) -> dict:
        """Each model's PGD adversarial test images at ``epsilon`` (default: the experiment's)."""
        epsilon = self.epsilon if epsilon is None else epsilon
        return {
            name: attacks.attack(fn, self.x_test, self.labels, epsilon, "pgd", steps=self.pgd_steps).x_adv
            for name, fn in models.items()
        }

    def noise_images(self, model, seed: int):
        """Random-sign noise images of size ε around the test images, drawn once."""
        return attacks.attack(model, self.x_test, self.labels, self.epsilon, "noise", seed=seed).x_adv

    def sweep(self, init_fn, apply_fn, alphas, seeds, rate: float) -> list:
        """Every (seed, α) run, then the linearised control of every seed."""
        jobs = [(s, a) for s in seeds for a in alphas] + [(s, None) for s in seeds]
        return [self.train(init_fn, apply_fn, a, s, rate) for s, a in progress(jobs, desc="training")]

    def evaluate(self, run: transfer.ScaledRun, images: dict, noise_images) -> transfer.Evaluation:
        """One network's per-example outcomes: clean, white-box, on every surrogate's
        ``images`` and on ``noise_images`` (the smoothed gradient's noise from its seed)."""
        return transfer.evaluate(
            run.net.logits_fn(),
            self.x_test,
            self.labels,
            self.epsilon,
            images,
            noise_images,
            self.pgd_steps,
            self.smooth_sigma,
            self.smooth_samples,
            seed=run.seed,
        )

    def evaluate_all(self, runs, images: dict, noise_images) -> list:
        """``evaluate`` of every run."""
        return [self.evaluate(r, images, noise_images) for r in progress(runs, desc="evaluating")]

    def matched_ratios(self, runs, source) -> pd.DataFrame:
        """Per network (seed, alpha, α, cosine distance): the ε* at which its own PGD
        accuracy falls to ``matched_accuracy`` (interpolated over ``matched_epsilons``; NaN
        if it never does) and the transfer ratio of ``source``'s PGD examples made at ε*
        (``matched ratio``)."""
        grid = np.asarray(self.matched_epsilons, np.float64)
        source_grid = [
            attacks.attack(source, self.x_test, self.labels, float(e), "pgd", steps=self.pgd_steps).x_adv for e in grid
        ]
        rows = []
        for r in progress(runs, desc="matched ε"):
            fn = r.net.logits_fn()
            own = robustness.sweep(
                fn, self.x_test, self.labels, grid, "pgd", keep_inputs=False, steps=self.pgd_steps
            ).accuracy
            moved = [transfer.correct_on(fn, images, self.labels).mean() for images in source_grid]
            eps_star = transfer.matched_epsilon(grid, own, self.matched_accuracy)
            clean = transfer.correct_on(fn, self.x_test, self.labels).mean()
            rows.append(
                {
                    "seed": r.seed,
                    "alpha": r.alpha,
                    "α": alpha_label(r.alpha),
                    "cosine distance": r.laziness.cosine_distance,
                    "matched ε": eps_star,
                    "matched ratio": transfer.transfer_ratio(
                        clean, transfer.at_epsilon(grid, moved, eps_star), self.matched_accuracy
                    ),
                }
            )
        return pd.DataFrame(rows)

    def sanity_checks(self, source, runs, alphas) -> pd.DataFrame:
        """The attack sanity checks (``robustness.sanity_checks``) on ``source`` (f_∞) and, for
        every seed, on the laziest and the richest network of ``alphas`` and the linearised
        one; a ``model`` column names them."""
        checked = {"f_∞": source}
        for r in runs:
            if np.isnan(r.alpha) or r.alpha in (max(alphas), min(alphas)):
                name = "linearised" if np.isnan(r.alpha) else f"α = {r.alpha:g}"
                checked[f"seed {r.seed}, {name}"] = r.net.logits_fn()
        return pd.concat(
            [
                robustness.sanity_checks(fn, self.x_test, self.labels, self.epsilon, steps=self.pgd_steps).assign(
                    model=name
                )
                for name, fn in checked.items()
            ],
            ignore_index=True,
        )

    def deep_sweep(self, depth: int, alphas, seeds, baseline, noise_images) -> Sweep:
        """The α sweep with ``depth`` hidden layers (its own kernel, f_∞ and base rate),
        evaluated against its f_∞'s and the ``baseline`` surrogate's examples."""
        kernel = self.kernel_surrogates(depth)
        runs = self.sweep(kernel.init_fn, kernel.apply_fn, alphas, seeds, kernel.rate)
        images = self.attack_images({"f_∞": kernel.models["f_∞"], "logistic regression": baseline})
        evaluations = self.evaluate_all(runs, images, noise_images)
        return Sweep(runs, evaluations, self.matched_ratios(runs, kernel.models["f_∞"]))

    def width_sweep(self, widths, alpha: float, seeds, rate: float, images, noise_images) -> list:
        """(width, run, evaluation) of a network of every width of ``widths`` and every seed,
        trained at ``alpha`` and the base ``rate``, evaluated against f_∞'s ``images``."""
        out = []
        for w, s in progress([(w, s) for w in widths for s in seeds], desc="width sweep"):
            init_fn, apply_fn, *_ = architectures.architecture("fc", depth=self.depth, width=w)
            run = self.train(init_fn, apply_fn, alpha, s, rate)
            out.append((w, run, self.evaluate(run, {"f_∞": images}, noise_images)))
        return out
