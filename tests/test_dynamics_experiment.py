"""The claim-7 experiment (ntk_notes.dynamics_experiment), its tables (ntk_notes.dynamics_tables)
and its figures (ntk_notes.plotting_dynamics), end to end on a tiny setting: one seed, an 8-unit MLP, two
epochs, a 4-image probe. Checked: the runs, kernels and tables have the shapes and the
values of the primitives they gather (a kernel is the empirical NTK computed directly; a
rerun trains nothing), the report's glue keys are all produced, the checkpoint folder
depends on the settings only, and the figures hold the panels they promise."""

import hashlib
import re
from pathlib import Path

import jax
import matplotlib
import numpy as np
import pandas as pd
import pytest

from ntk_notes import attacks, claims, data, empirical, kernel_metrics, plotting_dynamics, report
from ntk_notes import dynamics_experiment as experiment
from ntk_notes import dynamics_tables as tables
from ntk_notes.profiles import settings

matplotlib.use("Agg")
REPORT = Path(__file__).resolve().parents[1] / "book" / "reproduction_report.md"


def tiny_settings():
    return settings(
        "adversarial_training_dynamics",
        "smoke",
        n_train=40,
        n_test=20,
        seeds=(0,),
        network="mlp",
        widths=(8,),
        epochs=2,
        batch_size=20,
        probe_size=4,
        top_k=2,
        eval_steps=2,
        pgd_steps=2,
    )


@pytest.fixture(scope="module")
def experiment_run(tmp_path_factory):
    cfg = tiny_settings()
    task = data.make_task(
        cfg.dataset,
        classes=cfg.classes,
        n_train=cfg.n_train,
        n_test=cfg.n_test,
        seed=cfg.seed,
        image_size=cfg.image_size,
    )
    directory = tmp_path_factory.mktemp("checkpoints")
    runs = experiment.train_runs(cfg, task, directory=directory, verbose=False)
    outcomes, final = experiment.final_outcomes(runs, task, cfg)
    kernels = experiment.probe_kernels(runs, task, cfg)
    settling, linearisations = experiment.settling_tests(runs, kernels, task, cfg)
    return dict(
        cfg=cfg,
        task=task,
        directory=directory,
        runs=runs,
        outcomes=outcomes,
        final=final,
        kernels=kernels,
        settling=settling,
        linearisations=linearisations,
    )


def test_runs_are_checkpointed_and_a_rerun_trains_nothing(experiment_run):
    cfg, runs = experiment_run["cfg"], experiment_run["runs"]
    assert set(runs) == {(0, mode) for mode in experiment.MODES}
    for (s, mode), run in runs.items():
        assert run.settings["mode"] == mode and list(run.epochs) == experiment.recorded_epochs(cfg) == [0, 1, 2]
        assert (experiment_run["directory"] / f"seed{s}-{mode}" / "epoch-0002.npz").exists()
    again = experiment.train_runs(cfg, experiment_run["task"], directory=experiment_run["directory"], verbose=False)
    assert all(run.trained == () for run in again.values())
    # The three runs of a seed start from one initialisation.
    starts = [runs[0, mode].params[0] for mode in experiment.MODES]
    assert all(kernel_metrics.relative_change(starts[0], other) == 0.0 for other in starts[1:])


def test_final_outcomes_and_the_accuracy_table(experiment_run):
    final, outcomes, n = experiment_run["final"], experiment_run["outcomes"], experiment_run["cfg"].n_test
    assert list(final.columns) == ["seed", "mode", "clean_accuracy", "robust_accuracy"] and len(final) == 3
    for row in final.itertuples():
        o = outcomes[row.seed, row.mode]
        assert isinstance(o, claims.RunOutcomes) and len(o.clean) == n
        assert row.clean_accuracy == o.clean.mean() and row.robust_accuracy == o.robust.mean()
    table = tables.accuracy_table(final, (0,), n)
    assert list(table.index) == [(name, m) for name in ("clean", "PGD") for m in experiment.MODES]
    assert table.loc[("clean", "pgd"), "over seeds"] == f"{final.clean_accuracy[2]:.3f} ± 0.000"


