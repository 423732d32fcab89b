"""The transfer experiment moved out of the chapter: ``ntk_notes.transfer_sweep`` on a tiny
real task, and the tables, summaries and figures of ``ntk_notes.transfer_tables`` and
``ntk_notes.transfer_figures`` on fixed numbers."""

from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from ntk_notes import claims, data, transfer  # noqa: E402
from ntk_notes import transfer_figures as figures  # noqa: E402
from ntk_notes import transfer_tables as tables  # noqa: E402
from ntk_notes.transfer_sweep import Experiment, Sweep, alpha_label, describe  # noqa: E402

# ------------------------------------------------------------------------- a tiny real task


def tiny_task(n_train=24, n_test=16, seed=0) -> data.Task:
    """4×4 images whose class is whether the left half is brighter than the right."""
    rng = np.random.default_rng(seed)

    def draw(n):
        x = rng.uniform(0.2, 0.8, (n, 4, 4, 1)).astype(np.float32)
        labels = np.arange(n) % 2
        x[labels == 1, :, :2] += 0.15
        x[labels == 0, :, 2:] += 0.15
        return np.clip(x, 0, 1), labels

    x_train, labels_train = draw(n_train)
    x_test, labels_test = draw(n_test)
    target = lambda labels: np.where(labels == 1, 1.0, -1.0).astype(np.float32)[:, None]  # noqa: E731
    return data.Task(
        x_train,
        target(labels_train),
        x_test,
        target(labels_test),
        labels_train,
        labels_test,
        (0, 1),
        ("right", "left"),
        "synthetic",
    )


@pytest.fixture(scope="module")
def experiment():
    return Experiment(
        tiny_task(),
        depth=1,
        width=64,
        target_loss=0.1,
        max_steps=400,
        epsilon=0.1,
        pgd_steps=2,
        smooth_sigma=0.1,
        smooth_samples=2,
        probe_size=8,
        matched_epsilons=(0.01, 0.6),
        matched_accuracy=0.3,
    )


@pytest.fixture(scope="module")
def swept(experiment):
    kernel = experiment.kernel_surrogates()
    runs = experiment.sweep(kernel.init_fn, kernel.apply_fn, (10.0, 0.1), (0,), kernel.rate)
    return kernel, runs


def test_describe_is_the_chapters_setting_line():
    cfg = SimpleNamespace(
        dataset="mnist-5k",
        classes=(3, 5),
        image_size=8,
        n_train=64,
        n_test=32,
        depth=1,
        width=64,
        alphas=(10.0, 1.0, 0.03),
        seeds=(0, 1, 2),
        deep=dict(depth=2, alphas=(10.0, 0.03)),
        width_sweep=dict(widths=(32, 64), alpha=1.0),
    )
    assert describe(cfg) == (
        "mnist-5k, digits 3 vs 5, 8² images, 64 train / 32 test; FC depth 1, width 64, "
        "α from 10 to 0.03, 3 seeds; depth 2 with 2 values of α; widths 32, 64 at α = 1"
    )
    assert alpha_label(float("nan")) == "linearised" and alpha_label(0.30) == "0.3"


def test_experiment_of_reads_the_chapters_settings():
    cfg = SimpleNamespace(
        depth=2,
        width=32,
        target_loss=0.05,
        max_steps=10,
        epsilon=0.2,
        pgd_steps=3,
        smooth_sigma=0.1,
        smooth_samples=4,
        probe_size=5,
        matched_epsilons=[0.1, 0.3],
        matched_accuracy=0.2,
    )
    exp = Experiment.of(tiny_task(), cfg)
    assert exp.probe.shape == (5, 4, 4, 1) and exp.matched_epsilons == (0.1, 0.3) and exp.depth == 2
    np.testing.assert_array_equal(np.asarray(exp.probe), exp.task.x_train[:5])


