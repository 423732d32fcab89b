"""Attacking kernel predictors without training a network (claim 1).

Several kernel predictors f_∞, one per (task, architecture), each fitted on a seeded draw
of the images, are attacked through ``ntk_notes.attacks``: accuracy against ε, the sanity
checks of the evaluation, the outcomes the claim's rule reads, and the authors' CIFAR-10
comparison.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import SimpleNamespace
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pandas as pd
import seaborn as sns

from ntk_notes import architectures, attacks, claims, data, plotting, predictors, robustness, stats

# The authors' reported numbers on binary CIFAR-10 (clean, FGSM, PGD-10 at ε = 8/255).
AUTHORS_CIFAR10 = (0.81, 0.02, 0.02)


class KernelModel(NamedTuple):
    """One kernel predictor on its task."""

    task: data.Task
    predictor: predictors.KernelPredictor  # f_∞, fitted on task's training images
    fit_seconds: float  # time to compute the training kernel and fit


def describe(cfg: SimpleNamespace) -> str:
    """The one-line description of the chapter's setting (data, kernels, sizes)."""
    kernels_text = "; ".join(
        f"{arch} kernel on {s['image_size']}² images, {s['n_train']} train / {s['n_test']} test"
        for arch, s in [("FC", cfg.fc), ("Conv", cfg.conv)]
    )
    return (
        f"{cfg.dataset}, digits {cfg.binary_classes[0]} vs {cfg.binary_classes[1]} and all ten digits; {kernels_text}"
    )


def draw_models(dataset: str, tasks: Mapping, sizes: Mapping[str, Mapping], seed: int, data_dir=None) -> dict:
    """The kernel predictors of every task and architecture on the draw ``seed`` of the
    images. ``tasks`` maps a task's name to its classes (None: all ten); ``sizes`` maps an
    architecture's name ("FC", "Conv": ``architectures.architecture`` of depth 1) to its
    image_size, n_train, n_test. Returns {(task name, architecture): KernelModel}, tasks
    outermost."""
    drawn = {}
    for task_name, classes in tasks.items():
        for arch, size in sizes.items():
            task = data.make_task(
                dataset,
                classes=classes,
                n_train=size["n_train"],
                n_test=size["n_test"],
                seed=seed,
                image_size=size["image_size"],
                data_dir=data_dir,
            )
            kernel_fn = architectures.architecture(arch.lower(), depth=1, n_out=task.y_train.shape[1])[2]
            start = time.perf_counter()
            predictor = predictors.KernelPredictor(kernel_fn, task.x_train, task.y_train)
            drawn[task_name, arch] = KernelModel(task, predictor, time.perf_counter() - start)
    return drawn


def fit_table(models: Mapping) -> pd.DataFrame:
    """One row per model: image size, train / test sizes, fit time and clean test accuracy."""
    return pd.DataFrame(
        [
            {
                "task": task_name,
                "kernel": arch,
                "images": f"{m.task.x_train.shape[1]}²",
                "train / test": f"{len(m.task.x_train)} / {len(m.task.x_test)}",
                "fit (s)": round(m.fit_seconds, 2),
                "clean test accuracy": attacks.accuracy(m.predictor.predict(m.task.x_test), m.task.labels_test),
            }
            for (task_name, arch), m in models.items()
        ]
    ).set_index(["task", "kernel"])


def epsilon_curves(models: Mapping, epsilons, steps: int) -> pd.DataFrame:
    """Test accuracy of every model under FGSM, PGD (``steps`` steps) and noise at each ε:
    columns method, epsilon, accuracy, task, kernel."""
    curves = [
        robustness.accuracy_vs_epsilon(
            m.predictor.logits_fn(), m.task.x_test, m.task.labels_test, epsilons, steps=steps
        ).assign(task=task_name, kernel=arch)
        for (task_name, arch), m in models.items()
    ]
    return pd.concat(curves, ignore_index=True)


def curves_figure(curves: pd.DataFrame):
    """Accuracy against ε, one panel per task, a colour per method and a line style per
    kernel. Returns the figure."""
    grid = sns.relplot(
        curves,
        x="epsilon",
        y="accuracy",
        hue="method",
        style="kernel",
        col="task",
        kind="line",
        markers=True,
        height=3.6,
        aspect=1.2,
    )
    grid.set_axis_labels("ε (ℓ∞)", "test accuracy")
    grid.set(ylim=(-0.02, 1.02))
    return grid.figure