def test_probe_kernels_are_the_empirical_ntk_on_each_probe(experiment_run):
    cfg, task, runs, kernels = (experiment_run[k] for k in ("cfg", "task", "runs", "kernels"))
    for (s, mode), by_probe in kernels.items():
        assert list(by_probe) == ["clean", "moving", "fixed adversarial"]
        assert all(k.shape == (3, 4, 4) for k in by_probe.values())
        run = runs[s, mode]
        direct = empirical.empirical_ntk(
            run.apply_fn, run.params_at(2), task.x_train[:4], implementation="jacobian_contraction"
        )
        np.testing.assert_allclose(by_probe["clean"][2], direct, rtol=1e-4, atol=1e-6 * np.abs(direct).max())
        assert not np.allclose(by_probe["fixed adversarial"][0], by_probe["clean"][0])  # attacked inputs
    # The fixed probe is attacked once, against θ₀ of the seed: at epoch 0 all three runs agree.
    fixed = [kernels[0, mode]["fixed adversarial"][0] for mode in experiment.MODES]
    np.testing.assert_allclose(fixed[1], fixed[0], rtol=1e-6)


def test_settling_tests_curves_and_the_rule_inputs(experiment_run):
    cfg, settling, linearisations = (experiment_run[k] for k in ("cfg", "settling", "linearisations"))
    assert len(settling) == 3 * 3  # modes x probes, one seed
    row = settling[(settling["mode"] == "pgd") & (settling.probe == "clean")].iloc[0]
    expected = kernel_metrics.settling_summary(
        experiment_run["kernels"][0, "pgd"]["clean"], [0, 1, 2], cfg.settle_threshold, cfg.norm_tolerance, cfg.top_k, 1
    )
    assert row.turned == expected["turned"] and row.linearisation_epoch == linearisations[0, "pgd"].epoch
    assert experiment.linearisation_candidates(cfg) == [1]
    view = tables.settling_view(settling, cfg.top_k)
    assert view.index.names == ["probe", "mode", "seed"] and "outside_top2_end" in view.columns
    gaps = tables.linearisation_gaps(linearisations)
    assert gaps.index.names == ["mode", "seed", "linearised_from"]
    epochs = experiment.epochs_of(settling, "clean", cfg.seeds)
    assert set(epochs) == set(claims.SETTLING_TESTS) and all(len(v) == 1 for t in epochs.values() for v in t.values())
    curves = experiment.kernel_curves(experiment_run["kernels"], cfg, n_out=1)
    assert len(curves) == 3 * 3 * 3 and (curves[curves.epoch == 0]["cosine distance to K_0"].abs() < 1e-12).all()
    by_mode = experiment.outcomes_by_mode(experiment_run["outcomes"], cfg.seeds)
    assert "fixed adversarial probe" in tables.other_probes_text(settling, by_mode, 0.5, cfg.seeds)
    assert "Centred mass outside the top-2" in tables.concentration_text(settling, cfg.top_k)
    assert tables.turned_text(settling).startswith("How far training turned")


def test_the_positive_control_uses_linearised_standard_runs(experiment_run):
    cfg = experiment_run["cfg"]
    control = experiment.positive_control(
        experiment_run["runs"], experiment_run["task"], experiment_run["settling"], cfg
    )
    assert control.k0 == 1 and len(control.rows) == 1
    assert control.result.verdict in report.VERDICTS
    assert "Positive control" in tables.control_text(control)


def test_every_glue_key_the_report_pastes_is_produced(experiment_run):
    values = tables.report_values(experiment_run["settling"], experiment_run["final"], experiment_run["cfg"])
    pasted = set(re.findall(r"adversarial_training_dynamics\.ipynb::(dynamics_[a-z0-9_]+)", REPORT.read_text()))
    glued_by_the_chapter = {"dynamics_setting", "dynamics_figure", "dynamics_control_outcome"}
    assert pasted - glued_by_the_chapter == set(values)
    assert values["dynamics_top_k"] == 2 and values["dynamics_seeds"] == 1


def test_spread_by_hand():
    assert tables.spread([1.0, 3.0]) == "2.0 ± 1.0"
    assert tables.spread([1.0, np.nan, 3.0], digits=2) == "2.00 ± 1.00 (1 undefined)"
    assert tables.spread([np.nan, np.nan]) == "undefined"


def test_accuracy_summary_by_hand():
    final = pd.DataFrame(
        {
            "seed": [0] * 3,
            "mode": list(experiment.MODES),
            "clean_accuracy": [0.9, 0.8, 0.7],
            "robust_accuracy": [0.1, 0.4, 0.5],
        }
    )
    text = tables.accuracy_summary(final, 0.55)
    assert text.startswith("Predicting the most common class scores 0.55.")
    assert "+0.300 (fgsm), +0.400 (pgd)" in text
    assert experiment.majority_rate(np.array([0, 1, 1, 1])) == 0.75