def test_kernel_surrogates_and_the_sweep(experiment, swept):
    kernel, runs = swept
    assert set(kernel.models) == {"f_∞", "f_t"} and kernel.rate > 0 and kernel.t_matched > 0
    # Every (seed, α) run first, then the linearised control, all trained to the target loss.
    assert [r.alpha for r in runs[:2]] == [10.0, 0.1] and np.isnan(runs[2].alpha)
    assert all(r.reached for r in runs)
    assert runs[2].laziness == transfer.Laziness(0.0, 1.0)
    # Laziness varied alone: the kernel turns more at the small α.
    assert runs[0].laziness.cosine_distance < runs[1].laziness.cosine_distance
    table = tables.training_table(runs)
    assert list(table["α"]) == ["10", "0.1", "linearised"]
    line, summary = tables.training_summary(runs, 12.3)
    assert line == "3 networks trained in 12 s; 0 did not reach the target loss"
    assert list(summary.index) == ["10", "0.1", "linearised"]


def test_evaluation_and_the_results_table(experiment, swept):
    kernel, runs = swept
    images = experiment.attack_images({"f_∞": kernel.models["f_∞"]})
    noise = experiment.noise_images(kernel.models["f_∞"], 0)
    assert images["f_∞"].shape == noise.shape == experiment.x_test.shape
    assert float(np.max(np.abs(np.asarray(images["f_∞"]) - np.asarray(experiment.x_test)))) <= 0.1 + 1e-6
    evaluations = experiment.evaluate_all(runs, images, noise)
    results = tables.results_table(runs, evaluations)
    assert list(results["α"]) == ["10", "0.1", "linearised"]
    # The white-box attack is the strongest per example of its three attacks.
    assert (results["white-box"] <= results[["PGD", "FGSM", "FGSM, smoothed gradient"]].min(axis=1)).all()
    means = tables.mean_table(results, ["f_∞"])
    assert list(means.columns) == tables.WHITE_BOX + ["transfer from f_∞", "ratio, f_∞"]


def test_matched_ratio_of_a_networks_own_examples_is_one(experiment, swept):
    """With the network itself as the source, the source's examples at ε* leave exactly the
    matched accuracy (the curve is interpolated where the net's own curve was): ratio 1."""
    _, runs = swept
    run = runs[0]
    matched = experiment.matched_ratios([run], run.net.logits_fn())
    row = matched.iloc[0]
    assert row["seed"] == 0 and row["α"] == "10"
    assert 0.01 < row["matched ε"] < 0.6
    assert row["matched ratio"] == pytest.approx(1.0, abs=1e-6)
    line, summary = tables.matched_summary(matched)
    assert line == "0 nets never fell to the matched accuracy"
    assert list(summary.columns) == [
        ("matched ε", "mean"),
        ("matched ε", "std"),
        ("matched ratio", "mean"),
        ("matched ratio", "std"),
    ]


def test_width_sweep_on_a_tiny_task(experiment, swept):
    kernel, _ = swept
    images = experiment.attack_images({"f_∞": kernel.models["f_∞"]})["f_∞"]
    noise = experiment.noise_images(kernel.models["f_∞"], 0)
    width_runs = experiment.width_sweep((16, 64), 1.0, (0, 1), kernel.rate, images, noise)
    assert [(w, r.seed) for w, r, _ in width_runs] == [(16, 0), (16, 1), (64, 0), (64, 1)]
    assert all(set(e.transfer) == {"f_∞"} for _, _, e in width_runs)
    frame = tables.width_frame(width_runs)
    assert list(frame.width) == [16, 16, 64, 64] and "ratio, f_∞" in frame
    assert list(tables.width_summary(frame).index) == [16, 64]
    assert tables.width_text(width_runs) == "too few widths for a rank correlation"


# ------------------------------------------------------------------------- fixed numbers


def outcomes(right: int, n: int = 100) -> np.ndarray:
    return np.arange(n) < right


def evaluation(clean=100, white=0, transferred=None, noise=100) -> transfer.Evaluation:
    """An evaluation on 100 images: ``transferred`` maps surrogate names to correct counts."""
    strongest = outcomes(white)
    return transfer.Evaluation(
        outcomes(clean),
        transfer.WhiteBox(strongest, strongest, strongest, strongest),
        {k: outcomes(v) for k, v in (transferred or {}).items()},
        outcomes(noise),
    )


