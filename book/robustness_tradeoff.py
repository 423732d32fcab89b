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
# # The robustness–accuracy trade-off
#
# The previous chapter found robust features, in the sense of {cite:t}`ilyas2019adversarial`,
# at the top of the kernel's spectrum and
# useful-but-non-robust ones everywhere below. A predictor built from the top k features
# only, $\varphi_{1..k} = \sum_{i \le k} \varphi_i$, should therefore gain robustness and lose accuracy as k
# shrinks. And since gradient descent fits the feature φᵢ at a rate proportional to λᵢ,
#
# $$ f_t = \sum_i \bigl(1 - e^{-\lambda_i t / N}\bigr)\, \varphi_i , $$
#
# with t = η × steps as in the {doc}`first chapter <ntk_in_practice>`, a network stopped early
# has learned mostly the robust features: claim 5 of {cite:t}`tsilivis2022ntk`.
# This chapter measures both.
#
# **You will learn to**
# - trace clean and robust accuracy of the top-k predictors against k, and find where
#   robustness peaks;
# - follow f_t through training time, and see which features it has fitted by when;
# - test whether robust features are learned first.
#
# **Running time**, measured on 2 CPU cores: `smoke` about 30 s, `default` about 45 s;
# `paper` (2000 training images) is meant for a GPU, and has not been timed yet. The
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
n_train = None
n_test = None
image_size = None
seed = None
epsilon = None
pgd_steps = None
n_ks = None  # how many values of k (log-spaced from 1 to N)
n_times = None  # how many training times (log-spaced)
seeds = None  # draws of the training and test sets on which the rules run

# %% tags=["remove-input"]
from IPython.display import Markdown

from ntk_notes import chapter, exercises, feature_figures, features, report
from ntk_notes import tradeoff as rules


def describe(c):
    return (
        f"{c.dataset}, digits {c.classes[0]} vs {c.classes[1]}, "
        f"{c.image_size}² images, {c.n_train} train / {c.n_test} test; "
        f"FC kernel; ε = {c.epsilon:g}, "
        f"PGD-{c.pgd_steps}"
    )


cfg = chapter.begin("robustness_tradeoff", globals(), "tradeoff", describe)

# %% [markdown]
# ## The same kernel as before
#
# The FC NTK {cite:p}`jacot2018neural` with one hidden layer on digits 3 (−1) and 5 (+1), as
# in the previous chapter; attacks are ℓ∞ at ε = `epsilon` with binary cross-entropy on the
# predictor's output, FGSM {cite:p}`goodfellow2015explaining` and PGD
# {cite:p}`madry2018towards` (2.5 ε / steps per step).

# %%
task, predictor = features.fc_predictor(cfg)
values = predictor.eigen[0]

# %% [markdown]
# ## Top-k predictors and early stopping, on several draws
#
# For each draw of the training and test sets (`seeds`), `spectral.tradeoff_outcomes`
# scores the top-k predictors at `n_ks` values of k (log-spaced from 1 to N) and f_t at
# `n_times` training times, clean and under FGSM and PGD aimed at each predictor, and f_∞.
# Time is measured by τ = λ₁ t / N: after time τ a feature with eigenvalue λᵢ holds the
# fraction $1 - e^{-\tau \lambda_i / \lambda_1}$ of its final weight, and k(τ) counts the features that are at
# least half fitted. Every outcome is kept per test image, so that every accuracy below
# carries its interval.

# %%
ks, taus = features.tradeoff_grid(values, cfg.n_ks, cfg.n_times)
runs = features.draws(
    cfg,
    lambda draw, fit: features.tradeoff_draw(
        draw, fit, cfg.epsilon, ks, taus, cfg.pgd_steps
    ),
)
first = runs[cfg.seeds[0]]

# %% tags=["remove-output"]
o = first.outcomes
fig = feature_figures.topk_figure(o, first.majority, cfg.epsilon)
chapter.figure("tradeoff_figure", fig)  # the reproduction report pastes it too

