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
myrtle = None  # data on which Myrtle-5 joins: image_size, n_train, n_test, robustness
#   (scored or not)
seeds = None  # draws of the images on which the scored comparison runs

# %% tags=["remove-input"]
from IPython.display import Markdown
from myst_nb import glue

from ntk_notes import chapter, claims, consistency, exercises, report

cfg = chapter.begin(
    "architecture_consistency", globals(), "consistency", consistency.describe
)

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
ARCHITECTURES = dict(consistency.ARCHITECTURES)  # name: (architecture, depth)
scored_names = [n for n in ARCHITECTURES if cfg.myrtle["robustness"] or n != "Myrtle-5"]
draws = {
    s: consistency.comparison(cfg, cfg.scored, scored_names, True, s, ARCHITECTURES)
    for s in cfg.seeds
}
task, scored_runs = draws[cfg.seeds[0]]
small_task, small_runs = consistency.with_myrtle(
    cfg, draws[cfg.seeds[0]], ARCHITECTURES
)
consistency.kernel_table(
    {"scored": (task, scored_runs), "with Myrtle": (small_task, small_runs)}
)

# %% [markdown]
# ## The curves, overlaid
#
# Usefulness and FGSM robustness (ε = `epsilon`) of every feature against its eigen-index,
# as running means (the previous chapter shows the raw scatter for FC-1); null kernels are
# dashed.

