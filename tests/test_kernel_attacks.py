"""Attacks on kernel predictors drawn on small real tasks (the adversarial-without-training
chapter's logic)."""

from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest

from ntk_notes import attacks, claims, kernel_attacks, stats

TASKS = {"3 vs 5": (3, 5), "10 classes": None}
SIZES = {"FC": dict(image_size=6, n_train=30, n_test=12), "Conv": dict(image_size=4, n_train=20, n_test=8)}


@pytest.fixture(scope="module")
def models():
    return kernel_attacks.draw_models("mnist-5k", TASKS, SIZES, seed=0)


@pytest.fixture(scope="module")
def curves(models):
    return kernel_attacks.epsilon_curves(models, [0.0, 0.3], steps=3)


def test_draw_models_fits_one_interpolating_predictor_per_task_and_architecture(models):
    assert list(models) == [("3 vs 5", "FC"), ("3 vs 5", "Conv"), ("10 classes", "FC"), ("10 classes", "Conv")]
    for (task_name, arch), (task, predictor, seconds) in models.items():
        assert task.x_train.shape == (SIZES[arch]["n_train"],) + (SIZES[arch]["image_size"],) * 2 + (1,)
        assert task.y_train.shape[1] == (1 if task_name == "3 vs 5" else 10)
        np.testing.assert_allclose(predictor.predict(task.x_train), task.y_train, atol=1e-2)  # f_∞ interpolates
        assert seconds > 0
    again = kernel_attacks.draw_models("mnist-5k", {"3 vs 5": (3, 5)}, {"FC": SIZES["FC"]}, seed=0)
    other = kernel_attacks.draw_models("mnist-5k", {"3 vs 5": (3, 5)}, {"FC": SIZES["FC"]}, seed=1)
    np.testing.assert_array_equal(again["3 vs 5", "FC"].task.x_train, models["3 vs 5", "FC"].task.x_train)
    assert not np.array_equal(other["3 vs 5", "FC"].task.x_train, models["3 vs 5", "FC"].task.x_train)


def test_fit_table_reports_sizes_and_clean_accuracy(models):
    table = kernel_attacks.fit_table(models)
    assert list(table.index) == list(models)
    row = table.loc[("3 vs 5", "FC")]
    assert row["images"] == "6²" and row["train / test"] == "30 / 12"
    task, predictor, _ = models["3 vs 5", "FC"]
    assert row["clean test accuracy"] == attacks.accuracy(predictor.predict(task.x_test), task.labels_test)


def test_epsilon_curves_start_at_the_clean_accuracy_and_pgd_does_not_lose_to_noise(models, curves):
    table = kernel_attacks.fit_table(models)
    assert len(curves) == len(models) * 3 * 2
    for task_name, arch in models:
        clean = table.loc[(task_name, arch), "clean test accuracy"]
        for method in ("fgsm", "pgd", "noise"):
            assert kernel_attacks.accuracy_at(curves, task_name, arch, method, 0.0) == pytest.approx(clean)
        pgd = kernel_attacks.accuracy_at(curves, task_name, arch, "pgd", 0.3)
        assert pgd <= kernel_attacks.accuracy_at(curves, task_name, arch, "noise", 0.3)
        assert pgd < clean


def test_curve_table_and_text_show_every_model(models, curves):
    table = kernel_attacks.curve_table(curves, models)
    assert list(table.columns) == ["ε=0", "ε=0.3"]
    assert len(table) == len(models) * 3
    cell = table.loc[("3 vs 5", "FC", "pgd"), "ε=0.3"]
    accuracy = kernel_attacks.accuracy_at(curves, "3 vs 5", "FC", "pgd", 0.3)
    assert cell == stats.accuracy_text(accuracy, 12)
    text = kernel_attacks.curves_text(curves, 0.3)
    assert text.startswith("In this build, at ε = 0.3: FC kernel, 3 vs 5: clean ")
    assert text.count("kernel, ") == len(models)


def test_curves_figure_has_one_panel_per_task(curves):
    fig = kernel_attacks.curves_figure(curves)
    assert [ax.get_title() for ax in fig.axes] == ["task = 3 vs 5", "task = 10 classes"]
    assert fig.axes[0].get_ylim() == pytest.approx((-0.02, 1.02))
    plt.close(fig)


def test_sanity_table_runs_the_five_checks_on_every_model(models):
    binary = {key: model for key, model in models.items() if key[0] == "3 vs 5"}
    checks = kernel_attacks.sanity_table(binary, 0.1, steps=3)
    assert len(checks) == 5 * len(binary)
    assert set(checks.columns) >= {"check", "passed", "task", "kernel"}
    assert checks.groupby(["task", "kernel"]).size().eq(5).all()


