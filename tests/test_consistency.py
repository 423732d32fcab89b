"""The kernel-comparison framework of the architecture-consistency chapter."""

from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest

from ntk_notes import claims, consistency, kernels, null_kernels


def fake_run(vectors, robustness, outputs, usefulness=None):
    """A stand-in for ``spectral.KernelFeatures``: what the measures read."""
    vectors = np.asarray(vectors)
    values = np.linspace(2.0, 1.0, vectors.shape[1])
    predictor = SimpleNamespace(eigen=(values, vectors), k_train_train=(vectors * values) @ vectors.T)
    usefulness = np.linspace(0.9, 0.5, len(robustness)) if usefulness is None else usefulness
    scores = SimpleNamespace(
        robustness=np.asarray(robustness), usefulness=usefulness, clean_outputs=np.asarray(outputs)
    )
    return SimpleNamespace(predictor=predictor, scores=scores, seconds=0.5)


def orthonormal(n, seed):
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))[0]


def rotated_top(vectors, k, seed):
    """The same eigenvectors, the top k mixed by a random rotation of their span."""
    rotated = vectors.copy()
    rotated[:, :k] = vectors[:, :k] @ orthonormal(k, seed)
    return rotated


N, K = 12, 4
RNG = np.random.default_rng(0)
VECTORS = orthonormal(N, 1)
ROBUSTNESS = RNG.uniform(size=N)
OUTPUTS = RNG.normal(size=(N, 9, 1))


def test_identical_kernels_agree_on_every_measure():
    a = fake_run(VECTORS, ROBUSTNESS, OUTPUTS)
    values = {title: measure(a, a) for title, measure in consistency.measures(K).items()}
    assert list(values) == [
        "robustness rank correlation",
        f"top-{K} eigenspace overlap",
        f"output correlation, top {K}",
    ]
    assert values == pytest.approx({title: 1.0 for title in values})


def test_a_rotation_within_the_top_eigenspace_keeps_the_overlap():
    a = fake_run(VECTORS, ROBUSTNESS, OUTPUTS)
    b = fake_run(rotated_top(VECTORS, K, 2), ROBUSTNESS, OUTPUTS)
    overlap = consistency.measures(K)[f"top-{K} eigenspace overlap"]
    assert overlap(a, b) == pytest.approx(1.0)
    # Rotating into the rest of the space does not: the top-K span now differs.
    c = fake_run(VECTORS[:, ::-1], ROBUSTNESS, OUTPUTS)
    assert overlap(a, c) == pytest.approx(0.0, abs=1e-12)


def test_unrelated_eigenspaces_overlap_about_k_over_n():
    n, k = 200, 10
    overlaps = [
        consistency.measures(k, with_robustness=False)[f"top-{k} eigenspace overlap"](
            fake_run(orthonormal(n, s), ROBUSTNESS, OUTPUTS), fake_run(orthonormal(n, s + 100), ROBUSTNESS, OUTPUTS)
        )
        for s in range(5)
    ]
    assert np.mean(overlaps) == pytest.approx(k / n, rel=0.3)


def test_rank_correlation_and_output_correlation_see_reversed_and_scaled_features():
    a = fake_run(VECTORS, ROBUSTNESS, OUTPUTS)
    b = fake_run(VECTORS, -ROBUSTNESS, -3 * OUTPUTS + 1)  # ranks reversed, outputs anti-correlated
    chosen = consistency.measures(K)
    assert chosen["robustness rank correlation"](a, b) == pytest.approx(-1.0)
    assert chosen[f"output correlation, top {K}"](a, b) == pytest.approx(-1.0)
    assert "robustness rank correlation" not in consistency.measures(K, with_robustness=False)


def three_runs():
    return {
        "FC-1": fake_run(VECTORS, ROBUSTNESS, OUTPUTS),
        "FC-2": fake_run(rotated_top(VECTORS, K, 3), ROBUSTNESS, OUTPUTS),
        "linear": fake_run(VECTORS[:, ::-1], ROBUSTNESS[::-1], OUTPUTS[::-1]),
        "RBF": fake_run(orthonormal(N, 9), RNG.uniform(size=N), RNG.normal(size=(N, 9, 1))),
    }


def test_similarity_matrices_are_symmetric_with_ones_on_the_diagonal():
    matrices = consistency.similarity(three_runs(), consistency.measures(K))
    assert len(matrices) == 3
    for matrix in matrices.values():
        assert list(matrix.index) == list(matrix.columns) == ["FC-1", "FC-2", "linear", "RBF"]
        np.testing.assert_allclose(matrix.to_numpy(), matrix.to_numpy().T, atol=1e-12)
        np.testing.assert_allclose(np.diag(matrix.to_numpy()), 1.0)