# %% [markdown]
# ```{glue:figure} tradeoff_figure
# :name: fig-tradeoff-topk
# :alt: Accuracy against the number k of top eigen-features kept, on a logarithmic axis: clean, under FGSM and under PGD, with intervals, and two horizontal black lines for the full predictor clean and under PGD.
#
# The top-k predictors (the sum of the k features with the largest eigenvalues) against
# k: clean accuracy and accuracy under FGSM and PGD, with 95% intervals; black lines:
# f_∞ clean and under PGD. A trade-off shows as clean accuracy rising with k while
# robust accuracy falls.
# ```

# %% [markdown]
# Choosing the most robust k by looking at the curve would flatter it: with many values of
# k, one of them is high by chance. So the rule chooses k on one half of the test images
# and scores it on the other half, and the other way round (cross-fitting): every image is
# scored by a k chosen without it.

# %%
tradeoff, learned_first = rules.tradeoff_claims(runs)

# %% tags=["remove-input"]
Markdown(rules.picks_text(runs, tradeoff))

# %% [markdown]
# ## Early stopping: f_t through training
#
# If early stopping is a soft top-k truncation, f_t at k(τ) should behave like $\varphi_{1..k}$ at
# the same k. The right panel puts the two side by side.

# %% tags=["remove-output"]
fig = feature_figures.time_figure(o, first.majority)
chapter.figure("tradeoff_time_figure", fig)  # the reproduction report pastes it too

# %% [markdown]
# ```{glue:figure} tradeoff_time_figure
# :name: fig-tradeoff-time
# :alt: Two panels. Left: accuracy of the gradient-flow predictor f_t against the time τ on a logarithmic axis, clean, under FGSM and under PGD, with intervals. Right: f_t at the matching number of fitted features beside the top-k predictors, clean and under PGD.
#
# Early stopping. Left: f_t through training, clean and under attack. Right: f_t placed
# at k(τ), the number of eigendirections fitted by time τ, beside the top-k predictors
# at the same k. What to look for: if stopping early buys robustness, the robust curve
# on the left falls as τ grows; if f_t behaves like a top-k predictor, the two sets of
# curves on the right lie on each other.
# ```

# %% [markdown]
# ## Are robust features learned first?
#
# Two kinds of evidence. Directly: f_t stopped at its most robust time (again chosen on
# one half of the test set and scored on the other) should be robust, i.e. beat the
# majority rate under PGD, and beat f_∞. Spectrally: robustness should rise with the
# eigenvalue. Measured as accuracy under attack, robustness also rewards features that
# are nearly constant, whatever the labels; so the rank correlation is taken only over
# the features that are significantly useful (Benjamini–Hochberg over all N, which keeps
# the expected share of chance discoveries below 5%), and its
# p-value comes from random re-pairings of eigenvalues and robustness.

# %% tags=["remove-output"]
every = first.every
useful = rules.useful_indices(every, first.majority)
fig = feature_figures.index_figure(every.robustness, useful)
chapter.figure("tradeoff_index_figure", fig)

# %% [markdown]
# ```{glue:figure} tradeoff_index_figure
# :name: fig-tradeoff-index
# :alt: FGSM robustness of every eigen-feature against its index on a logarithmic axis, with the significantly useful features highlighted.
#
# FGSM robustness of every feature against its index, the significantly useful features
# highlighted. Claim 5 predicts that robustness falls with the index, so the robust
# useful features sit at the left.
# ```

# %% [markdown]
# ## What we measured
#
# The rules are `ntk_notes.claims.claim3_tradeoff` and `ntk_notes.claims.claim5`, run on
# every draw; a part holds only if it held on every draw, and is shown through its
# weakest draw. Each part gives its estimate, its 95% interval and its threshold.