def test_predicted_names_read_the_sign_of_one_output_and_the_argmax_of_several():
    task = SimpleNamespace(class_names=("3", "5"))
    assert kernel_attacks.predicted_names(task, [[-0.5], [2.0]]) == ["3", "5"]
    task = SimpleNamespace(class_names=tuple("abc"))
    assert kernel_attacks.predicted_names(task, [[0, 1, 0], [3, 1, 2]]) == ["b", "a"]


def test_attack_figure_shows_clean_adversarial_and_perturbation_rows(models):
    fig = kernel_attacks.attack_figure(models, ("3 vs 5", "FC"), 0.1, steps=3, n=4)
    assert len(fig.axes) == 3 * 4
    assert fig.axes[0].get_title().startswith("→ ") and fig.axes[4].get_title().startswith("→ ")
    assert fig._suptitle.get_text() == "FC kernel, 3 vs 5, PGD ε = 0.1"
    plt.close(fig)


def test_attack_outcomes_feed_claim_1_and_the_tables(models):
    found = kernel_attacks.attack_outcomes(models, 0.3, steps=3)
    assert list(found) == ["FC, 3 vs 5", "Conv, 3 vs 5", "FC, 10 classes", "Conv, 10 classes"]
    task, predictor, _ = models["3 vs 5", "FC"]
    outcome = found["FC, 3 vs 5"]
    assert isinstance(outcome, claims.AttackOutcomes)
    assert outcome.clean.mean() == pytest.approx(attacks.accuracy(predictor.predict(task.x_test), task.labels_test))
    assert outcome.majority == np.bincount(task.labels_test).max() / 12
    result = claims.claim1(found, 20, 20)
    assert result.claim == "1"

    table = kernel_attacks.outcome_table(found)
    assert list(table.index) == list(found)
    assert table.loc["FC, 3 vs 5", "clean"] == str(stats.accuracy(outcome.clean))
    summary = kernel_attacks.fc_summary(found, {"3 vs 5": "binary", "10 classes": "multiclass"})
    assert list(summary) == [f"awt_fc_{k}_{p}" for k in ("binary", "multiclass") for p in ("clean", "pgd", "noise")]
    assert summary["awt_fc_binary_pgd"] == str(stats.accuracy(outcome.attacked))
    assert "smallest test set here has 8 images" in kernel_attacks.resolution_text(found)


def test_authors_comparison_runs_on_stand_in_data():
    stand_in = {"dataset": "mnist-5k", "classes": [0, 1], "n_train": 20, "n_test": 8}
    found = kernel_attacks.authors_comparison(stand_in, seed=0)
    assert list(found.table.index) == ["clean", "FGSM ε=8/255", "PGD-10 ε=8/255"]
    assert list(found.table["authors (CIFAR-10)"]) == list(kernel_attacks.AUTHORS_CIFAR10)
    assert list(found.table["ours (mnist-5k)"]) == found.ours
    assert found.ours[2] <= found.ours[0] and len(found.task.x_test) == 8


def test_describe_names_both_tasks_and_kernels():
    cfg = SimpleNamespace(dataset="mnist-5k", binary_classes=(3, 5), fc=SIZES["FC"], conv=SIZES["Conv"])
    assert kernel_attacks.describe(cfg) == (
        "mnist-5k, digits 3 vs 5 and all ten digits; FC kernel on 6² images, 30 train / 12 test; "
        "Conv kernel on 4² images, 20 train / 8 test"
    )


def test_the_authors_comparison_is_shown_and_glued_where_the_profile_sets_it(monkeypatch):
    """The `paper` profile's CIFAR-10 section cannot download here: its code runs on MNIST
    digits 0 vs 1, passed as papermill passes a parameter (lists, not tuples)."""
    import IPython.display
    import myst_nb

    glued, shown = {}, []
    monkeypatch.setattr(myst_nb, "glue", lambda key, value, display=True: glued.__setitem__(key, value))
    monkeypatch.setattr(IPython.display, "display", lambda *objects: shown.extend(objects))
    stand_in = {"dataset": "mnist-5k", "classes": [0, 1], "n_train": 20, "n_test": 8}
    kernel_attacks.show_authors_comparison(stand_in, 0, "paper")
    table = shown[0]
    assert list(table.columns) == ["authors (CIFAR-10)", "ours (mnist-5k)"]
    assert glued["awt_authors_ours_clean"] == table.loc["clean", "ours (mnist-5k)"]
    assert glued["awt_authors_ours_pgd"] == table.loc["PGD-10 ε=8/255", "ours (mnist-5k)"]


def test_the_authors_comparison_says_why_it_did_not_run(monkeypatch):
    import myst_nb

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda key, value, display=True: glued.__setitem__(key, value))
    kernel_attacks.show_authors_comparison(None, 0, "smoke")
    assert glued["awt_authors_ours_clean"] == glued["awt_authors_ours_pgd"]
    assert "not run under smoke" in glued["awt_authors_ours_clean"]