def test_the_checkpoint_folder_depends_on_the_settings_and_the_compiler_only(monkeypatch, tmp_path):
    monkeypatch.setenv("NTK_NOTES_DATA", str(tmp_path))
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    cfg = tiny_settings()
    compiler = f"jax {jax.__version__}, XLA_FLAGS '--xla_backend_optimization_level=0'"
    assert cfg.network == "mlp"  # its PGD loop stays rolled: the key adds nothing for it
    digest = hashlib.sha256((repr(sorted(vars(cfg).items())) + compiler).encode()).hexdigest()[:12]
    assert experiment.checkpoint_folder(cfg) == (
        tmp_path / "checkpoints" / "adversarial_training_dynamics" / f"smoke-{digest}"
    )
    cfg.data_dir, cfg.started = "/somewhere", 123.4  # what chapter.begin adds: not settings of the runs
    assert experiment.checkpoint_folder(cfg).name == f"smoke-{digest}"
    monkeypatch.setenv("XLA_FLAGS", "")  # compiled otherwise: the last bits of every result differ
    assert experiment.checkpoint_folder(cfg).name != f"smoke-{digest}"
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    cfg.epochs = 3
    assert experiment.checkpoint_folder(cfg).name != f"smoke-{digest}"
    # A CNN's PGD loop unrolled (attacks.loop_unroll) rounds otherwise than the rolled one: another folder.
    cfg.epochs, cfg.network, cfg.pgd_steps = tiny_settings().epochs, "cnn", attacks.MAX_UNROLLED_STEPS + 1
    monkeypatch.setenv("XLA_FLAGS", "")  # optimised: a long attack keeps its loop
    rolled = experiment.checkpoint_folder(cfg).name
    monkeypatch.setattr(attacks, "MAX_UNROLLED_STEPS", cfg.pgd_steps)
    assert experiment.checkpoint_folder(cfg).name != rolled


def test_describe_names_the_setting():
    text = experiment.describe(tiny_settings())
    assert text.startswith("mnist-5k, digits 3 vs 5, 8² images, 40 train / 20 test; MLP (8,), 2 epochs")


# ---------------------------------------------------------------------------- figures


def test_turning_and_growing_has_a_column_per_probe(experiment_run):
    curves = experiment.kernel_curves(experiment_run["kernels"], experiment_run["cfg"], n_out=1)
    fig = plotting_dynamics.turning_and_growing(curves, experiment.PROBES)
    axes = np.array(fig.axes).reshape(2, 3)
    assert [ax.get_title() for ax in axes[0]] == [f"{p} probe" for p in experiment.PROBES]
    assert all(ax.get_yscale() == "log" for ax in axes[1]) and axes[0, 0].get_yscale() == "linear"
    assert axes[1, 0].get_ylabel() == "‖K_t‖ / ‖K_0‖"
    assert all(len(ax.get_lines()) >= 3 for ax in fig.axes)  # one line per mode
    assert axes[0, 0].get_legend() is not None and axes[0, 1].get_legend() is None
    matplotlib.pyplot.close(fig)


def test_distance_heatmaps_one_panel_per_mode(experiment_run):
    kernels = {mode: experiment_run["kernels"][0, mode]["clean"] for mode in experiment.MODES}
    fig = plotting_dynamics.distance_heatmaps(kernels)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == list(experiment.MODES)  # the others are colour bars
    mesh = panels[0].collections[0].get_array().reshape(3, 3)
    np.testing.assert_allclose(mesh, kernel_metrics.distance_matrix(kernels["standard"]))
    # One colour scale for every panel, from 0 to the largest distance, and one colour bar.
    top = max(kernel_metrics.distance_matrix(k).max() for k in kernels.values())
    assert {ax.collections[0].get_clim() for ax in panels} == {(0, top)}
    assert len(fig.axes) == len(panels) + 1
    matplotlib.pyplot.close(fig)


def test_concentration_panels(experiment_run):
    curves = experiment.kernel_curves(experiment_run["kernels"], experiment_run["cfg"], n_out=1)
    grid = plotting_dynamics.concentration(curves, experiment.outside_label(2))
    assert len(grid.axes.flat) == 3 and grid.axes.flat[0].get_ylabel() == "centred mass outside top 2"
    matplotlib.pyplot.close(grid.figure)
