"""The eigen-feature experiments (ntk_notes.features) and their figures (ntk_notes.feature_figures)
on a tiny MNIST 3 vs 5 task: each call against the package routines it strings together, and
every figure's axes and artists."""

from types import SimpleNamespace

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from ntk_notes import architectures, attacks, claims, data, feature_figures, features, predictors, spectral, stats

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def cfg():
    return SimpleNamespace(
        dataset="mnist-5k",
        classes=(3, 5),
        n_train=30,
        n_test=16,
        image_size=8,
        seed=0,
        seeds=(0, 1),
        data_dir=None,
        epsilon=0.1,
        pgd_steps=2,
        top_k=3,
        n_ks=4,
        n_times=3,
        multiclass=dict(n_train=30, n_test=10),
        authors_setting=None,
        profile="smoke",
    )


@pytest.fixture(scope="module")
def fitted(cfg):
    task, predictor = features.fc_predictor(cfg)
    weights = spectral.feature_weights(predictor)
    scored = features.score_every_feature(predictor, weights, task.x_test, task.labels_test, cfg.epsilon, cfg.pgd_steps)
    return SimpleNamespace(task=task, predictor=predictor, weights=weights, scored=scored)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_fc_predictor_is_the_fc_kernel_fit_on_the_draw_and_is_cached(cfg, fitted):
    task = data.make_task("mnist-5k", classes=(3, 5), n_train=30, n_test=16, seed=0, image_size=8)
    np.testing.assert_array_equal(fitted.task.x_train, task.x_train)
    direct = predictors.KernelPredictor(architectures.architecture("fc", depth=1)[2], task.x_train, task.y_train)
    np.testing.assert_allclose(fitted.predictor.predict(task.x_test), direct.predict(task.x_test), rtol=1e-6)
    assert features.fc_predictor(cfg, 0)[1] is fitted.predictor  # the main task is the first draw: fitted once
    other, _ = features.fc_predictor(cfg, 1)
    assert not np.array_equal(other.x_train, task.x_train)
    with pytest.raises(ValueError, match=r"no setting named \['width'\]"):
        features.fc_predictor(cfg, width=3)


def test_draws_run_the_rule_on_every_seed(cfg):
    seen = features.draws(cfg, lambda task, predictor: (task.x_train.sum(), len(predictor.y_train)))
    assert list(seen) == [0, 1] and seen[0][1] == seen[1][1] == 30
    assert seen[0][0] == features.fc_predictor(cfg, 0)[0].x_train.sum()


def test_every_feature_scored_under_fgsm_and_pgd(cfg, fitted):
    table, fgsm, pgd = fitted.scored.table, fitted.scored.fgsm, fitted.scored.pgd
    assert list(table.index) == list(range(1, 31)) and table.index.name == "index"
    np.testing.assert_array_equal(table.eigenvalue, fitted.predictor.eigen[0])
    reference = spectral.feature_scores(
        fitted.predictor,
        fitted.weights,
        fitted.task.x_test,
        fitted.task.labels_test,
        cfg.epsilon,
        "pgd",
        steps=cfg.pgd_steps,
    )
    np.testing.assert_array_equal(table["robustness (PGD)"], reference.robustness)
    np.testing.assert_array_equal(table.usefulness, fgsm.usefulness)
    np.testing.assert_array_equal(pgd.clean_correct, fgsm.clean_correct)
    assert set(fitted.scored.seconds) == {"FGSM", "PGD"}


def test_band_summary_and_interval_table(fitted):
    table, pgd = fitted.scored.table, fitted.scored.pgd
    text = features.band_summary(table)
    top = f"i in [1, 2): {table.usefulness[1]:.2f} / {table['robustness (PGD)'][1]:.2f}"
    middle = table.loc[2:10]
    assert top in text
    assert f"i in [2, 11): {middle.usefulness.mean():.2f} / {middle['robustness (PGD)'].mean():.2f}" in text
    assert "i in [11, 31)" in text
    shown = features.interval_table([1, 4], {"useful": pgd.clean_correct})
    assert list(shown.index) == [1, 4]
    assert shown.loc[4, "useful"] == str(stats.accuracy(pgd.clean_correct[3]))


