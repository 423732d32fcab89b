"""The infinite-width kernel as a predictor, and how finite networks converge to it.

Kernel predictors f_∞ and f_t of several architectures on one task, the gradient-flow
curves of f_t, a sweep over widths of trained finite networks measured against their
infinite-width limit (the lazy regime), and the kernel's spectrum with the share of the
labels in its top eigenvectors.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ntk_notes import architectures, attacks, empirical, kernel_metrics, kernels, plotting, spectral, training
from ntk_notes.predictors import KernelPredictor

TAU = "τ = λ₁t/N"  # the column of the flow curves' time axis
SLOPE_COLUMNS = ("distance to own limit", "parameter change", "kernel change")


def describe(cfg: SimpleNamespace) -> str:
    """The one-line description of the chapter's setting (data, sizes, depths, widths)."""
    return (
        f"{cfg.dataset}, digits {cfg.classes[0]} vs {cfg.classes[1]}, {cfg.image_size}² images, "
        f"{cfg.n_train} train / {cfg.n_test} test; FC depths {', '.join(map(str, cfg.depths))}, "
        f"widths {min(cfg.widths)} to {max(cfg.widths)}, seeds {', '.join(map(str, cfg.seeds))}"
    )


def fit_predictors(specs: Mapping[str, tuple], task) -> tuple[dict, pd.DataFrame]:
    """The kernel predictor of every architecture (label -> (``architectures.architecture`` name,
    depth)) on ``task``, with its test-train kernel. Returns ({label: (predictor, k_test)},
    a table of the time to compute and solve, and train and test accuracy of f_∞)."""
    x_train, y_train, x_test = jnp.asarray(task.x_train), jnp.asarray(task.y_train), jnp.asarray(task.x_test)
    predictors, rows = {}, []
    for label, (name, depth) in specs.items():
        kernel_fn = architectures.architecture(name, depth)[2]
        start = time.perf_counter()
        predictor = KernelPredictor(kernel_fn, x_train, y_train)
        k_test = kernels.kernel_matrix(kernel_fn, x_test, x_train)
        seconds = time.perf_counter() - start
        predictors[label] = (predictor, k_test)
        train_outputs = predictor.predict(x_train, k_test_train=predictor.k_train_train)
        rows.append(
            {
                "architecture": label,
                "kernel + solve (s)": round(seconds, 2),
                "train accuracy f_∞": attacks.accuracy(train_outputs, task.labels_train),
                "test accuracy f_∞": attacks.accuracy(predictor.predict(x_test, k_test_train=k_test), task.labels_test),
            }
        )
    return predictors, pd.DataFrame(rows).set_index("architecture")


def accuracy_text(table: pd.DataFrame) -> str:
    """A sentence on the range of f_∞'s train and test accuracy in ``fit_predictors``'s table."""
    train, test = table["train accuracy f_∞"], table["test accuracy f_∞"]
    train_range = f"{train.min():.3f}" + (
        f" to {train.max():.3f}" if train.min() < train.max() else " for every kernel"
    )
    return (
        f"In this build f_∞ has train accuracy {train_range} and test accuracy "
        f"{test.min():.3f} ({test.idxmin()}) to {test.max():.3f} ({test.idxmax()})."
    )


def flow_curves(predictors: Mapping, task, taus) -> pd.DataFrame:
    """Test accuracy and training loss of the gradient-flow predictor f_t of every predictor
    (label -> (predictor, k_test)) at the times τ = λ₁ t / N of ``taus``: columns
    architecture, τ, test accuracy, train loss."""
    x_train, x_test = jnp.asarray(task.x_train), jnp.asarray(task.x_test)
    rows = []
    for label, (predictor, k_test) in predictors.items():
        top = predictor.eigen[0][0]
        for tau in taus:
            t = tau * predictor.y_train.size / top
            train_outputs = predictor.predict(x_train, t, k_test_train=predictor.k_train_train)
            rows.append(
                {
                    "architecture": label,
                    TAU: tau,
                    "test accuracy": attacks.accuracy(
                        predictor.predict(x_test, t, k_test_train=k_test), task.labels_test
                    ),
                    "train loss": 0.5 * float(np.mean((train_outputs - task.y_train) ** 2)),
                }
            )
    return pd.DataFrame(rows)


