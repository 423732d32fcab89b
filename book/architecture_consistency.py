# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Consistency across architectures
#
# Are the robust and non-robust eigen-features a property of the data, or of one kernel?
# Claim 4 of {cite:t}`tsilivis2022ntk`: they are consistent across architectures. This chapter
# computes the eigen-features of several NTKs {cite:p}`jacot2018neural` on the same images and
# compares them: the usefulness and robustness curves by eigen-index, and three similarity
# measures.
#
# **You will learn to**
# - compare kernels of different architectures through their eigen-features;
# - quantify similarity: rank correlation of robustness by index, overlap of the top-k
#   eigenspaces, and correlation of the feature outputs on test images;
# - budget kernels whose cost differs by orders of magnitude, such as the pooling kernel of
#   Myrtle {cite:p}`shankar2020neural`.
#
# **Running time**, measured on 2 CPU cores: `smoke` about 40 s, `default` about 1 min;
# `paper` runs Myrtle-5 at full size and is meant for a GPU, and has not been timed yet. The
# {doc}`execution report <execution_report>` gives the time and peak memory of the build you
# are reading.
#
# Symbols follow the {doc}`notation page <notation>`; references are collected on the
# {doc}`references page <references>`.

# %% tags=["parameters"]
profile = "default"  # smoke | default | paper: one switch scales the whole chapter
dataset = None  # every setting left at None comes from the profile
classes = None
seed = None
epsilon = None
top_k = None  # the k of the eigenspace overlap and of the output correlation
scored = None  # data of the scored comparison: image_size, n_train, n_test
myrtle = None  # data on which Myrtle-5 joins: image_size, n_train, n_test, robustness (scored or not)

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown
from myst_nb import glue
from scipy import stats

from ntk_notes import data, kernels, plotting, report, spectral
from ntk_notes.profiles import settings

cfg = settings("architecture_consistency", profile, dataset=dataset, classes=classes, seed=seed, epsilon=epsilon,
               top_k=top_k, scored=scored, myrtle=myrtle)
plotting.use_style()
chapter_start = time.perf_counter()
print(report.glue_setting(
    "consistency", cfg.profile,
    f"{cfg.dataset}, digits {cfg.classes[0]} vs {cfg.classes[1]}; FC-1/2/3 and Conv on {cfg.scored['image_size']}² "
    f"images, {cfg.scored['n_train']} train / {cfg.scored['n_test']} test; Myrtle-5 on {cfg.myrtle['image_size']}² "
    f"images, {cfg.myrtle['n_train']} / {cfg.myrtle['n_test']}{'' if cfg.myrtle['robustness'] else ' (eigenspaces only)'}"))

# %% [markdown]
# ## Five kernels
#
# The authors' architectures (ReLU, W_std = √2, b_std = 0.1, NTK parameterization): fully
# connected with 1, 2 and 3 hidden layers, a one-layer convolutional net with a flatten
# readout, and Myrtle-5 (three stages of 3 × 3 convolutions with 2 × 2 average pooling, then
# global average pooling). Myrtle's kernel tracks the covariance of every pair of pixel
# positions through the pooling layers: on this CPU it costs about 3 ms per kernel entry at
# 8 × 8 pixels and tens of ms at 14 × 14, against microseconds for the others. So under
# `default` all kernels are scored by FGSM {cite:p}`goodfellow2015explaining` per feature on 14 × 14
# images without Myrtle, and
# Myrtle-5 joins a second comparison on 8 × 8 images with fewer points, where its features'
# usefulness and eigenspaces are compared but their robustness is not computed (that would
# take hours here). The `paper` profile scores all five at full size.

# %%
ARCHITECTURES = {"FC-1": ("fc", 1), "FC-2": ("fc", 2), "FC-3": ("fc", 3), "Conv": ("conv", 1),
                 "Myrtle-5": ("myrtle", 5)}


def analyse(sizes, names, robustness: bool):
    """Eigen-features of each named kernel on one task: predictor, eigenvalues and vectors,
    and the features' scores (robustness only when asked)."""
    task = data.make_task(cfg.dataset, classes=cfg.classes, n_train=sizes["n_train"], n_test=sizes["n_test"],
                          seed=cfg.seed, image_size=sizes["image_size"])
    results = {}
    for name in names:
        start = time.perf_counter()
        _, _, kernel_fn = kernels.architecture(*ARCHITECTURES[name])
        predictor = kernels.KernelPredictor(kernel_fn, task.x_train, task.y_train)
        scores = spectral.feature_scores(predictor, spectral.feature_weights(predictor), task.x_test,
                                         task.labels_test, cfg.epsilon if robustness else None, "fgsm")
        results[name] = dict(predictor=predictor, values=predictor.eigen[0], vectors=predictor.eigen[1],
                             scores=scores, seconds=time.perf_counter() - start)
    return task, results


