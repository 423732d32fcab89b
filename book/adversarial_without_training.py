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
# # Adversarial examples without training
#
# The infinite-width NTK {cite:p}`jacot2018neural` gives a predictor, f_∞(x) = Θ(x, X) Θ⁻¹ Y,
# without training any network. It is a differentiable function of its input, so it can be
# attacked like any classifier. This chapter does exactly that and finds that the kernel
# predictor is as brittle as a trained network: small perturbations, computed from the
# kernel alone, flip its decisions, as claim 1 of {cite:t}`tsilivis2022ntk` states.
#
# **You will learn to**
# - attack a kernel predictor with FGSM {cite:p}`goodfellow2015explaining` and PGD
#   {cite:p}`madry2018towards` for fully connected and convolutional NTKs,
#   on a binary task and on the 10-class task;
# - read an accuracy-vs-ε curve, and check that an attack evaluation is sound with the
#   sanity checks of {cite:t}`carlini2019evaluating`;
# - see what the adversarial perturbations of a kernel look like;
# - why attacking a kernel predictor costs no more than evaluating it.
#
# **Running time**, measured on 2 CPU cores: `smoke` about 1 min, `default` about 2 min;
# `paper` (full MNIST and the authors' CIFAR-10 setting) is meant for a GPU, and has not
# been timed yet. The {doc}`execution report <execution_report>` gives the time and peak
# memory of the build you are reading.
#
# Symbols follow the {doc}`notation page <notation>`; references are collected on the
# {doc}`references page <references>`.

# %% tags=["parameters"]
profile = "default"  # smoke | default | paper: one switch scales the whole chapter
dataset = None  # every setting left at None comes from the profile
data_dir = None  # a folder with the dataset's standard files (IDX for MNIST and
#   Fashion-MNIST, binary batches for CIFAR-10); None: offline copy or download cache
binary_classes = None
seed = None
fc = None  # sizes for the fully connected kernel: image_size, n_train, n_test
conv = None  # the same for the convolutional kernel
epsilons = None
check_epsilon = None
pgd_steps = None
seeds = None  # draws of the images on which the claim's rule runs (the first is `seed`)
authors_setting = None  # the authors' CIFAR-10 demo (dataset, classes, n_train,
#   n_test); paper profile only

# %% tags=["remove-input"]
from IPython.display import Markdown
from myst_nb import glue

from ntk_notes import chapter, claims, exercises, kernel_attacks, report

cfg = chapter.begin(
    "adversarial_without_training", globals(), "awt", kernel_attacks.describe
)

# %% [markdown]
# ## Four kernel predictors
#
# Two tasks on MNIST digits {cite:p}`lecun1998gradient`: digit 3 (target −1) against digit 5
# (target +1), and all ten digits (one-hot targets, not centred, as the authors did). Two
# architectures, with the authors' settings (ReLU, W_std = √2, b_std = 0.1, NTK
# parameterization): a fully connected net with one hidden layer (FC) and a one-layer
# convolutional net with a flatten readout (Conv). The convolutional kernel is far more
# expensive, so under `default` it works on 14 × 14 images and fewer points; the profile's
# sizes are printed above.
#
# Each predictor is f_∞, kernel regression fitted on a seeded random training set: no
# network is trained anywhere in this chapter.

# %%
TASKS = {"3 vs 5": cfg.binary_classes, "10 classes": None}  # name: classes (None: all)
SIZES = {"FC": cfg.fc, "Conv": cfg.conv}  # architecture: image_size, n_train, n_test


def draw_models(draw_seed):
    """The four kernel predictors on one draw of the images."""
    return kernel_attacks.draw_models(
        cfg.dataset, TASKS, SIZES, draw_seed, cfg.data_dir
    )


models = draw_models(cfg.seed)  # (task, architecture) -> (task, predictor, fit seconds)
kernel_attacks.fit_table(models).round(3)