def flow_figure(curves: pd.DataFrame):
    """Test accuracy and training loss of f_t against τ (log axes), one line per
    architecture. Returns the figure."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    sns.lineplot(curves, x=TAU, y="test accuracy", hue="architecture", ax=axes[0])
    sns.lineplot(curves, x=TAU, y="train loss", hue="architecture", ax=axes[1], legend=False)
    for ax in axes:
        ax.set_xscale("log")
    axes[1].set_yscale("log")
    axes[0].set_title("test accuracy of f_t")
    axes[1].set_title("training loss of f_t")
    fig.tight_layout()
    return fig


def early_accuracy(curve: pd.DataFrame) -> tuple[float, float]:
    """τ at which test accuracy first comes within 0.01 of its best, and the training loss
    there as a share of its value at the first τ."""
    first = curve[curve["test accuracy"] >= curve["test accuracy"].max() - 0.01].iloc[0]
    return first[TAU], first["train loss"] / curve["train loss"].iloc[0]


def early_text(curves: pd.DataFrame) -> str:
    """A sentence on ``early_accuracy`` of every architecture's curve."""
    first_tau = curves[TAU].iloc[0]
    early = {label: early_accuracy(curve) for label, curve in curves.groupby("architecture", sort=False)}
    return (
        "In this build test accuracy comes within 0.01 of its best at "
        + "; ".join(
            f"τ = {tau:.3g} for {label}, where the training loss is still {share:.2g} of its value at τ = {first_tau:g}"
            for label, (tau, share) in early.items()
        )
        + "."
    )


def rms(a, b) -> float:
    """Root-mean-square distance between two arrays of outputs."""
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def width_sweep(
    reference,
    k_test,
    task,
    widths: Sequence[int],
    seeds: Sequence[int],
    learning_rate: float,
    steps: int,
    probe_size: int,
    mean_prediction=None,
) -> pd.DataFrame:
    """Train an FC depth-1 network (full-batch gradient descent on the squared loss, ``steps``
    steps at ``learning_rate``) for every width and seed, and compare it with the kernel
    predictor ``reference`` (its k_test: the test-train kernel) at the training time
    t = learning_rate × steps: the RMS distance of its test outputs to its own limit f^lin_t
    (the kernel flow from its initial outputs) and to ``mean_prediction`` (f_t from f_0 = 0,
    computed if not given), and the relative change of its parameters and of its empirical
    NTK on the first ``probe_size`` training images. One row per (width, seed)."""
    x_train, y_train, x_test = jnp.asarray(task.x_train), jnp.asarray(task.y_train), jnp.asarray(task.x_test)
    t_train = learning_rate * steps
    if mean_prediction is None:
        mean_prediction = reference.predict(x_test, t_train, k_test_train=k_test)
    probe = x_train[:probe_size]
    runs = []
    for width in widths:
        init_fn, apply_fn, _ = architectures.architecture("fc", 1, width=width)
        for seed in seeds:
            _, params = init_fn(jax.random.PRNGKey(seed), x_train.shape)
            start = time.perf_counter()
            net = training.train(apply_fn, params, x_train, y_train, learning_rate, steps)
            outputs = np.asarray(apply_fn(net.params, x_test))
            own_limit = reference.predict(
                x_test,
                t_train,
                k_test_train=k_test,
                f0_train=apply_fn(params, x_train),
                f0_test=apply_fn(params, x_test),
            )
            # NTK-vector products never hold the probe's Jacobian (64 x 1.6M parameters at
            # width 8192): the chapter peaks at 1.6 GB instead of 2.2 GB, same kernel.
            kernel_0 = empirical.empirical_ntk(
                apply_fn, net.params_init, probe, trace=True, implementation="ntk_vector_products"
            )
            kernel_t = empirical.empirical_ntk(
                apply_fn, net.params, probe, trace=True, implementation="ntk_vector_products"
            )
            runs.append(
                {
                    "width": width,
                    "seed": seed,
                    "seconds": time.perf_counter() - start,
                    "train loss": net.losses[-1],
                    "test accuracy": attacks.accuracy(outputs, task.labels_test),
                    "distance to own limit": rms(outputs, own_limit),
                    "distance to f_t": rms(outputs, mean_prediction),
                    "parameter change": kernel_metrics.relative_change(net.params_init, net.params),
                    "kernel change": kernel_metrics.relative_change(kernel_0, kernel_t),
                }
            )
    return pd.DataFrame(runs)


