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
# **Running time**, measured on 2 CPU cores: `smoke` about 35 s, `default` about 1¼ min;
# `paper` runs Myrtle-5 at full size and is meant for a GPU, and has not been timed yet. The
# {doc}`execution report <execution_report>` gives the time and peak memory of the build you
# are reading.
#
# Symbols follow the {doc}`notation page <notation>`; references are collected on the
# {doc}`references page <references>`.

# %% tags=["parameters"]
profile = "default"  # smoke | default | paper: one switch scales the whole chapter
dataset = None  # every setting left at None comes from the profile
data_dir = None  # a folder with the dataset's standard files (IDX for MNIST and
#   Fashion-MNIST, binary batches for CIFAR-10); None: offline copy or download cache
classes = None
seed = None
epsilon = None
top_k = None  # the k of the eigenspace overlap and of the output correlation
scored = None  # data of the scored comparison: image_size, n_train, n_test
myrtle = None  # data on which Myrtle-5 joins: image_size, n_train, n_test, robustness (scored or not)
seeds = None  # draws of the images on which the scored comparison runs

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown
from myst_nb import glue
import scipy.stats

from ntk_notes import attacks, claims, data, kernels, plotting, report, spectral, stats
from ntk_notes.profiles import settings

cfg = settings("architecture_consistency", profile, dataset=dataset, classes=classes,
               seed=seed, epsilon=epsilon, top_k=top_k, scored=scored, myrtle=myrtle,
               seeds=seeds)
plotting.use_style()
chapter_start = time.perf_counter()
print(report.glue_setting(
    "consistency", cfg.profile,
    f"{cfg.dataset}, digits {cfg.classes[0]} vs {cfg.classes[1]}; FC-1/2/3, Conv and null kernels on {cfg.scored['image_size']}² "
    f"images, {cfg.scored['n_train']} train / {cfg.scored['n_test']} test; Myrtle-5 on {cfg.myrtle['image_size']}² "
    f"images, {cfg.myrtle['n_train']} / {cfg.myrtle['n_test']}{'' if cfg.myrtle['robustness'] else ' (eigenspaces only)'}"))

# %% [markdown]
# ## Five kernels, and two that are not neural tangent kernels
#
# The authors' architectures (ReLU, W_std = √2, b_std = 0.1, NTK parameterization): fully
# connected with 1, 2 and 3 hidden layers, a one-layer convolutional net with a flatten
# readout, and Myrtle-5 (three stages of 3 × 3 convolutions with 2 × 2 average pooling, then
# global average pooling). Myrtle's kernel tracks the covariance of every pair of pixel
# positions through the pooling layers: on this CPU it costs about 3 ms per kernel entry at
# 8 × 8 pixels and tens of ms at 14 × 14, against microseconds for the others. So under
# `default` all kernels are scored by FGSM {cite:p}`goodfellow2015explaining` per feature on
# 14 × 14 images without Myrtle, and Myrtle-5 joins a second comparison on 8 × 8 images with
# fewer points, where its eigenspaces are compared but its features' robustness is not
# computed (that would take hours here). The `paper` profile scores all five at full size.
#
# Any two kernels on the same images share something: both see which images are close.
# Agreement between NTKs means little unless it exceeds their agreement with kernels that
# are not NTKs. Two such *null kernels* join every comparison: the linear kernel x·x′/d and
# the RBF kernel exp(−‖x − x′‖²/2σ²) with σ the median distance between training images.
# The linear kernel has rank at most d (the number of pixels); where the training set is
# larger, its fit gets a ridge of 10⁻⁶ times its mean diagonal.

# %%
ARCHITECTURES = {"FC-1": ("fc", 1), "FC-2": ("fc", 2), "FC-3": ("fc", 3),
                 "Conv": ("conv", 1), "Myrtle-5": ("myrtle", 5)}
NULLS = ("linear", "RBF")


def kernels_for(task, names):
    """The kernel functions of the named NTKs and of the two null kernels on this task."""
    chosen = {name: kernels.architecture(*ARCHITECTURES[name])[2] for name in names}
    chosen["linear"] = kernels.null_kernel("linear")
    chosen["RBF"] = kernels.null_kernel("rbf", kernels.median_bandwidth(task.x_train))
    return chosen