# %% [markdown]
# ## Adversarial examples in one page
#
# **The threat model.** An attacker who knows the model (white box) may change a test
# image x into x + δ, with the perturbation δ in a small ball, ‖δ‖ ≤ ε, and pixels kept in
# [0, 1]. The attack succeeds when the prediction on x + δ is wrong. The *robust accuracy*
# at ε is the accuracy when every test image meets its worst δ; an attack finds some δ,
# not necessarily the worst, so the accuracy it leaves is an *upper bound* on the robust
# accuracy, and a stronger attack gives a tighter bound.
#
# **The balls.** In the ℓ∞ ball, $\|\delta\|_\infty = \max_i |\delta_i| \le
# \varepsilon$, every pixel may move by up to ε (a cube); in the ℓ2 ball,
# $\|\delta\|_2 \le \varepsilon$, the total change is bounded (a sphere), and it may
# sit on a few pixels. For d pixels the ℓ∞ ball of radius ε lies inside the ℓ2 ball of
# radius ε√d, so ℓ∞ budgets look small per pixel but are large in total. This book, like
# the paper, uses ℓ∞; common budgets are ε = 0.3 on MNIST and 8/255 on CIFAR-10.
#
# **FGSM is steepest ascent.** To first order the loss near x is
# $L(x + \delta) \approx L(x) + \delta \cdot \nabla_x L(x)$. Over the ℓ∞ ball the
# linear term is largest at $\delta = \varepsilon\,\mathrm{sign}\,\nabla_x L(x)$, where
# it gains $\varepsilon \|\nabla_x L(x)\|_1$: the fast gradient sign method
# {cite:p}`goodfellow2015explaining`. (Over the ℓ2 ball the same argument gives
# $\delta = \varepsilon \nabla_x L / \|\nabla_x L\|_2$.) One step is exact only if the
# loss is linear over the whole ball.
#
# **PGD repeats it with projection.** Projected gradient descent {cite:p}`madry2018towards`
# takes small steepest-ascent steps of size α and projects back after each, onto the set
# of allowed images: $x^{k+1} = \Pi\bigl(x^k + \alpha\,\mathrm{sign}\,\nabla_x
# L(x^k)\bigr)$. For ℓ∞ the projection Π is a clip of every pixel to
# [x − ε, x + ε] ∩ [0, 1]. It follows a curved loss where one step cannot, but it finds a
# local maximum, which is why evaluations add random starts and check their attacks.
#
# **Why attacking a kernel is cheap.** The fitted predictor is
# $f_\infty(x) = \Theta(x, X)\,W$ with $W = \Theta^{-1} Y$ solved once, so its input
# gradient is $\nabla_x f_\infty(x) = \sum_j W_j \nabla_x \Theta(x, x_j)$: one backward
# pass through the row Θ(x, X), a small multiple of the cost of evaluating it, and no
# new linear solve. Every step of PGD costs about one more prediction.
#
# ## Attacking the kernel predictor
#
# The predictor's output is treated as a logit: the attacks maximise the binary
# cross-entropy $\log(1 + e^{-y f(x)})$ on the binary task and the softmax cross-entropy on ten
# classes, with the true labels, although f_∞ was fitted with a squared loss. The threat
# model is ℓ∞ with pixels in [0, 1]:
#
# - **FGSM**: x + ε · sign ∇ₓL, clipped to [0, 1];
# - **PGD**: `pgd_steps` steps of size 2.5 ε / steps along sign ∇ₓL, each projected back
#   onto the ε-ball and into [0, 1], starting at the clean image (the authors' kernel
#   attack had no random start);
# - **noise**: a random ±ε in every pixel, the baseline any attack must beat by far.
#
# `KernelPredictor.logits_fn()` is the function x ↦ Θ(x, X) W that the attacks
# differentiate.

# %% tags=["remove-output"]
curves = kernel_attacks.epsilon_curves(models, cfg.epsilons, cfg.pgd_steps)
fig = kernel_attacks.curves_figure(curves)
chapter.figure("awt_figure", fig)  # the reproduction report pastes it too

# %% [markdown]
# ```{glue:figure} awt_figure
# :name: fig-awt-curves
# :alt: Accuracy against the attack budget ε, one panel per task (3 vs 5, ten classes), one colour per method (FGSM, PGD, random noise) and one line style per kernel (FC, Conv).
#
# Accuracy of the four kernel predictors against the ℓ∞ budget ε: under FGSM, PGD and
# random ±ε noise, for the binary and the ten-class task. Attacks that work bring the
# accuracy down far faster than noise of the same size.
# ```

# %%
kernel_attacks.curve_table(curves, models)

# %% tags=["remove-input"]
e = cfg.check_epsilon
glue("awt_epsilon", e, display=False)
Markdown(kernel_attacks.curves_text(curves, e))

# %% [markdown]
# If PGD gains little over FGSM on these kernels (compare their rows in the table), that
# need not be suspicious: f_∞ of a one-hidden-layer ReLU NTK is a smooth function, and
# where its loss is nearly linear in the input over the ε-ball one signed gradient step is
# already the best ℓ∞ move. The checks below are there to tell this apart from a broken
# attack.

# %% [markdown]
# ## Is the evaluation sound?
#
# An attack that looks strong may be evaluated wrongly, and one that looks weak may be broken
# (a masked gradient, a wrong sign). Each predictor goes through the checks of
# {cite:t}`carlini2019evaluating` at ε = `check_epsilon`: PGD at least as strong as FGSM per
# example; accuracy not increasing with ε; an unbounded attack reaching 0 %; random noise much
# weaker than PGD; doubling PGD's steps changing little. `robustness.sanity_checks` runs them
# all.