def fake_run(seed, alpha, distance):
    """What the tables read of a ``transfer.ScaledRun``."""
    net = SimpleNamespace(learning_rate=0.1, steps=50, losses=np.array([0.01]))
    return SimpleNamespace(seed=seed, alpha=alpha, net=net, reached=True, laziness=transfer.Laziness(distance, 1.0))


def test_width_text_gives_the_within_seed_correlation():
    widths = [(16, 0.4, 60), (64, 0.2, 40), (256, 0.1, 30), (1024, 0.05, 20)]  # width, distance, right
    width_runs = [
        (w, fake_run(s, 1.0, d), evaluation(transferred={"f_∞": right})) for s in (0, 1, 2) for w, d, right in widths
    ]
    text = tables.width_text(width_runs)
    assert text.startswith("within-seed Spearman ρ of cosine distance and transfer ratio -1.00 [")
    assert text.endswith("for ρ < 0")


def test_white_box_checks_name_the_failing_nets():
    runs = [fake_run(0, 10.0, 0.01), fake_run(0, float("nan"), 0.0)]
    evaluations = [
        evaluation(white=10, transferred={"f_∞": 50, "rich net": 5}),
        evaluation(white=10, transferred={"f_∞": 50}),
    ]
    assert tables.white_box_checks(runs, evaluations) == (1, 2, ["0/α = 10: rich net"])
    text = tables.white_box_text(*tables.white_box_checks(runs, evaluations))
    assert text == "white-box at least as strong as every transfer on 1 of 2 networks\n0/α = 10: rich net"
    assert tables.white_box_text(2, 2, []).endswith("on 2 of 2 networks\n")  # the second line empty


@pytest.fixture(scope="module")
def three_seeds():
    """Three seeds of four α and a linearised control each: f_∞'s examples fool fewer
    images the farther the kernel turned; logistic regression's fool 40 on the controls."""
    alphas, runs, evaluations = (10.0, 1.0, 0.1, 0.03), [], []
    for s in (0, 1, 2):
        for alpha, distance, fooled in zip(alphas, (0.01, 0.03, 0.1, 0.3), (85, 70, 55, 40)):
            runs.append(fake_run(s, alpha, distance))
            evaluations.append(
                evaluation(transferred={"f_∞": 100 - fooled, "logistic regression": 100 - 30 - s, "rich net": 50})
            )
    for s in (0, 1, 2):
        runs.append(fake_run(s, float("nan"), 0.0))
        evaluations.append(evaluation(transferred={"f_∞": 10, "logistic regression": 60, "rich net": 50}))
    matched = pd.DataFrame({"matched ratio": [r.alpha / 20 if np.isfinite(r.alpha) else 0.9 for r in runs]})
    return alphas, Sweep(runs, evaluations, matched)


def test_claim_runs_split_runs_from_controls(three_seeds):
    _, sweep = three_seeds
    runs, controls = tables.claim_runs(sweep)
    assert len(runs) == 12 and len(controls) == 3
    assert [c.seed for c in controls] == [0, 1, 2] and all(c.distance == 0.0 for c in controls)
    assert runs[0].matched_ratio == 0.5 and controls[0].matched_ratio == 0.9
    assert runs[0].ratio == pytest.approx(0.85) and controls[0].baseline.sum() == 60