# %% tags=["remove-output"]
fig = consistency.curves_figure(
    scored_runs, cfg.epsilon, window=max(3, len(task.x_train) // 30)
)
chapter.figure("consistency_curves_figure", fig)

# %% [markdown]
# ```{glue:figure} consistency_curves_figure
# :name: fig-consistency-curves
# :alt: Two panels sharing an accuracy axis: usefulness and robustness of every kernel's eigen-features against the eigen-index on a logarithmic axis, as running means, one line per kernel, the null kernels dashed.
#
# Usefulness (left) and robustness (right) of the eigen-features of every kernel against
# the index, as running means over neighbouring features; the null kernels are dashed.
# Curves that lie on each other are what claim 4 predicts for the NTKs, and what the
# null kernels show is possible without one.
# ```

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

# %% tags=["remove-output"]
k = min(cfg.top_k, len(task.x_train) - 1)
matrices = consistency.similarity(scored_runs, consistency.measures(k))
fig = consistency.heatmaps(matrices)
chapter.figure("consistency_figure", fig)  # the reproduction report pastes it too

# %% [markdown]
# ```{glue:figure} consistency_figure
# :name: fig-consistency-heatmaps
# :alt: Three annotated heat maps side by side, on one colour scale from 0 to 1, of a similarity between every pair of kernels: the rank correlation of robustness, the eigenspace overlap and the output correlation.
#
# How similar the kernels' features are, for every pair of kernels (the last rows and
# columns are the null kernels), on one colour scale from 0 to 1. What to look for: the
# NTK block (top left) brighter than the rows of the null kernels; where a null kernel
# is as bright as the NTKs, that measure cannot tell NTKs apart from a kernel that is
# not one.
# ```

# %% [markdown]
# ## Myrtle-5 joins
#
# On the smaller images and training set, all five kernels and the two null kernels:
# eigenspace overlap and output correlation.

# %% tags=["remove-output"]
k_small = min(cfg.top_k, len(small_task.x_train) - 1)
small_matrices = consistency.similarity(
    small_runs, consistency.measures(k_small, with_robustness=False)
)
fig = consistency.heatmaps(small_matrices)
chapter.figure("consistency_small_figure", fig)

# %% [markdown]
# ```{glue:figure} consistency_small_figure
# :name: fig-consistency-myrtle
# :alt: Two annotated heat maps side by side, on one colour scale from 0 to 1: the eigenspace overlap and the output correlation between every pair of kernels including Myrtle-5 and the null kernels.
#
# The same comparison on smaller images with Myrtle-5 added: eigenspace overlap and
# output correlation for every pair of kernels, null kernels last, on one colour scale.
# ```

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
scored_rule = claims.across_seeds(
    [
        consistency.rule(runs, scored_names, cfg.top_k, cfg.seed)
        for _, runs in draws.values()
    ]
)
myrtle_rule = consistency.prefixed(
    consistency.rule(
        small_runs, list(ARCHITECTURES), cfg.top_k, cfg.seed, with_robustness=False
    ),
    f"with Myrtle-5, {small_task.x_train.shape[1]}² images: ",
)
consistency_result = claims.merge("4", [scored_rule, myrtle_rule])

# %% tags=["remove-cell"]
glued = consistency.summary(matrices, scored_names, k, len(task.x_train))
for key, value in glued.items():
    glue(key, value, display=False)

# %% tags=["remove-input"]
Markdown(
    report.glue_claim("claim4", consistency_result)
    + "\n\n"
    + consistency.resolution_text(consistency_result)
)

# %% tags=["remove-input"]
chapter.end(cfg, "consistency")

# %% [markdown]
# ## Exercises
#
# Difficulty: ★ a short step, ★★ some work, ★★★ a small project. Experiments change
# the parameters cell and rerun; the derivation and the coding exercise come after these.
#
# 1. **Experiment (★).** Add a deeper convolutional kernel (`("conv", 3)`) to `ARCHITECTURES` and rerun. Does
#    depth move a convolutional kernel towards or away from the fully connected ones?
# 2. **Conceptual (★★).** In this build the mean eigenspace overlap between NTKs is
#    {glue:}`consistency_eigenspace_overlap` and their mean output correlation is
#    {glue:}`consistency_output_correlation`. Take two kernels whose top-k eigenvectors
#    span the same subspace but are rotated within it. What is their overlap? What is the
#    output correlation at index i? Use the answer to say what each measure can and cannot
#    see.
# 3. **Experiment (★★).** Replace the RBF bandwidth by a tenth and by ten times the median distance. How does
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
# Write $V_b = V_a R$ with R a k × k rotation. Then $V_a^\top V_b = R$ and the overlap is
# $\|R\|_F^2 / k = 1$ exactly: the overlap measures the *subspace*, and is blind to any
# rotation inside it. The features are not. Feature i of kernel b is built from its own
# vᵢ, which is now a mixture of kernel a's top eigenvectors, so it is a different function
# from feature i of kernel a, and their correlation over test images falls as R moves vᵢ
# away from itself ($|R_{ii}| < 1$). Nearly equal eigenvalues make such rotations cheap: a
# small change of the kernel can reorder or mix eigenvectors whose eigenvalues are close.
# So an overlap near 1 with a lower output correlation means the two kernels agree on
# *which* directions matter but not on how they are split into indexed features.
# ```
#
# ```{admonition} Solution 3
# :class: dropdown
# Build `null_kernels.null_kernel("rbf", s * null_kernels.median_bandwidth(task.x_train))` for
# s = 0.1 and 10 and rerun `claims.claim4` with it as the null. A very narrow RBF kernel is
# nearly the identity (its eigenspaces are arbitrary), a very wide one nearly linear; see
# which end the NTKs resemble, and whether the claim's verdict depends on the null chosen.
# ```

# %% [markdown]
# ### A derivation
#
# **Derivation (★★).** For N × k matrices V_a, V_b with orthonormal columns, show that the
# overlap $\|V_a^\top V_b\|_F^2 / k$ lies in [0, 1], equals 1 exactly when the two
# column spaces coincide, and has mean k/N when V_b spans a uniformly random
# k-dimensional subspace.
#
# ```{admonition} Solution: derivation
# :class: dropdown
# Column j of $V_a^\top V_b$ holds the coordinates of
# the projection of b_j onto the span of V_a, so $\|V_a^\top V_b\|_F^2 = \sum_j \|P_a
# b_j\|^2 \le \sum_j \|b_j\|^2 = k$, with equality exactly when every b_j lies in that
# span, that is, when the spaces coincide. For a uniformly random unit vector b,
# $E\|P_a b\|^2 = \mathrm{tr}(P_a)/N = k/N$ by symmetry; the same holds for each column of
# a random V_b, so the mean overlap is k · (k/N) / k = k/N.
# ```

# %% [markdown]
# ### A coding exercise that checks itself
#
# **Coding (★).** Write `eigenspace_overlap(vectors_a, vectors_b, k)`: the overlap
# ‖V_aᵀ V_b‖²_F / k of the top-k eigenvectors (the first k columns of each matrix of
# orthonormal eigenvectors). The check includes two bases of the same subspace, rotated
# against each other: what should your function return for them (exercise 2)?


# %%
def eigenspace_overlap(vectors_a, vectors_b, k):
    raise NotImplementedError  # your code here


exercises.check("eigenspace_overlap", eigenspace_overlap)

# %% [markdown]
# ````{admonition} Solution: eigenspace_overlap
# :class: dropdown
# ```python
# import numpy as np
#
#
# def eigenspace_overlap(vectors_a, vectors_b, k):
#     # 1 for the same top-k subspace in any basis, about k / N for unrelated ones
#     return np.sum((vectors_a[:, :k].T @ vectors_b[:, :k]) ** 2) / k
# ```
# ````