def test_summary_takes_ntk_pairs_and_the_closest_null():
    matrices = consistency.similarity(three_runs(), consistency.measures(K))
    found = consistency.summary(matrices, ["FC-1", "FC-2"], K, N)
    assert list(found) == [
        "consistency_rank_correlation",
        "consistency_rank_correlation_null",
        "consistency_eigenspace_overlap",
        "consistency_eigenspace_overlap_null",
        "consistency_output_correlation",
        "consistency_output_correlation_null",
        "consistency_top_k",
        "consistency_chance_overlap",
    ]
    overlap = matrices[f"top-{K} eigenspace overlap"]
    assert found["consistency_eigenspace_overlap"] == 1.0  # FC-2 is FC-1 rotated within its top K
    assert found["consistency_eigenspace_overlap_null"] == round(
        max(overlap.loc[["FC-1", "FC-2"], z].mean() for z in consistency.NULLS), 2
    )
    assert found["consistency_top_k"] == K and found["consistency_chance_overlap"] == round(K / N, 2)


def test_heatmaps_draw_one_titled_panel_per_measure():
    matrices = consistency.similarity(three_runs(), consistency.measures(K))
    fig = consistency.heatmaps(matrices)
    assert [ax.get_title() for ax in fig.axes] == list(matrices)
    assert len(fig.axes[0].texts) == 16  # one annotation per pair
    plt.close(fig)


def test_curves_figure_dashes_the_null_kernels():
    fig = consistency.curves_figure(three_runs(), 0.1, window=3)
    usefulness, robustness = fig.axes
    assert usefulness.get_title() == "usefulness" and "ε = 0.1" in robustness.get_title()
    styles = {line.get_label(): line.get_linestyle() for line in robustness.lines}
    assert styles == {"FC-1": "-", "FC-2": "-", "linear": "--", "RBF": "--"}
    assert robustness.get_xscale() == "log"
    plt.close(fig)


def small_cfg(**changes):
    cfg = SimpleNamespace(
        dataset="mnist-5k",
        classes=(3, 5),
        epsilon=0.1,
        data_dir=None,
        seeds=(0,),
        scored=dict(image_size=4, n_train=20, n_test=6),
        myrtle=dict(image_size=4, n_train=20, n_test=6, robustness=True),
    )
    for name, value in changes.items():
        setattr(cfg, name, value)
    return cfg


def test_a_comparison_on_real_images_adds_the_null_kernels_and_a_ridge_where_needed():
    cfg = small_cfg()
    task, runs = consistency.comparison(cfg, cfg.scored, ["FC-1", "FC-2"], True, 0)
    assert list(runs) == ["FC-1", "FC-2", "linear", "RBF"]
    assert len(runs["FC-1"].scores.robustness) == 20
    # 20 training images of 16 pixels: the linear kernel (rank <= 16) gets a ridge.
    plain = kernels.kernel_matrix(null_kernels.null_kernel("linear"), task.x_train)
    ridged = runs["linear"].predictor.k_train_train
    np.testing.assert_allclose(ridged - plain, 1e-6 * np.mean(np.diag(plain)) * np.eye(20), atol=1e-9)
    table = consistency.kernel_table({"scored": (task, runs)})
    assert list(table.index) == [("scored", n) for n in runs]
    assert set(table["images"]) == {"4²"} and set(table["train / test"]) == {"20 / 6"}
    # Myrtle-5 scored on the same sizes: the scored comparison is reused, not recomputed.
    assert consistency.with_myrtle(cfg, (task, runs)) == (task, runs)

    result = consistency.rule(runs, ["FC-1", "FC-2"], top_k=5, seed=0)
    assert isinstance(result, claims.ClaimResult) and len(result.parts) == 2  # eigenspaces, ranks
    renamed = consistency.prefixed(result, "small: ")
    assert [p.name for p in renamed.parts] == ["small: " + p.name for p in result.parts]
    assert [p.estimate for p in renamed.parts] == [p.estimate for p in result.parts]
    assert consistency.resolution_text(result).count("±") == 2


def test_describe_names_the_sizes_and_whether_myrtle_is_scored():
    text = consistency.describe(small_cfg(myrtle=dict(image_size=8, n_train=12, n_test=6, robustness=False)))
    assert text == (
        "mnist-5k, digits 3 vs 5; FC-1/2/3, Conv and null kernels on 4² images, 20 train / 6 test; "
        "Myrtle-5 on 8² images, 12 / 6 (eigenspaces only)"
    )