# %%
checks = kernel_attacks.sanity_table(models, cfg.check_epsilon, cfg.pgd_steps)
print(f"{checks.passed.sum()} of {len(checks)} checks passed")

# %% tags=["hide-output"]
checks.set_index(["task", "kernel", "check"])  # every check, folded away on the site

# %% tags=["remove-cell"]
glue("awt_checks_passed", int(checks.passed.sum()), display=False)
glue("awt_checks_total", len(checks), display=False)

# %% [markdown]
# ## What the perturbations look like
#
# Below, test images of the FC predictors, their PGD adversarial versions at ε =
# `check_epsilon` and the perturbations (red brighter, blue darker). Titles give the
# predictor's output: the digit it predicts.

# %% tags=["remove-output"]
fig = kernel_attacks.attack_figure(
    models, ("3 vs 5", "FC"), cfg.check_epsilon, cfg.pgd_steps
)
chapter.figure("awt_binary_attack_figure", fig)

# %% [markdown]
# ```{glue:figure} awt_binary_attack_figure
# :name: fig-awt-binary-attack
# :alt: Three rows of digit images: clean test images, their PGD adversarial versions, and the perturbations in red and blue, each titled with the predicted digit.
#
# Clean test images of the 3-vs-5 task (top), their PGD adversarial versions at ε =
# {glue:}`awt_epsilon` for the FC kernel (middle), and the perturbations (bottom; red
# brighter, blue darker). Titles give the kernel predictor's decision.
# ```

# %% tags=["remove-output"]
fig = kernel_attacks.attack_figure(
    models, ("10 classes", "FC"), cfg.check_epsilon, cfg.pgd_steps
)
chapter.figure("awt_ten_attack_figure", fig)

# %% [markdown]
# ```{glue:figure} awt_ten_attack_figure
# :name: fig-awt-ten-attack
# :alt: Three rows of digit images: clean test images of the ten-class task, their PGD adversarial versions, and the perturbations in red and blue, each titled with the predicted digit.
#
# The same for the ten-class task: clean images (top), PGD adversarial versions for the
# FC kernel (middle), perturbations (bottom), titled by the predicted digit.
# ```

# %% [markdown]
# What to look for: whether the perturbations concentrate on and around the strokes,
# adding ink where the other class has it and removing it where this one does, as the
# adversarial examples of trained networks do {cite:p}`szegedy2014intriguing`. Their sign
# pattern covers the whole image, since ℓ∞ lets every pixel move by ε.

# %% [markdown]
# ## The authors' CIFAR-10 setting
#
# The authors' demo used binary CIFAR-10 {cite:p}`krizhevsky2009learning`, airplane (−1)
# against automobile (+1), 2000 training and 100 test images of that pair, the FC depth-1 NTK
# and f_∞, attacked at ε = 8/255 by FGSM and by PGD with 10 steps of 0.01 and no random start.
# Their notebook reports clean accuracy 0.81, FGSM 0.02 and PGD 0.02. We take a seeded random
# subset of the pair, where they took the first images. This section runs under the `paper`
# profile, which downloads CIFAR-10; no CIFAR-10 source is reachable offline.

# %%
kernel_attacks.show_authors_comparison(cfg.authors_setting, cfg.seed, cfg.profile)

# %% [markdown]
# ## What we measured
#
# Claim 1 holds if attacks computed from the kernel alone break every kernel predictor,
# far beyond what noise of the same size does. The rule is `ntk_notes.claims.claim1`: on
# each of `len(seeds)` draws of the images, every predictor must be accurate (clean
# accuracy above the majority rate), lose at least 0.25 of its accuracy to PGD at ε =
# `check_epsilon`, and keep at least 0.25 more under random noise of the same size than
# under PGD, each judged by its 95% interval over the test images. The sanity checks gate
# the claim: if one fails, the attack is unsound and the claim is *not tested*.

# %%
results = []
for draw_seed in cfg.seeds:
    drawn = models if draw_seed == cfg.seed else draw_models(draw_seed)
    found = kernel_attacks.attack_outcomes(drawn, cfg.check_epsilon, cfg.pgd_steps)
    results.append(claims.claim1(found, int(checks.passed.sum()), len(checks)))
    if draw_seed == cfg.seed:
        shown = found
claim1 = claims.across_seeds(results)
kernel_attacks.outcome_table(shown)

# %% tags=["remove-cell"]
glued = kernel_attacks.fc_summary(
    shown, {"3 vs 5": "binary", "10 classes": "multiclass"}
)
for key, value in glued.items():
    glue(key, value, display=False)