with_myrtle_scored = cfg.myrtle["robustness"]
scored_names = list(ARCHITECTURES) if with_myrtle_scored else [n for n in ARCHITECTURES if n != "Myrtle-5"]
task, scored_runs = analyse(cfg.scored, scored_names, robustness=True)
if with_myrtle_scored and cfg.myrtle == {**cfg.scored, "robustness": True}:
    small_task, small_runs = task, scored_runs
else:
    small_task, small_runs = analyse(cfg.myrtle, list(ARCHITECTURES), robustness=cfg.myrtle["robustness"])
pd.DataFrame([{"comparison": comparison, "kernel": name, "images": f"{t.x_train.shape[1]}²",
               "train / test": f"{len(t.x_train)} / {len(t.x_test)}", "seconds": round(run["seconds"], 1),
               "test accuracy f_∞": kernels.accuracy(run["scores"].clean_outputs.sum(0), t.labels_test)}
              for comparison, t, runs in [("scored", task, scored_runs), ("with Myrtle", small_task, small_runs)]
              for name, run in runs.items()]).set_index(["comparison", "kernel"])

# %% [markdown]
# ## The curves, overlaid
#
# Usefulness and FGSM robustness (ε = `epsilon`) of every feature against its eigen-index,
# as running means (the previous chapter shows the raw scatter for FC-1).

# %%
def running_mean(values, window):
    return pd.Series(values).rolling(window, center=True, min_periods=1).mean().to_numpy()