def test_control_table_summary_and_report_table(three_seeds):
    alphas, sweep = three_seeds
    results = tables.results_table(sweep.runs, sweep.evaluations)
    controls = tables.control_table(results, sweep.runs, sweep.evaluations, (0, 1, 2), alphas)
    assert list(controls["linearised: ratio, f_∞"]) == pytest.approx([0.9] * 3)
    assert list(controls["laziest net (largest α): ratio"]) == pytest.approx([0.85] * 3)
    assert list(controls["best trained net: ratio"]) == pytest.approx([0.85] * 3)
    assert controls["linearised at least as good"].all()
    assert controls["linearised: noise − transfer accuracy [95%]"][0].startswith("0.900 [")
    runs, linear = tables.claim_runs(sweep)
    result = claims.claim2(runs, linear, 15, 15, permutations=200, resamples=200)
    cfg = SimpleNamespace(alphas=alphas, seeds=(0, 1, 2), deep=dict(depth=2), width_sweep=dict(alpha=1.0))
    lines, glued = tables.summary(results, controls, result, result, "too few widths", cfg)
    assert len(lines) == 8 and lines[-1] == "- Width sweep at α = 1: too few widths."
    assert set(glued) == {
        "distance",
        "ratio",
        "logistic_ratio",
        "rich_net_ratio",
        "matched_rho",
        "rho",
        "deep_rho",
        "deep_outcome",
        "width_rho",
    }
    assert glued["ratio"] == "0.850 ± 0.000 at α = 10 and 0.400 ± 0.000 at α = 0.03"
    assert glued["distance"] == "0.010 ± 0.000 at α = 10 and 0.300 ± 0.000 at α = 0.03"
    assert glued["rho"].startswith("-1.00 (one-sided p = ")
    assert glued["deep_outcome"] == result.verdict == "reproduced"
    assert "- Linearised networks: ratio 0.900 ± 0.000; the laziest trained nets' 0.850;" in lines[4]
    report = tables.report_table(runs, linear, sweep.runs, alphas)
    assert list(report.index) == ["α = 10 (lazy)", "α = 0.03 (rich)", "linearised"]
    assert report.loc["α = 10 (lazy)", "on f_∞'s examples"].startswith("0.150 [")
    assert report.loc["linearised", "transfer ratio (mean ± sd)"] == "0.90 ± 0.00"


def test_seed_spread_and_rho_text_on_fixed_numbers():
    frame = pd.DataFrame({"alpha": [10.0, 10.0, 0.1, 0.1], "x": [1.0, 3.0, 5.0, 5.0]})
    assert tables.seed_spread(frame, "x", (10.0, 0.1)) == "2.000 ± 1.414 at α = 10 and 5.000 ± 0.000 at α = 0.1"
    assert tables.rho_text({"rho": -0.5, "p_below": 0.0123}) == "-0.50 (one-sided p = 0.0123 for ρ < 0)"


# ------------------------------------------------------------------------- figures


def test_figures_have_the_expected_axes(three_seeds):
    _, sweep = three_seeds
    results = tables.results_table(sweep.runs, sweep.evaluations)
    fig = figures.transfer_ratios(results, ["f_∞", "logistic regression"])
    left, right = fig.axes[:2]
    assert left.get_xscale() == right.get_xscale() == "log"
    assert left.get_title() == "f_∞'s examples, one point per network" and right.get_title() == "every surrogate"
    assert left.get_ylabel().startswith("transfer ratio")
    # The linearised nets are drawn as stars at a third of the smallest distance.
    stars = [c for c in left.collections if c.get_label() == "linearised"][0]
    np.testing.assert_allclose(stars.get_offsets()[:, 0], 0.01 / 3)
    matched = pd.DataFrame(
        {
            "alpha": [1.0, 0.1, float("nan")],
            "seed": [0, 0, 0],
            "cosine distance": [0.1, 0.2, 0.0],
            "matched ε": [0.1, 0.2, 0.3],
            "matched ratio": [0.5, 0.4, 0.9],
        }
    )
    fig = figures.matched_robustness(matched)
    assert [ax.get_ylabel() for ax in fig.axes[:2]] == ["matched ε", "matched ratio"]
    assert len(fig.axes[0].collections[0].get_offsets()) == 2  # the linearised net is not drawn
    by_width = results.assign(width=[16, 64, 256, 1024] * 3 + [16] * 3)
    fig = figures.width_sweep(by_width)
    assert fig.axes[0].get_xlabel() == "cosine distance S(K₀, K_T)" and fig.axes[0].get_xscale() == "log"
    assert len(fig.axes[0].collections[0].get_offsets()) == 15
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert {"16", "64", "256", "1024"} <= set(legend)  # the widths themselves, not round values
    matplotlib.pyplot.close("all")