def comparison(sizes, names, robustness, draw_seed):
    task = data.make_task(cfg.dataset, classes=cfg.classes, n_train=sizes["n_train"],
                          n_test=sizes["n_test"], seed=draw_seed,
                          image_size=sizes["image_size"], data_dir=data_dir)
    ridge = {"linear": 1e-6} if len(task.x_train) >= task.x_train[0].size else {}
    runs = spectral.kernel_features(kernels_for(task, names), task,
                                    cfg.epsilon if robustness else None, ridge=ridge)
    return task, runs


with_myrtle_scored = cfg.myrtle["robustness"]
scored_names = [n for n in ARCHITECTURES if with_myrtle_scored or n != "Myrtle-5"]
draws = {s: comparison(cfg.scored, scored_names, True, s) for s in cfg.seeds}
task, scored_runs = draws[cfg.seeds[0]]
if with_myrtle_scored and cfg.myrtle == {**cfg.scored, "robustness": True}:
    small_task, small_runs = task, scored_runs
else:
    small_task, small_runs = comparison(cfg.myrtle, list(ARCHITECTURES),
                                        cfg.myrtle["robustness"], cfg.seeds[0])
pd.DataFrame([{"comparison": title, "kernel": name, "images": f"{t.x_train.shape[1]}²",
               "train / test": f"{len(t.x_train)} / {len(t.x_test)}",
               "seconds": round(run.seconds, 1),
               "test accuracy f_∞": str(stats.accuracy(
                   attacks.is_correct(run.scores.clean_outputs.sum(0), t.labels_test)))}
              for title, t, runs in [("scored", task, scored_runs),
                                     ("with Myrtle", small_task, small_runs)]
              for name, run in runs.items()]).set_index(["comparison", "kernel"])

# %% [markdown]
# ## The curves, overlaid
#
# Usefulness and FGSM robustness (ε = `epsilon`) of every feature against its eigen-index,
# as running means (the previous chapter shows the raw scatter for FC-1); null kernels are
# dashed.