window = max(3, len(task.x_train) // 30)
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for name, run in scored_runs.items():
    index = np.arange(1, len(run["values"]) + 1)
    axes[0].plot(index, running_mean(run["scores"].usefulness, window), label=name)
    axes[1].plot(index, running_mean(run["scores"].robustness, window), label=name)
axes[0].set(xscale="log", xlabel="eigen-index i", ylabel="test accuracy", title="usefulness")
axes[1].set(xscale="log", xlabel="eigen-index i", title=f"robustness (FGSM, ε = {cfg.epsilon:g})")
axes[1].legend()
fig.tight_layout()

# %% [markdown]
# ## How similar are the features?
#
# For each pair of kernels on the same images:
# - **robustness rank correlation**: Spearman correlation of the features' robustness, index
#   by index (do robust features sit at the same indices?);
# - **eigenspace overlap**: ‖V_aᵀ V_b‖²_F / k for the top-k eigenvectors (1 for the same
#   eigenspace, about k / N for unrelated ones);
# - **output correlation**: for each of the top k indices, the correlation over test images
#   of the two kernels' features, averaged over the k indices.

# %%
def similarity(runs, measure):
    names = list(runs)
    return pd.DataFrame([[measure(runs[a], runs[b]) for b in names] for a in names], index=names, columns=names)


def measures(k, with_robustness=True):
    """The similarity measures, as functions of two runs on the same images."""
    chosen = {}
    if with_robustness:
        chosen["robustness rank correlation"] = lambda a, b: stats.spearmanr(a["scores"].robustness,
                                                                             b["scores"].robustness)[0]
    chosen[f"top-{k} eigenspace overlap"] = lambda a, b: spectral.eigenspace_overlap(a["vectors"], b["vectors"], k)
    chosen[f"output correlation, top {k}"] = lambda a, b: float(np.nanmean(spectral.output_correlation(
        a["scores"].clean_outputs[:k], b["scores"].clean_outputs[:k])))
    return chosen


def heatmaps(runs, chosen, axes):
    """One annotated similarity matrix per measure; returns the matrices."""
    matrices = {title: similarity(runs, measure) for title, measure in chosen.items()}
    for ax, (title, matrix) in zip(axes, matrices.items()):
        sns.heatmap(matrix, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", cbar=False, ax=ax, square=True)
        ax.set_title(title)
    return matrices


k = min(cfg.top_k, len(task.x_train))
fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
matrices = heatmaps(scored_runs, measures(k), axes)
fig.tight_layout()
glue("consistency_figure", fig, display=False)  # pasted into the reproduction report
off_diagonal = {title: float(m.to_numpy()[~np.eye(len(m), dtype=bool)].mean()) for title, m in matrices.items()}
for key, value in zip(["rank_correlation", "eigenspace_overlap", "output_correlation"], off_diagonal.values()):
    glue(f"consistency_{key}", round(value, 2), display=False)  # fixed names: k depends on the profile
glue("consistency_top_k", k, display=False)
glue("consistency_chance_overlap", round(k / len(task.x_train), 2), display=False)
print("mean over pairs of different kernels:", {t: round(v, 2) for t, v in off_diagonal.items()},
      f"(unrelated top-{k} eigenspaces would overlap about {k / len(task.x_train):.2f})")

# %% [markdown]
# ## Myrtle-5 joins
#
# On the smaller images and training set, all five kernels: eigenspace overlap and output
# correlation with the others, and the usefulness curves.

# %%
k_small = min(cfg.top_k, len(small_task.x_train))
fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
small_matrices = heatmaps(small_runs, measures(k_small, with_robustness=False), axes)
small_window = max(3, len(small_task.x_train) // 20)
for name, run in small_runs.items():
    axes[2].plot(np.arange(1, len(run["values"]) + 1), running_mean(run["scores"].usefulness, small_window), label=name)
axes[2].set(xscale="log", xlabel="eigen-index i", ylabel="usefulness", title="usefulness, smaller task")
axes[2].legend(fontsize="small")
fig.tight_layout()
myrtle_overlap = small_matrices[f"top-{k_small} eigenspace overlap"].loc["Myrtle-5"].drop("Myrtle-5")
glue("consistency_myrtle_overlap_mean", round(float(myrtle_overlap.mean()), 2), display=False)
glue("consistency_myrtle_chance_overlap", round(k_small / len(small_task.x_train), 2), display=False)
print(f"Myrtle-5's top-{k_small} eigenspace overlap with the others: " + ", ".join(
    f"{n} {v:.2f}" for n, v in myrtle_overlap.items()) + f" (unrelated: about {k_small / len(small_task.x_train):.2f})")

# %% [markdown]
# ## What we measured

# %%
def verdict():
    rank, overlap, outputs = off_diagonal.values()
    chance = k / len(task.x_train)
    ranks_agree, overlap_high = bool(rank > 0.5), bool(overlap > 2 * chance)
    claim4 = {"robustness ranks of the features agree across kernels (rank correlation above 0.5)": ranks_agree,
              f"top-{k} eigenspaces overlap more than twice as much as unrelated ones": overlap_high,
              "and so does Myrtle-5's": bool(myrtle_overlap.mean() > 2 * k_small / len(small_task.x_train))}
    return "\n".join([
        f"- Between different kernels (FC-1, FC-2, FC-3, Conv{', Myrtle-5' if with_myrtle_scored else ''}), on average: "
        f"robustness rank correlation {rank:.2f}, top-{k} eigenspace overlap {overlap:.2f} (unrelated: {chance:.2f}), "
        f"output correlation of the top {k} features {outputs:.2f}.",
        f"- Myrtle-5's top-{k_small} eigenspace overlaps the others' by {myrtle_overlap.mean():.2f} on average.",
        "- The features are " + ("consistent across these architectures (claim 4)." if ranks_agree and overlap_high
                                 else "**not** clearly consistent across these architectures at this size."),
        f"- Claim 4 is **{report.glue_verdict('claim4', claim4)}** in this build: {report.basis(claim4)}.",
    ])


Markdown(verdict())

# %%
glue("consistency_chapter_seconds", round(time.perf_counter() - chapter_start, 1), display=False)
print(f"chapter ran in {time.perf_counter() - chapter_start:.0f} s")

# %% [markdown]
# ## Exercises
#
# 1. Add a deeper convolutional kernel (`("conv", 3)`) to `ARCHITECTURES` and rerun. Does
#    depth move a convolutional kernel towards or away from the fully connected ones?
# 2. Why does the output correlation of the top features stay high even where the
#    eigenspace overlap is modest?
#
# ```{admonition} Solution 1
# :class: dropdown
# Add `"Conv-3": ("conv", 3)` and rerun the two comparisons. Its top eigenspace stays closer
# to the one-layer convolution than to the fully connected kernels; its robustness curve keeps
# the same shape, falling with the index.
# ```
#
# ```{admonition} Solution 2
# :class: dropdown
# The overlap compares eigenvectors one dimension at a time in ℝ^N, and nearly degenerate
# eigenvalues let a kernel rotate its eigenvectors within a cluster; the feature outputs
# weight each eigenvector by its share of the labels vᵢᵀY, so the features that matter for
# the task can agree even where individual eigenvectors are mixed.
# ```
