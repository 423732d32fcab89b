"""Kernel predictors, gradient-flow curves, the width sweep and the spectrum summaries of the
NTK-in-practice chapter, on small real tasks and on inputs with known answers."""

from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from ntk_notes import convergence, data, training

ARCHITECTURES = {"FC depth 1": ("fc", 1), "FC depth 2": ("fc", 2)}


@pytest.fixture(scope="module")
def task():
    return data.make_task("mnist-5k", classes=(3, 5), n_train=24, n_test=16, seed=0, image_size=6)


@pytest.fixture(scope="module")
def fitted(task):
    return convergence.fit_predictors(ARCHITECTURES, task)


def test_fit_predictors_interpolate_the_training_set(task, fitted):
    predictors, table = fitted
    assert list(predictors) == list(table.index) == list(ARCHITECTURES)
    assert (table["train accuracy f_∞"] == 1.0).all()
    _, k_test = predictors["FC depth 1"]
    assert k_test.shape == (16, 24)
    assert 0.5 <= table.loc["FC depth 1", "test accuracy f_∞"] <= 1.0


def test_accuracy_text_names_the_range_and_the_extremes():
    table = pd.DataFrame(
        {"train accuracy f_∞": [1.0, 1.0], "test accuracy f_∞": [0.8, 0.9]},
        index=pd.Index(["A", "B"], name="architecture"),
    )
    assert convergence.accuracy_text(table) == (
        "In this build f_∞ has train accuracy 1.000 for every kernel and test accuracy 0.800 (A) to 0.900 (B)."
    )
    table.loc["A", "train accuracy f_∞"] = 0.95
    assert "train accuracy 0.950 to 1.000 and" in convergence.accuracy_text(table)


def test_flow_curves_go_from_zero_to_f_infinity(task, fitted):
    predictors, table = fitted
    taus = np.logspace(-3, 6, 10)
    curves = convergence.flow_curves(predictors, task, taus)
    assert len(curves) == 2 * len(taus)
    for label, curve in curves.groupby("architecture"):
        loss = curve["train loss"].to_numpy()
        assert loss[0] == pytest.approx(0.5, rel=0.02)  # f_t ≈ 0 at the start: ½ mean(y²) = ½
        assert np.all(loss[1:] <= loss[:-1] * (1 + 1e-3) + 1e-6)  # gradient flow never raises the loss
        assert loss[-1] < 1e-3
        assert curve["test accuracy"].iloc[-1] == table.loc[label, "test accuracy f_∞"]
    fig = convergence.flow_figure(curves)
    assert [ax.get_title() for ax in fig.axes] == ["test accuracy of f_t", "training loss of f_t"]
    assert [ax.get_xscale() for ax in fig.axes] == ["log", "log"] and fig.axes[1].get_yscale() == "log"
    assert len(fig.axes[0].get_legend().get_texts()) == 2
    plt.close(fig)
    assert convergence.early_text(curves).startswith("In this build test accuracy comes within 0.01")


def test_early_accuracy_finds_the_first_time_within_a_hundredth_of_the_best():
    curve = pd.DataFrame(
        {
            convergence.TAU: [0.1, 1.0, 10.0, 100.0],
            "test accuracy": [0.5, 0.895, 0.9, 0.9],
            "train loss": [0.5, 0.25, 0.05, 0.01],
        }
    )
    assert convergence.early_accuracy(curve) == (1.0, 0.5)


def test_width_sweep_moves_wide_networks_less(task, fitted):
    reference, k_test = fitted[0]["FC depth 1"]
    rate = training.stable_learning_rate(reference.k_train_train)
    runs = convergence.width_sweep(
        reference, k_test, task, widths=(16, 1024), seeds=(0, 1), learning_rate=rate, steps=20, probe_size=6
    )
    assert list(runs[["width", "seed"]].itertuples(index=False, name=None)) == [(16, 0), (16, 1), (1024, 0), (1024, 1)]
    means = runs.groupby("width").mean(numeric_only=True)
    assert (runs["parameter change"] > 0).all()
    # The lazy regime: parameters and kernel move less, and the network stays closer to
    # its own infinite-width limit, the wider it is.
    for column in ("parameter change", "kernel change", "distance to own limit"):
        assert means.loc[1024, column] < means.loc[16, column]
    slopes = convergence.width_slopes(runs)
    assert list(slopes) == list(convergence.SLOPE_COLUMNS) and slopes["parameter change"] < 0
    fig = convergence.width_figure(runs)
    assert [ax.get_xscale() for ax in fig.axes] == ["log", "log"]
    assert fig.axes[0].get_title() == "finite network vs infinite-width prediction"
    plt.close(fig)


def test_width_slopes_and_distance_text_on_a_power_law():
    widths = np.array([64, 256, 1024])
    runs = pd.DataFrame(
        {
            "width": widths,
            "seed": 0,
            "distance to own limit": widths**-0.5,
            "parameter change": 3 * widths**-1.0,
            "kernel change": widths**-0.25,
            "distance to f_t": np.full(3, 0.7),
        }
    )
    slopes = convergence.width_slopes(runs)
    assert slopes == pytest.approx({"distance to own limit": -0.5, "parameter change": -1.0, "kernel change": -0.25})
    text = convergence.distance_text(runs)
    assert "slope 0.00 against width and goes from 0.7 at width 64 to 0.7 at width 1024" in text
    assert text.endswith("goes from 0.125 to 0.0312.")


def test_spectrum_figure_and_label_energies(task, fitted):
    predictors, _ = fitted
    table = convergence.energy_table(predictors, task.y_train)
    assert list(table.columns) == ["E_1", "E_10"]  # no E_50 with 24 training images
    assert (table["E_1"] <= table["E_10"]).all() and (table.to_numpy() <= 1).all()
    assert convergence.energy_table(predictors, task.y_train, ks=(24,)).to_numpy() == pytest.approx(1.0, abs=1e-3)
    fig = convergence.spectrum_figure(predictors, task.y_train)
    assert [len(ax.lines) for ax in fig.axes] == [2, 2]
    assert fig.axes[0].lines[0].get_ydata()[0] == pytest.approx(1.0)  # λ₁ / λ₁
    plt.close(fig)


def test_spectrum_text_sees_a_constant_top_eigenvector():
    n = 4
    vectors = np.linalg.qr(np.column_stack([np.ones(n), np.eye(n)[:, :3]]))[0]
    predictor = SimpleNamespace(eigen=(np.array([8.0, 2.0, 1.0, 0.5]), vectors))
    y = (vectors[:, 1] * 2).reshape(n, 1)  # the labels lie along the second eigenvector
    text = convergence.spectrum_text({"K": (predictor, None)}, y)
    assert text == (
        "In this build: K: λ₁/λ₂ = 4, cosine of v₁ with the constant vector 1.000, E_1 = 0.000, E_10 = 1.000."
    )


def test_describe_names_sizes_depths_and_widths():
    cfg = SimpleNamespace(
        dataset="mnist-5k",
        classes=(3, 5),
        image_size=14,
        n_train=64,
        n_test=64,
        depths=(1, 2),
        widths=(64, 256),
        seeds=(0,),
    )
    assert convergence.describe(cfg) == (
        "mnist-5k, digits 3 vs 5, 14² images, 64 train / 64 test; FC depths 1, 2, widths 64 to 256, seeds 0"
    )