def test_describe_scoring_text_and_detail_table(cfg, fitted):
    assert features.describe(cfg) == "mnist-5k, digits 3 vs 5, 8² images, 30 train / 16 test; FC kernel; ε = 0.1"
    gap_line, time_line = features.scoring_text(fitted.scored, fitted.predictor, fitted.task.x_test, 2).split("\n")
    assert gap_line.startswith("Σᵢ φᵢ = f_∞ on the test set: largest difference ")
    assert float(gap_line.rsplit(" ", 1)[1]) < 1e-3  # the features add up to f_∞
    assert time_line.startswith("all 30 features scored: FGSM in ") and " s, PGD-2 in " in time_line
    detail = features.detail_table(fitted.scored)
    assert list(detail.index) == [1, 2, 3, 4, 11, 16, 26]  # DETAIL_INDICES up to F = 30
    assert list(detail.columns) == ["usefulness", "robustness (FGSM)", "robustness (PGD)"]
    assert detail.loc[11, "robustness (FGSM)"] == str(stats.accuracy(fitted.scored.fgsm.robust_correct[10]))
    assert detail.loc[4, "usefulness"] == str(stats.accuracy(fitted.scored.pgd.clean_correct[3]))


def test_two_parts_draws_and_single_features(cfg, fitted):
    parts = features.two_parts_draws(cfg)
    assert set(parts) == {0, 1}
    direct = features.two_parts(*features.fc_predictor(cfg, 1), cfg.top_k, cfg.epsilon, cfg.pgd_steps)
    np.testing.assert_array_equal(parts[1].deep_pgd, direct.deep_pgd)
    pgd, majority = fitted.scored.pgd, features.majority_rate(fitted.task.labels_test)
    single = features.single_features(pgd, majority, cfg.top_k, cfg.seed, cfg.n_test)
    assert single.top_family == range(30) and single.deep_family == range(3, 30)
    p_values = claims.useful_non_robust_p(pgd.clean_correct, pgd.robust_correct, majority)
    expected = claims.significant_features(p_values, range(3, 30))
    np.testing.assert_array_equal(single.fragile_useful.indices, expected.indices)
    claim6 = claims.claim6(pgd.clean_correct, pgd.robust_correct, majority, seed=0, candidates=range(3, 30))
    assert single.claim6.verdict == claim6.verdict and single.claim6.details == claim6.details
    assert single.n_half == 8 and single.detectable == stats.detectable_difference(8, majority)
    assert single.glued() == {
        "features_robust_useful": len(single.robust_useful.indices),
        "features_useful_nonrobust": len(expected.indices),
        "features_detectable": single.detectable,
    }
    text = features.single_features_text(single, cfg.top_k)
    assert text.startswith(f"After Holm's correction, {len(single.robust_useful.indices)} of the top 30 features")
    assert "of the 27 features beyond the top 3 are useful and non-robust" in text
    assert text.endswith(
        f"On a half of 8 images, the test detects (with 80% power) a usefulness "
        f"{single.detectable:.3f} above the majority rate."
    )
    found = SimpleNamespace(details={"feature": 6, "clean": "0.81 [a, b]", "attacked": "0.02 [c, d]"})
    text = features.single_features_text(single._replace(claim6=found), cfg.top_k)
    assert "is φ_7; on the other half its usefulness is 0.81 [a, b] and its PGD robustness 0.02 [c, d]" in text


def test_every_feature_and_ten_classes_figures(cfg, fitted):
    (ax,) = feature_figures.every_feature_figure(fitted.scored.table, 0.5, cfg.epsilon).axes
    assert (ax.get_title(), ax.get_ylabel()) == (
        "every eigen-feature of the FC NTK, ε = 0.1",
        "test accuracy of sign φᵢ",
    )
    assert len(ax.lines) == 4  # three running means and the reference line
    (ax,) = feature_figures.ten_classes_figure(cfg).axes
    assert (ax.get_title(), ax.get_ylabel()) == ("ten classes", "accuracy of argmax φᵢ")
    assert len(ax.lines) == 3  # two running means and the chance line


def test_two_parts_add_up_to_f_infinity_and_their_table(cfg, fitted):
    parts = features.draws(cfg, lambda task, fit: features.two_parts(task, fit, cfg.top_k, cfg.epsilon, cfg.pgd_steps))
    first = parts[0]
    full = attacks.is_correct(fitted.predictor.predict(fitted.task.x_test), fitted.task.labels_test)
    np.testing.assert_array_equal(first.full_clean, full)
    assert first.majority == features.majority_rate(fitted.task.labels_test) >= 0.5
    table = features.parts_table(parts, cfg.top_k)
    assert len(table) == 2 * 5  # per draw: two parts clean and under PGD, f_∞ clean
    assert list(table.columns[:3]) == ["seed", "predictor", "condition"]
    row = table[(table.seed == 1) & (table.predictor == "deep part") & (table.condition == "PGD")].iloc[0]
    assert row.value == pytest.approx(parts[1].deep_pgd.mean())
    fig = feature_figures.parts_figure(table, 0, first.majority, cfg.epsilon)
    (ax,) = fig.axes
    assert "first draw, ε = 0.1" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["top φ_1..3", "deep part", "f_∞"]
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"clean", "PGD", "majority-class rate"}