def width_figure(runs: pd.DataFrame):
    """Against width (log-log, mean ± sd over seeds): the RMS distances of the networks'
    test outputs to their own limit and to f_t, and the relative change of parameters and
    empirical NTK. Returns the figure."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    distance = "RMS distance of test outputs"
    long = runs.melt(
        id_vars=["width", "seed"],
        value_vars=["distance to own limit", "distance to f_t"],
        var_name="compared with",
        value_name=distance,
    )
    sns.lineplot(long, x="width", y=distance, hue="compared with", marker="o", errorbar="sd", ax=axes[0])
    change = "‖after − before‖ / ‖before‖"
    moves = runs.melt(
        id_vars=["width", "seed"],
        value_vars=["parameter change", "kernel change"],
        var_name="relative change during training",
        value_name=change,
    )
    sns.lineplot(
        moves, x="width", y=change, hue="relative change during training", marker="o", errorbar="sd", ax=axes[1]
    )
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
    axes[0].set_title("finite network vs infinite-width prediction")
    axes[1].set_title("how far training moves the network")
    fig.tight_layout()
    return fig


def width_slopes(runs: pd.DataFrame, columns: Sequence[str] = SLOPE_COLUMNS) -> dict[str, float]:
    """The log-log slope against width of the mean over seeds of each of ``columns``."""
    means = runs.groupby("width").mean(numeric_only=True)
    return {column: plotting.loglog_slope(means.index, means[column]) for column in columns}


def distance_text(runs: pd.DataFrame) -> str:
    """A sentence on how the mean distances to f_t and to the own limit fall with width."""
    means = runs.groupby("width").mean(numeric_only=True)
    to_mean, to_own = means["distance to f_t"], means["distance to own limit"]
    slope_to_mean = plotting.loglog_slope(means.index, to_mean)
    return (
        f"In this build the distance to f_t has log-log slope {slope_to_mean:.2f} "
        f"against width and goes from {to_mean.iloc[0]:.3g} at width {means.index[0]} "
        f"to {to_mean.iloc[-1]:.3g} at width {means.index[-1]}; the distance to the "
        f"network's own limit goes from {to_own.iloc[0]:.3g} to {to_own.iloc[-1]:.3g}."
    )


def spectrum_figure(predictors: Mapping, y_train):
    """The normalised eigenvalues λᵢ / λ₁ of every predictor's training kernel (log-log) and
    the label energy E_k, the share of the labels in the top-k eigenvectors. Returns the
    figure."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, (predictor, _) in predictors.items():
        values, vectors = predictor.eigen
        index = np.arange(1, len(values) + 1)
        axes[0].loglog(index, values / values[0], label=label)
        axes[1].semilogx(index, spectral.label_energy(vectors, y_train), label=label)
    axes[0].set(xlabel="index i", ylabel="λᵢ / λ₁", title="eigenvalues of Θ(X, X)")
    axes[1].set(xlabel="k", ylabel="E_k", title="share of the labels in the top-k eigenvectors")
    axes[0].legend()
    fig.tight_layout()
    return fig


def energy_table(predictors: Mapping, y_train, ks: Sequence[int] = (1, 10, 50)) -> pd.DataFrame:
    """The label energy E_k of every predictor at each k of ``ks`` (that is at most N)."""
    rows = []
    for label, (predictor, _) in predictors.items():
        energy = spectral.label_energy(predictor.eigen[1], y_train)
        rows.append(
            {"architecture": label, **{f"E_{k}": round(float(energy[k - 1]), 3) for k in ks if k <= len(energy)}}
        )
    return pd.DataFrame(rows).set_index("architecture")


def spectrum_text(predictors: Mapping, y_train) -> str:
    """A sentence per predictor: λ₁/λ₂, the cosine of v₁ with the constant vector, E_1, E_10."""

    def summary(label, predictor):
        values, vectors = predictor.eigen
        energy = spectral.label_energy(vectors, y_train)
        constant = abs(vectors[:, 0].sum()) / np.sqrt(len(vectors))
        return (
            f"{label}: λ₁/λ₂ = {values[0] / values[1]:.3g}, cosine of v₁ with the "
            f"constant vector {constant:.3f}, E_1 = {energy[0]:.3f}, "
            f"E_10 = {energy[min(9, len(energy) - 1)]:.3f}"
        )

    return "In this build: " + "; ".join(summary(label, p) for label, (p, _) in predictors.items()) + "."