# %%
window = max(3, len(task.x_train) // 30)
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for name, run in scored_runs.items():
    index = np.arange(1, len(run.scores.usefulness) + 1)
    style = "--" if name in NULLS else "-"
    for ax, score in zip(axes, [run.scores.usefulness, run.scores.robustness]):
        ax.plot(index, pd.Series(score).rolling(window, center=True, min_periods=1).mean(),
                ls=style, label=name)
axes[0].set(xscale="log", xlabel="eigen-index i", ylabel="test accuracy", title="usefulness")
axes[1].set(xscale="log", xlabel="eigen-index i",
            title=f"robustness (FGSM, ε = {cfg.epsilon:g})")
axes[1].legend(fontsize="small")
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
#
# The last rows and columns of each matrix are the null kernels.

# %%
def measures(k, with_robustness=True):
    """The similarity measures, as functions of two kernels' features on the same images."""
    chosen = {}
    if with_robustness:
        chosen["robustness rank correlation"] = lambda a, b: scipy.stats.spearmanr(
            a.scores.robustness, b.scores.robustness)[0]
    chosen[f"top-{k} eigenspace overlap"] = lambda a, b: spectral.eigenspace_overlap(
        a.predictor.eigen[1], b.predictor.eigen[1], k)
    chosen[f"output correlation, top {k}"] = lambda a, b: float(np.nanmean(
        spectral.output_correlation(a.scores.clean_outputs[:k], b.scores.clean_outputs[:k])))
    return chosen


def heatmaps(runs, chosen, axes):
    """One annotated similarity matrix per measure, on one colour scale; returns them."""
    names = list(runs)
    matrices = {title: pd.DataFrame([[measure(runs[a], runs[b]) for b in names]
                                     for a in names], index=names, columns=names)
                for title, measure in chosen.items()}
    for ax, (title, matrix) in zip(axes, matrices.items()):
        sns.heatmap(matrix, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis",
                    cbar=False, ax=ax, square=True)
        ax.set_title(title)
    return matrices


k = min(cfg.top_k, len(task.x_train) - 1)
fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
matrices = heatmaps(scored_runs, measures(k), axes)
fig.tight_layout()
glue("consistency_figure", fig, display=False)  # pasted into the reproduction report

# %% [markdown]
# ## Myrtle-5 joins
#
# On the smaller images and training set, all five kernels and the two null kernels:
# eigenspace overlap and output correlation.

# %%
k_small = min(cfg.top_k, len(small_task.x_train) - 1)
fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
small_matrices = heatmaps(small_runs, measures(k_small, with_robustness=False), axes)
fig.tight_layout()

# %% [markdown]
# ## What we measured
#
# The rule is `ntk_notes.claims.claim4`. For each measure it computes the mean similarity
# between different NTKs minus the mean similarity of the NTKs to the closest null kernel
# (for eigenspaces, a random k-dimensional subspace is a third null), with a 95% interval
# from resampling: half-samples of the training points for the eigenspaces, a bootstrap
# over features for the robustness ranks. The claim holds only where NTKs agree with each other more than with any null
# kernel. The scored comparison runs on `len(seeds)` draws of the images (a part holds only
# if it held on every draw); the comparison with Myrtle-5 on the first.

# %%
def rule(runs, names, with_robustness):
    ntks = {n: runs[n].predictor.k_train_train for n in names}
    nulls = {n: runs[n].predictor.k_train_train for n in NULLS}
    robust = {n: runs[n].scores.robustness for n in runs} if with_robustness else None
    return claims.claim4(ntks, nulls, min(cfg.top_k, len(next(iter(ntks.values()))) - 1),
                         robustness=robust, seed=cfg.seed)


scored_rule = claims.across_seeds([rule(runs, scored_names, True)
                                   for _, runs in draws.values()])
myrtle_rule = rule(small_runs, list(ARCHITECTURES), False)
myrtle_rule = myrtle_rule._replace(parts=tuple(
    p._replace(name=f"with Myrtle-5, {small_task.x_train.shape[1]}² images: {p.name}")
    for p in myrtle_rule.parts))
consistency = claims.merge("4", [scored_rule, myrtle_rule])
ntk_pairs = ~np.eye(len(scored_names), dtype=bool)
for key, (title, matrix) in zip(["rank_correlation", "eigenspace_overlap", "output_correlation"],
                                matrices.items()):
    within = matrix.loc[scored_names, scored_names].to_numpy()[ntk_pairs].mean()
    glue(f"consistency_{key}", round(float(within), 2), display=False)
    glue(f"consistency_{key}_null", round(float(
        max(matrix.loc[scored_names, z].mean() for z in NULLS)), 2), display=False)
glue("consistency_top_k", k, display=False)
glue("consistency_chance_overlap", round(k / len(task.x_train), 2), display=False)

# %% tags=["remove-input"]
widths = [(p.high - p.low) / 2 for p in consistency.parts]
Markdown(report.glue_claim("claim4", consistency)
         + "\n\nWhat this size can resolve: the parts' intervals are "
         + ", ".join(f"±{w:.3f}" for w in widths)
         + " wide around their estimates; an excess smaller than that cannot be told from 0.")

# %% tags=["remove-cell"]
glue("consistency_chapter_seconds", round(time.perf_counter() - chapter_start, 1),
     display=False)
print(f"chapter ran in {time.perf_counter() - chapter_start:.0f} s")

# %% [markdown]
# ## Exercises
#
# 1. Add a deeper convolutional kernel (`("conv", 3)`) to `ARCHITECTURES` and rerun. Does
#    depth move a convolutional kernel towards or away from the fully connected ones?
# 2. Why can the output correlation of the top features stay high where the eigenspace
#    overlap is modest?
# 3. Replace the RBF bandwidth by a tenth and by ten times the median distance. How does
#    the null kernel's agreement with the NTKs change, and what does that say about what
#    "consistent across architectures" can mean?
#
# ```{admonition} Solution 1
# :class: dropdown
# Add `"Conv-3": ("conv", 3)` and include it in `scored_names`, then compare its row of
# the similarity matrices with the Conv and FC rows. Look at whether it sits closer to the
# one-layer convolution or to the fully connected kernels, and whether the difference is
# larger than the spread across the draws.
# ```
#
# ```{admonition} Solution 2
# :class: dropdown
# The overlap compares eigenvectors one dimension at a time in ℝ^N, and nearly degenerate
# eigenvalues let a kernel rotate its eigenvectors within a cluster; the feature outputs
# weight each eigenvector by its share of the labels vᵢᵀY, so the features that matter for
# the task can agree even where individual eigenvectors are mixed.
# ```
#
# ```{admonition} Solution 3
# :class: dropdown
# Build `kernels.null_kernel("rbf", s * kernels.median_bandwidth(task.x_train))` for
# s = 0.1 and 10 and rerun `claims.claim4` with it as the null. A very narrow RBF kernel is
# nearly the identity (its eigenspaces are arbitrary), a very wide one nearly linear; see
# which end the NTKs resemble, and whether the claim's verdict depends on the null chosen.
# ```