# %% tags=["remove-input"]
Markdown(
    report.glue_claim("claim3_tradeoff", tradeoff)
    + "\n\n"
    + report.glue_claim("claim5", learned_first)
    + "\n\n"
    + rules.power_text(len(first.task.labels_test), first.majority)
)

# %% tags=["remove-input"]
chapter.end(cfg, "tradeoff")

# %% [markdown]
# ## Exercises
#
# Difficulty: ★ a short step, ★★ some work, ★★★ a small project. Experiments change
# the parameters cell and rerun; the derivation and the coding exercise come after these.
#
# 1. **Experiment (★★★).** Replace the sharp truncation $\varphi_{1..k}$ by spectral shrinkage, $\sum_i \frac{\lambda_i}{\lambda_i + \mu} \varphi_i$ (kernel
#    ridge regression with ridge μ). Trace clean and PGD accuracy against μ.
# 2. **Conceptual (★).** Where does the peak of the top-k PGD curve move when ε doubles?
#
# ```{admonition} Solution 1
# :class: dropdown
# The weights are `spectral.feature_weights(predictor) * (values / (values + mu))[None, :,
# None]`, summed over the feature axis with `keepdims=True`; score them with
# `spectral.feature_scores` for a grid of μ. Compare the curve with the top-k curve and
# with f_t: shrinkage damps small-eigenvalue features smoothly, as early stopping does
# with t ≈ N / μ. Check whether the three curves trace the same trade-off.
# ```
#
# ```{admonition} Solution 2
# :class: dropdown
# Rerun the chapter with `epsilon=0.2` (papermill `-p epsilon 0.2`) and compare the k the
# rule picks on each half. A larger ε breaks features further up the spectrum, so look
# for a smaller k and a lower peak, and check with the intervals whether the difference
# is more than noise.
# ```

# %% [markdown]
# ### A derivation
#
# **Derivation (★★).** Show that gradient flow from f_0 = 0 gives
# $f_t = \sum_i (1 - e^{-\lambda_i t/N})\,\varphi_i$, so that early stopping is a soft
# version of the top-k predictor. At which time is feature i half fitted?
#
# ```{admonition} Solution: derivation
# :class: dropdown
# Expand
# $\Theta^{-1}(I - e^{-\Theta t/N}) = \sum_i \lambda_i^{-1}(1 - e^{-\lambda_i t/N}) v_i
# v_i^\top$ in the eigenbasis and multiply by Θ(x, X) on the left and Y on the right:
# each term is $(1 - e^{-\lambda_i t/N})\varphi_i(x)$. The weight of feature i is near 1
# once λᵢt/N ≫ 1 and near λᵢt/N ≪ 1 before, so at time t the features with λᵢ ≫ N/t are
# in and those with λᵢ ≪ N/t are out, as in a top-k predictor with a soft edge. Feature i
# is half fitted when $e^{-\lambda_i t/N} = 1/2$, at $t = N \ln 2 / \lambda_i$.
# ```

# %% [markdown]
# ### A coding exercise that checks itself
#
# **Coding (★).** Write `top_k_predictor(k_test_train, k_train_train, y, k)`: the top-k
# predictor $\varphi_{1..k}$ at the test points, using only the k largest eigenpairs of the
# training kernel. At k = N it must equal f_∞.


# %%
def top_k_predictor(k_test_train, k_train_train, y, k):
    raise NotImplementedError  # your code here


exercises.check("top_k_predictor", top_k_predictor)

# %% [markdown]
# ````{admonition} Solution: top_k_predictor
# :class: dropdown
# ```python
# import numpy as np
#
#
# def top_k_predictor(k_test_train, k_train_train, y, k):
#     values, vectors = np.linalg.eigh(k_train_train)
#     top, v = values[::-1][:k], vectors[:, ::-1][:, :k]  # the k largest eigenpairs
#     return (k_test_train @ v) @ ((v.T @ y) / top)
# ```
# ````