def curve_table(curves: pd.DataFrame, models: Mapping) -> pd.DataFrame:
    """The curves as a table of accuracies with their 95% intervals over each model's test
    set: one row per (task, kernel, method), one column per ε."""
    curves = curves.assign(
        **{
            "accuracy [95% interval]": [
                stats.accuracy_text(a, len(models[t, k].task.labels_test))
                for a, t, k in zip(curves.accuracy, curves.task, curves.kernel)
            ]
        }
    )
    table = curves.pivot_table(
        index=["task", "kernel", "method"], columns="epsilon", values="accuracy [95% interval]", aggfunc="first"
    )
    table.columns = [f"ε={e:g}" for e in table.columns]
    return table


def accuracy_at(curves: pd.DataFrame, task_name: str, arch: str, method: str, epsilon: float) -> float:
    """The accuracy of one curve at ``epsilon``."""
    rows = curves[(curves.task == task_name) & (curves.kernel == arch) & (curves.method == method)]
    return float(rows.loc[np.isclose(rows.epsilon, epsilon), "accuracy"].iloc[0])


def curves_text(curves: pd.DataFrame, epsilon: float) -> str:
    """A sentence per model: clean, PGD, FGSM and noise accuracy at ``epsilon``."""

    def sentence(task_name, arch):
        clean, pgd, fgsm, noise = (
            accuracy_at(curves, task_name, arch, m, eps)
            for m, eps in [("pgd", 0.0), ("pgd", epsilon), ("fgsm", epsilon), ("noise", epsilon)]
        )
        return f"{arch} kernel, {task_name}: clean {clean:.3f}, PGD {pgd:.3f}, FGSM {fgsm:.3f}, noise {noise:.3f}"

    models = dict.fromkeys(zip(curves.task, curves.kernel))
    return (
        f"In this build, at ε = {epsilon:g}: "
        + "; ".join(sentence(t, a) for t, a in models)
        + ". Compare PGD with noise: the same size of perturbation, in a random direction."
    )


def sanity_table(models: Mapping, epsilon: float, steps: int) -> pd.DataFrame:
    """``robustness.sanity_checks`` of every model at ``epsilon``, with columns task and kernel."""
    return pd.concat(
        [
            robustness.sanity_checks(
                m.predictor.logits_fn(), m.task.x_test, m.task.labels_test, epsilon, steps=steps
            ).assign(task=task_name, kernel=arch)
            for (task_name, arch), m in models.items()
        ],
        ignore_index=True,
    )


def predicted_names(task, outputs) -> list[str]:
    """The class name each output row predicts (sign of a single output, else argmax)."""
    return [task.class_names[c] for c in attacks.predicted_class(np.asarray(outputs)).astype(int)]


def attack_figure(models: Mapping, key: tuple, epsilon: float, steps: int, n: int = 8):
    """The first ``n`` test images of ``models[key]`` ((task name, architecture)), their PGD
    adversarial versions at ``epsilon`` and the perturbations, titled by the predicted
    class. Returns the figure (``plotting.adversarial_grid``)."""
    task, predictor, _ = models[key]
    x, labels = task.x_test[:n], task.labels_test[:n]
    result = attacks.attack(predictor.logits_fn(), x, labels, epsilon, "pgd", steps=steps)
    fig = plotting.adversarial_grid(
        x,
        result.x_adv,
        [f"→ {c}" for c in predicted_names(task, predictor.predict(x))],
        [f"→ {a}" for a in predicted_names(task, predictor.predict(result.x_adv))],
    )
    fig.suptitle(f"{key[1]} kernel, {key[0]}, PGD ε = {epsilon:g}", y=1.02)
    return fig


class AuthorsComparison(NamedTuple):
    """The authors' CIFAR-10 demo rerun: the table, our three accuracies, the task."""

    table: pd.DataFrame  # clean, FGSM, PGD-10: the authors' numbers and ours
    ours: list  # our clean, FGSM and PGD-10 accuracies
    task: data.Task