# %% tags=["remove-input"]
Markdown(
    report.glue_claim("claim1", claim1) + "\n\n" + kernel_attacks.resolution_text(shown)
)

# %% tags=["remove-input"]
chapter.end(cfg, "awt")

# %% [markdown]
# ## Exercises
#
# Difficulty: ★ a short step, ★★ some work, ★★★ a small project. Experiments change
# the parameters cell and rerun; the derivation and the coding exercise come after these.
#
# 1. **Experiment (★★).** Attack the FC predictor of the binary task under the ℓ2 threat model
#    (`norm="l2"`, for instance ε from 0.5 to 3 on 28 × 28 images) and compare with random
#    noise of the same ℓ2 norm.
# 2. **Conceptual (★★).** The predictor f_t stops gradient flow at a finite time t. Is the early-stopped kernel
#    predictor more robust than f_∞? Use `predictor.logits_fn(t)` with t from 10 N / λ₁ to
#    10⁴ N / λ₁ (λ₁ = `predictor.eigen[0][0]`).
# 3. **Experiment (★).** Replace the cross-entropy by the `margin` loss and by `mse`. Which loss gives the
#    strongest FGSM on the 10-class task, and why does the choice matter less for PGD?
#
# ```{admonition} Solution 1
# :class: dropdown
# `robustness.accuracy_vs_epsilon(predictor.logits_fn(), task.x_test, task.labels_test,
# [0, 0.5, 1, 2, 3], norm="l2")`. The predictor falls to near 0 by ε ≈ 2 to 3 under PGD,
# while noise of the same ℓ2 norm (a random direction) barely moves its accuracy. An ℓ2
# ball of radius 2 on 784 pixels allows about 0.07 per pixel on average, less than the ℓ∞
# budgets above, yet concentrated where it matters.
# ```
#
# ```{admonition} Solution 2
# :class: dropdown
# Early in training f_t has fitted only the directions with large eigenvalues, which are
# smooth in the input; it is less accurate but its robust accuracy at a fixed ε is higher.
# Its accuracy under attack peaks at an intermediate t. The chapter on the
# robustness–accuracy trade-off decomposes this by eigen-feature.
# ```
#
# ```{admonition} Solution 3
# :class: dropdown
# `robustness.accuracy_vs_epsilon(..., loss="margin")`. The margin loss aims at the decision
# boundary directly, so FGSM with it is usually at least as strong as with cross-entropy;
# `mse` against one-hot targets also rewards lowering wrong logits, which wastes budget.
# PGD takes many small steps and re-aims at each one, so all three end close together.
# ```

# %% [markdown]
# ### A derivation
#
# **Derivation (★★).** Over the ℓ2 ball of radius ε, find the perturbation that maximises the
# first-order gain δ · g (g = ∇ₓL) and the gain it achieves; compare with ε‖g‖₁ for the ℓ∞
# ball. Show that $\|g\|_1 \le \sqrt{d}\,\|g\|_2$, and say what this means for ℓ∞
# budgets in d dimensions.
#
# ```{admonition} Solution: derivation
# :class: dropdown
# By Cauchy–Schwarz, δ · g ≤ ‖δ‖₂ ‖g‖₂ ≤ ε‖g‖₂, with equality at
# $\delta = \varepsilon g / \|g\|_2$. For ℓ∞, δ · g = Σᵢ δᵢgᵢ ≤ ε Σᵢ |gᵢ| = ε‖g‖₁, with
# equality at δ = ε sign g. Cauchy–Schwarz against the all-ones vector gives
# $\|g\|_1 = \sum_i |g_i| \cdot 1 \le \|g\|_2 \sqrt{d}$. So an ℓ∞ budget ε can gain up to
# √d times what an ℓ2 budget ε gains: for a 28 × 28 image √d = 28, which is why ℓ∞ budgets
# that look tiny per pixel are large.
# ```

# %% [markdown]
# ### A coding exercise that checks itself
#
# **Coding (★).** Write `fgsm_step(x, gradient, epsilon)`: the FGSM image for images `x`
# (pixels in [0, 1]) and the loss gradient `gradient` of the same shape, under the ℓ∞
# budget `epsilon`. Mind the pixels at 0 and 1, and pixels whose gradient is exactly 0.


# %%
def fgsm_step(x, gradient, epsilon):
    raise NotImplementedError  # your code here


exercises.check("fgsm_step", fgsm_step)

# %% [markdown]
# ````{admonition} Solution: fgsm_step
# :class: dropdown
# ```python
# import numpy as np
#
#
# def fgsm_step(x, gradient, epsilon):
#     # steepest ascent over the ℓ∞ ball, then back into the valid pixel range
#     return np.clip(x + epsilon * np.sign(gradient), 0.0, 1.0)
# ```
# ````