def test_feature_figures(cfg, fitted):
    table = fitted.scored.table
    fig = feature_figures.curves_figure(table[["usefulness", "robustness (PGD)"]], 0.5, "majority", "accuracy", "all")
    (ax,) = fig.axes
    assert (ax.get_ylabel(), ax.get_title(), ax.get_xscale()) == ("accuracy", "all", "log")
    assert len(ax.lines) == 3  # two running means and the reference line
    task = fitted.task
    fig = feature_figures.gradient_figure(
        fitted.predictor,
        fitted.weights,
        table,
        task.x_test,
        task.labels_test,
        task.class_names,
        identified=6,
        n_images=4,
    )
    assert len(fig.axes) == 6 * 5  # φ_1, φ_2, φ_3, φ_15, φ_7, φ_30; a label column and four images
    assert fig.axes[0].texts[0].get_text().startswith("φ_1\nuseful")


def test_ten_classes_and_the_authors_comparison(cfg, fitted):
    ten = features.ten_classes(cfg)
    assert list(ten.columns) == ["usefulness", "robustness (FGSM)"] and len(ten) == 30
    assert ten.usefulness.between(0, 1).all()
    comparison = features.authors_comparison(cfg, fitted.scored.table, 16)
    assert list(comparison.index) == list(features.AUTHORS_REPORTED)
    assert (comparison["ours, CIFAR-10"] == "not run under smoke (paper profile)").all()
    ours = comparison.iloc[:, -1]
    assert ours[1501] == "beyond N" and ours[1].startswith(f"{fitted.scored.table.usefulness[1]:.2f}")


def test_the_authors_comparison_reruns_their_setting_where_the_profile_sets_it(cfg, fitted):
    """The `paper` profile's CIFAR-10 rerun cannot download here: its code runs on MNIST
    digits 0 vs 1, passed as papermill passes a parameter (lists, not tuples)."""
    stand_in = {"dataset": "mnist-5k", "classes": [0, 1], "n_train": 40, "n_test": 10}
    with_setting = SimpleNamespace(**{**vars(cfg), "authors_setting": stand_in, "profile": "paper"})
    comparison = features.authors_comparison(with_setting, fitted.scored.table, 16)
    ours = comparison["ours, mnist-5k (useful / robust)"]
    assert ours[1501] == "beyond N"  # the authors' index 1501 needs more than 40 training images
    useful, robust = (float(score.split(" [")[0]) for score in ours[1].split(" / "))  # "0.40 [0.17, 0.69] / …"
    assert 0 <= robust <= 1 and 0 <= useful <= 1


def test_tradeoff_grid_draw_and_figures(cfg, fitted):
    values = fitted.predictor.eigen[0]
    ks, taus = features.tradeoff_grid(values, cfg.n_ks, cfg.n_times)
    assert ks.tolist() == sorted(set(ks.tolist())) and ks[0] == 1 and ks[-1] < len(values)
    assert len(taus) == 3 and taus[0] == pytest.approx(0.3)
    draw = features.tradeoff_draw(fitted.task, fitted.predictor, cfg.epsilon, ks, taus, cfg.pgd_steps)
    assert draw.outcomes.top_pgd.shape == (len(ks), 16) and draw.outcomes.ft_clean.shape == (3, 16)
    assert len(draw.every.robustness) == len(values)
    (ax,) = feature_figures.topk_figure(draw.outcomes, draw.majority, cfg.epsilon).axes
    assert ax.get_xscale() == "log" and "ε = 0.1" in ax.get_title()
    assert len(ax.lines) == 3 + 1 + 2  # clean, FGSM, PGD, the majority rate, f_∞ clean and under PGD
    left, right = feature_figures.time_figure(draw.outcomes, draw.majority).axes
    assert left.get_title() == "f_t through training" and len(right.lines) == 4
    (ax,) = feature_figures.index_figure(draw.every.robustness, np.array([0, 2])).axes
    assert [len(c.get_offsets()) for c in ax.collections] == [len(values), 2]