def authors_comparison(setting: Mapping, seed: int) -> AuthorsComparison:
    """The authors' demo: the FC depth-1 NTK's f_∞ on ``setting`` (dataset, classes,
    n_train, n_test; a seeded random subset), attacked at ε = 8/255 by FGSM and by PGD with
    10 steps of 0.01 and no random start, beside the authors' reported numbers."""
    task = data.make_task(
        setting["dataset"],
        classes=tuple(setting["classes"]),
        n_train=setting["n_train"],
        n_test=setting["n_test"],
        seed=seed,
    )
    kernel_fn = architectures.architecture("fc", depth=1)[2]
    logits = predictors.KernelPredictor(kernel_fn, task.x_train, task.y_train).logits_fn()
    x, y = task.x_test, task.labels_test
    ours = [
        attacks.accuracy(logits(jnp.asarray(x)), y),
        attacks.attack(logits, x, y, 8 / 255, "fgsm").accuracy,
        attacks.attack(logits, x, y, 8 / 255, "pgd", steps=10, step_size=0.01).accuracy,
    ]
    table = pd.DataFrame(
        {"authors (CIFAR-10)": list(AUTHORS_CIFAR10), f"ours ({task.dataset})": ours},
        index=["clean", "FGSM ε=8/255", "PGD-10 ε=8/255"],
    )
    return AuthorsComparison(table, ours, task)


def attack_outcomes(models: Mapping, epsilon: float, steps: int) -> dict:
    """What claim 1's rule reads: for every model, named "<architecture>, <task name>", the
    per-example outcomes clean, under PGD at ``epsilon`` and under noise of that size, and
    the majority-class rate of its test set (``claims.AttackOutcomes``)."""
    found = {}
    for (task_name, arch), (task, predictor, _) in models.items():
        outcome = robustness.outcomes(predictor.logits_fn(), task.x_test, task.labels_test, epsilon, "pgd", steps=steps)
        majority = np.bincount(task.labels_test).max() / len(task.labels_test)
        found[f"{arch}, {task_name}"] = claims.AttackOutcomes(*outcome, majority)
    return found


def outcome_table(outcomes: Mapping) -> pd.DataFrame:
    """One row per predictor: clean, PGD and noise accuracy, and the accuracy PGD removes,
    each with its 95% interval."""
    return pd.DataFrame(
        [
            {
                "predictor": name,
                "clean": str(stats.accuracy(o.clean)),
                "PGD": str(stats.accuracy(o.attacked)),
                "noise": str(stats.accuracy(o.noise)),
                "removed by PGD": str(stats.paired_difference(o.clean, o.attacked)),
            }
            for name, o in outcomes.items()
        ]
    ).set_index("predictor")


def fc_summary(outcomes: Mapping, tasks: Mapping[str, str]) -> dict[str, str]:
    """The FC predictors' accuracies the report pastes, by glue key: for each task name of
    ``tasks`` (task name -> key), ``awt_fc_<key>_<clean|pgd|noise>`` with its interval."""
    return {
        f"awt_fc_{key}_{part}": str(stats.accuracy(outcome))
        for task_name, key in tasks.items()
        for part, outcome in zip(["clean", "pgd", "noise"], outcomes[f"FC, {task_name}"][:3])
    }


def resolution_text(outcomes: Mapping) -> str:
    """A sentence on what the smallest test set of ``outcomes`` can resolve, beside claim 1's
    thresholds."""
    smallest = min(len(o.clean) for o in outcomes.values())
    return (
        f"The smallest test set here has {smallest} images: on it an accuracy is told "
        f"apart from 0.5 (80% power) once it differs by "
        f"{stats.detectable_difference(smallest, 0.5):.3f}, and the parts' thresholds "
        f"are {claims.DROP:g} away."
    )


def show_authors_comparison(setting: Mapping | None, seed: int, profile: str) -> None:
    """The authors' CIFAR-10 demo where the profile sets it (``authors_comparison``): its
    table and data shown; otherwise a note that the profile does not run it. Glues (hidden)
    our clean and PGD accuracies, or the reason they are missing, for the report."""
    from IPython.display import Markdown, display
    from myst_nb import glue

    if setting:
        authors = authors_comparison(setting, seed)
        display(authors.table.round(3))
        task = authors.task
        print(task.class_names, f"{len(task.x_train)} / {len(task.x_test)} images, {task.x_train.shape[1:]}")
        clean, pgd = round(authors.ours[0], 3), round(authors.ours[2], 3)
    else:
        display(
            Markdown(
                f"*Not run under the `{profile}` profile: this comparison "
                "needs CIFAR-10, which the `paper` profile downloads.*"
            )
        )
        clean = pgd = f"not run under {profile} (needs CIFAR-10: paper profile)"
    glue("awt_authors_ours_clean", clean, display=False)
    glue("awt_authors_ours_pgd", pgd, display=False)
