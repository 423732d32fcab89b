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
# # Transfer to finite networks and the lazy regime
#
# The previous chapter attacked the kernel predictor, a model nobody trained. Do those
# adversarial examples fool real networks? Claim 2 of {cite:t}`tsilivis2022ntk`: they
# transfer to finite-width networks trained in the *lazy* regime
# {cite:p}`chizat2019lazy`, where a network stays close to its linearisation
# {cite:p}`lee2019wide`, and the transfer weakens as training leaves that regime.
#
# To test the second half one must move a network out of the lazy regime *and change
# nothing else*. Comparing wide and narrow networks, or NTK and standard
# parameterisations, changes several things at once. This chapter uses the output scale
# α of {cite:t}`chizat2019lazy`: one architecture, one width, one loss, one optimiser;
# only α moves the network from lazy (large α) to rich (small α).
#
# **You will learn to**
# - vary laziness alone by training α·(f(x; θ) − f(x; θ₀)) at learning rate η/α²;
# - measure laziness as how far the empirical NTK *turned* (cosine distance), apart from
#   how much it *grew* (norm ratio);
# - evaluate a network against the strongest white-box attack per example, against
#   several surrogates' adversarial examples (transfer) and against noise, and summarise
#   transfer by a ratio that does not reward a network for being hard to attack;
# - check that the experiment can see transfer at all (a positive control) before
#   reading anything into a null result.
#
# **Running time**: the {doc}`execution report <execution_report>` gives the time and
# peak memory of the build you are reading; the chapter prints its own time at the end.
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
width = None
depth = None
alphas = None
seeds = None
target_loss = None
max_steps = None
epsilon = None
pgd_steps = None
smooth_sigma = None
smooth_samples = None
probe_size = None
surrogate_seed = None
matched_epsilons = None
matched_accuracy = None
deep = None
width_sweep = None

# %% tags=["remove-input"]
import time

from IPython.display import Markdown

from ntk_notes import chapter, exercises, report
from ntk_notes import transfer_figures as figures
from ntk_notes import transfer_tables as tables
from ntk_notes.transfer_sweep import Experiment, Sweep, describe

cfg = chapter.begin("transfer_lazy", globals(), "transfer", describe)

# %% [markdown]
# ## The surrogates and their adversarial examples
#
# The task is digit 3 (−1) against digit 5 (+1); the architecture is the kernel's own:
# ReLU hidden layers, W_std = √2, b_std = 0.1, NTK parameterisation. Four surrogates
# produce adversarial test images, each attacked with PGD at ε = `epsilon` (ℓ∞, binary
# cross-entropy on the output, `pgd_steps` steps of 2.5 ε / steps, no random start):
#
# - **f_∞**, kernel regression with the infinite-width NTK: the examples of claim 1;
# - **f_t**, the kernel flow stopped at the time t where its training loss equals the
#   networks' target loss `target_loss`: every network below is trained to that loss, so
#   f_t is the kernel predictor matched to them;
# - **logistic regression on the pixels**: a surrogate that knows nothing about the
#   kernel; if it transferred as well as f_∞, the kernel's examples would not be
#   special;
# - **an independently trained rich network**: the same architecture at the smallest α,
#   from a seed (`surrogate_seed`) no evaluated network uses.
#
# The random-sign noise images of the same ε are drawn once and shared by every model.

# %%
# the task and the settings that every step below shares
exp = Experiment.of(chapter.task(cfg), cfg)
main, rich_surrogate = exp.surrogates(min(cfg.alphas), cfg.surrogate_seed)
sources = main.models
adversarial = exp.attack_images(sources)
noise_images = exp.noise_images(sources["f_∞"], cfg.seed)
print(tables.surrogates_text(main, rich_surrogate, min(cfg.alphas)))
tables.surrogate_table(sources, exp.x_test, exp.labels, adversarial, noise_images)

# %% [markdown]
# Accuracies with their 95% Wilson intervals over the test images. A surrogate must
# itself be accurate and broken by its own attack, or its examples test nothing.
#
# ## Laziness, varied alone
#
# For every seed and every α of `alphas` we initialise θ₀ and train the model
# α·(f(x; θ) − f(x; θ₀)) by full-batch gradient descent on the squared loss
# ½·mean(α(f − f₀) − Y)², at learning rate η/α². The model's tangent kernel is
# α² times the network's, so at this rate its *function* moves at the same speed for
# every α; but to change the output by a given amount θ must move 1/α as far. Large α:
# θ hardly moves and the empirical NTK stays put (lazy). Small α: θ moves far and the
# kernel turns (rich). Every run trains until its training loss is at most
# `target_loss` (checked every 50 steps; the rate is halved if the loss diverges), so
# all fit the training set equally well. The **linearised** network (centred, trained at
# η) is the control: its kernel cannot move.
#
# Laziness is measured on `probe_size` training images, two ways, reported separately:
# the **cosine distance** S(K₀, K_T) = 1 − ⟨K₀, K_T⟩ / (‖K₀‖ ‖K_T‖) of the network's
# empirical NTK at the start and at the end (how far it turned), and the **norm ratio**
# ‖K_T‖ / ‖K₀‖ (how much it grew): a kernel can grow a lot without turning.

# %% tags=["remove-cell"]
start = time.perf_counter()

# %%
trained = exp.sweep(main.init_fn, main.apply_fn, cfg.alphas, cfg.seeds, main.rate)

# %% tags=["remove-input"]
tables.shown(tables.training_summary(trained, time.perf_counter() - start))

# %% [markdown]
# Means and standard deviations over the seeds. If the cosine distance does not rise
# steadily as α falls, α is not moving the networks out of the lazy regime and the rest
# of the chapter cannot test the claim.
#
# Read the spread over seeds as the precision of every rich network's number. Rich training
# amplifies rounding: the same runs compiled otherwise (other XLA flags, another jax), or
# with a learning rate different in its last digits, end at other values, typically within
# that spread, and a rank correlation over the 18 nets can move by more than its 95%
# interval: a part of the claim that holds or fails near its threshold is not decided at
# this size. The lazy and linearised networks and f_∞ change only in their last digits.
#
# ## Evaluation of every network
#
# Each network is evaluated on the clean test images, on each surrogate's adversarial
# images (transfer) and on the noise images, and under its own **white-box** attack:
# per example, the strongest of PGD (as above), FGSM and FGSM on a noise-averaged
# gradient (the mean gradient over `smooth_samples` Gaussian perturbations of std
# `smooth_sigma`). A lazy ReLU network at large α can defeat plain FGSM by a locally
# uninformative gradient; without the stronger attacks the lazy end would look as if
# the kernel's examples transferred *more* than the net's own attack.
#
# The **transfer ratio** (clean − transfer) / (clean − white-box) is the share of what
# the white-box attack removes that a surrogate's examples remove too. Raw transfer
# accuracy is not enough: a rich network may be harder to attack by *any* examples, and
# then raw transfer accuracy rises even if the kernel's examples are as good as ever.

# %%
evaluations = exp.evaluate_all(trained, adversarial, noise_images)
results = tables.results_table(trained, evaluations)
tables.mean_table(results, sources)

# %% [markdown]
# Means over the seeds. The next figure shows every network separately.

# %% tags=["remove-output"]
ratio_figure = figures.transfer_ratios(results, sources)

# %% [markdown]
# ```{glue:figure} transfer_figure
# :name: fig-transfer-ratios
# :alt: Two scatter panels against the cosine distance of each network's kernel on a logarithmic axis: left, the transfer ratio of the kernel predictor's adversarial examples per network, coloured by the laziness parameter α, with the linearised networks as stars; right, the transfer ratio of every surrogate.
#
# Transfer against laziness: for each trained network, how far its empirical NTK turned
# (cosine distance, log axis) and the transfer ratio of f_∞'s adversarial examples
# (left; stars: linearised networks, drawn at the left edge) and of every surrogate's
# (right). A ratio of 1 means the surrogate's examples remove as much accuracy as the
# network's own strongest attack.
# ```

# %% [markdown]
# Left: the transfer ratio of f_∞'s examples against how far each network's kernel
# turned; the stars are the linearised networks (their kernel does not move; drawn at
# the left edge). Right: the same for every surrogate. A ratio of 1 means the
# surrogate's examples remove as much as the network's own strongest attack.
#
# ## Are the attacks sound?
#
# Two checks. First, for every network and every surrogate, the white-box accuracy must
# be at most the transfer accuracy (plus 0.03): an attacker with the network's gradient
# should never do worse than one without it. Second, the checks of
# {cite:t}`carlini2019evaluating` (PGD at least as strong as FGSM per example, accuracy
# not increasing with ε, an unbounded attack reaching 0 %, noise much weaker, doubling
# the steps changing little) on f_∞ and, for every seed, on the laziest and the richest
# network and the linearised one.

# %%
checks_passed, checks_total, failing = tables.white_box_checks(trained, evaluations)
print(tables.white_box_text(checks_passed, checks_total, failing))
sanity = exp.sanity_checks(sources["f_∞"], trained, cfg.alphas)
tables.sanity_report(sanity)

# %% [markdown]
# ## Can the experiment see transfer weaken?
#
# A null result means something only if the experiment could have shown the effect.
# Two controls on the linearised networks, the laziest networks there are (each *is*
# kernel regression with its initial empirical NTK), come first:
#
# - **transfer is visible**: f_∞'s examples must remove much more accuracy than noise;
# - **a weakening is visible**: the examples of a surrogate that knows nothing of the
#   kernel (logistic regression on the pixels) must have a transfer ratio clearly below
#   f_∞'s. This is a weakening of known direction (the target's kernel is far from the
#   surrogate's); if the ratio could not tell f_∞ from logistic regression on the same
#   networks, it could not see a network drift away from the kernel either.
#
# Then a prediction of the claim, the control: the lazy limit should transfer at
# least as well as every trained network of its seed. The best of several trained
# networks is flattered by chance (a maximum over noisy ratios), so a trained network
# counts against it only if it transfers significantly better than the linearised
# network (a paired bootstrap over the test images, Holm's correction over all trained
# networks).

# %%
control_table = tables.control_table(
    results, trained, evaluations, cfg.seeds, cfg.alphas
)
control_table.round(3)

# %% [markdown]
# ## Matched white-box robustness
#
# Rich networks are usually harder to attack. The ratio already divides by what the
# white-box attack removes; a second view compares networks at *matched* robustness.
# For every network we find the ε at which its own PGD accuracy falls to
# `matched_accuracy` (interpolating over `matched_epsilons`), and read off its accuracy
# on f_∞'s PGD examples made at that ε. The matched ratio is then
# (clean − transfer at ε*) / (clean − `matched_accuracy`).

# %% tags=["remove-output"]
matched = exp.matched_ratios(trained, sources["f_∞"])
fig = figures.matched_robustness(matched)
chapter.figure("transfer_matched_figure", fig)

# %% [markdown]
# ```{glue:figure} transfer_matched_figure
# :name: fig-transfer-matched
# :alt: Two scatter panels against the cosine distance of each network's kernel on a logarithmic axis, one point per network coloured by seed: the budget at which the network's own PGD reaches the matched accuracy, and the matched transfer ratio.
#
# Matched white-box robustness, one point per trained network: the ε at which its own
# PGD brings it down to the common matched accuracy (left), and the transfer ratio of
# f_∞'s examples made at that ε (right), against how far its kernel turned.
# ```

# %%
tables.shown(tables.matched_summary(matched))

# %% [markdown]
# Left: the ε each network needs before its own PGD brings it down to the common
# accuracy (a larger ε is a more robust network). Right: at that ε, the transfer ratio
# of f_∞'s examples.
#
# ## A deeper network
#
# With one hidden layer there is little room for feature learning. The same sweep with
# `deep["depth"]` hidden layers (its own kernel, f_∞ and base rate) tests whether
# transfer changes more where features can change more.

# %%
d, logistic = cfg.deep, sources["logistic regression"]
deep = exp.deep_sweep(d["depth"], d["alphas"], d["seeds"], logistic, noise_images)
tables.deep_table(deep)

# %% [markdown]
# Means and standard deviations over the seeds. The deep sweep is judged by the same
# rule as the main one below, shown beside it but not the verdict of record.
#
# ## Width, the other axis of laziness
#
# At a fixed α a wider network is lazier: its kernel moves less while it learns. The
# width sweep trains, at α = `width_sweep["alpha"]`, networks of each width of
# `width_sweep["widths"]` (each with the same base rate η of the infinite-width kernel,
# which does not depend on the width) and evaluates them against the same f_∞
# examples. Width changes more than laziness (a narrow network's kernel at
# initialisation is also farther from f_∞'s), so this sweep is shown beside the α sweep,
# not used for the verdict.

# %% tags=["remove-output"]
w, examples = cfg.width_sweep, adversarial["f_∞"]
width_runs = exp.width_sweep(
    w["widths"], w["alpha"], cfg.seeds, main.rate, examples, noise_images
)
by_width = tables.width_frame(width_runs)
width_text = tables.width_text(width_runs)
fig = figures.width_sweep(by_width)
chapter.figure("transfer_width_figure", fig)

# %% [markdown]
# ```{glue:figure} transfer_width_figure
# :name: fig-transfer-width
# :alt: A scatter of the transfer ratio of the kernel predictor's adversarial examples against the cosine distance of each network's kernel on a logarithmic axis, one point per network of the width sweep, coloured by width on a logarithmic colour scale.
#
# The width sweep: transfer ratio of f_∞'s examples against how far each network's
# kernel turned, one point per network, coloured by width.
# ```

# %%
print(f"Width sweep at α = {cfg.width_sweep['alpha']:g}: {width_text}")
tables.width_summary(by_width)

# %% [markdown]
# One point per network, coloured by width. Read it with the α sweep: if the ratio
# falls with the cosine distance here too, the trend does not depend on how the network
# was made less lazy.
#
# ## What we measured
#
# The numbers in this section are the ones this build computed (profile and sizes at the
# top of the chapter); the verdict is written by the rule `ntk_notes.claims.claim2` from
# them, not in advance. Its gates: the white-box attack at least as strong as transfer
# on every network, and the two controls above (transfer visible, a weakening visible).
# Its parts: transfer weakens out of the lazy regime (the within-seed Spearman ρ of
# cosine distance and transfer ratio significantly below 0, by a permutation test
# within seeds); the lazy limit transfers best; transfer weakens at matched white-box
# robustness (the same test on the matched ratio); and transfer exists (on the laziest
# net of every seed, f_∞'s examples remove significantly more than noise). Networks
# whose clean accuracy differs from their seed's linearised network by more than 0.05
# are not compared.

# %% tags=["remove-cell"]
# The rule on the main and the deep sweep, and what the reproduction report pastes.
sweep, checks = Sweep(trained, evaluations, matched), (checks_passed, checks_total)
lines, result = tables.conclude(
    sweep, checks, deep, results, control_table, width_text, ratio_figure, cfg
)

# %% tags=["remove-input"]
Markdown("\n".join(lines) + "\n\n" + report.glue_claim("claim2", result))

# %% tags=["remove-input"]
chapter.end(cfg, "transfer")

# %% [markdown]
# ## Exercises
#
# Difficulty: ★ a short step, ★★ some work, ★★★ a small project. Experiments change
# the parameters cell and rerun; the derivation and the coding exercise come after these.
#
# 1. **Experiment (★).** Attack the networks with plain FGSM only (replace "white-box" by "FGSM" in the
#    ratio). Does the lazy end now seem to transfer *more* than the rich end?
# 2. **Experiment (★).** Change the target training loss (`target_loss`) tenfold in each direction. Does the
#    relation between cosine distance and transfer ratio change?
# 3. **Conceptual (★).** Read the norm ratio beside the cosine distance. Which α values grow the kernel
#    without turning it, and what would a laziness measure ‖K_T − K₀‖ / ‖K₀‖ have said
#    about them?
#
# ```{admonition} Solution 1
# :class: dropdown
# Compute, from `results`, `(clean − transfer from f_∞) / (clean − FGSM)` per network
# and plot it against the cosine distance as in the first figure. What to look for:
# whether the FGSM column is much higher than the white-box column at the largest α
# (FGSM defeated by an uninformative local gradient). Where it is, the FGSM-based ratio
# exceeds 1 at the lazy end: the kernel's examples would look better than the network's
# own attack, an artefact of the weak attack, not a property of the network.
# ```
#
# ```{admonition} Solution 2
# :class: dropdown
# Rerun with `target_loss` at ten times and a tenth of the profile's value (papermill
# `-p target_loss 0.2`), and compare the printed ρ and the first figure with this
# build's. Watch the training table: at the smaller target, check that every run still
# reaches it within `max_steps` (column "reached target"), and that f_t moves towards
# f_∞ (a larger matched time t). What to look for: whether the sign and size of ρ
# survive; a relation that appears only at one training length is about early stopping,
# not laziness.
# ```
#
# ```{admonition} Solution 3
# :class: dropdown
# Compare the "cosine distance" and "norm ratio" columns of the training table per α,
# and compute `kernel_metrics.relative_change` of the two kernels if you keep them (the probe
# kernels are recomputed by `transfer.laziness`). What to look for: runs whose norm
# ratio is far from 1 while their cosine distance stays small. For them the relative
# change ‖K_T − K₀‖ / ‖K₀‖ is about |norm ratio − 1|, so it would call them far from
# lazy although the kernel's direction, which fixes what f_t learns, barely moved.
# ```

# %% [markdown]
# ### A derivation
#
# **Derivation (★★).** Suppose the white-box attack found, for every test image, the worst
# perturbation in the ε-ball. Show that the transfer ratio is then at most 1. What does a
# measured ratio above 1 tell you?
#
# ```{admonition} Solution: derivation
# :class: dropdown
# The transferred examples are also in the
# ε-ball, so on every image the worst perturbation is wrong at least whenever the
# transferred one is: white-box accuracy ≤ transfer accuracy. Hence clean − transfer ≤
# clean − white-box and, when the white-box attack removes anything, the ratio is at
# most 1. A ratio above 1 means the network's own attack missed perturbations that another
# model's examples found: the white-box attack is not the worst case, which is why the
# chapter checks it (*Are the attacks sound?*) before reading transfer.
# ```

# %% [markdown]
# ### A coding exercise that checks itself
#
# **Coding (★).** Write `transfer_ratio(clean, transfer, white_box)`: the transfer ratio of this
# chapter from arrays of clean accuracy, accuracy on the transferred examples and accuracy
# under the network's own white-box attack, one entry per network. What does a ratio above
# 1 say about the white-box attack?


# %%
def transfer_ratio(clean, transfer, white_box):
    raise NotImplementedError  # your code here


exercises.check("transfer_ratio", transfer_ratio)

# %% [markdown]
# ````{admonition} Solution: transfer_ratio
# :class: dropdown
# ```python
# def transfer_ratio(clean, transfer, white_box):
#     # the share of what the network's own attack removes that the transfer removes too
#     return (clean - transfer) / (clean - white_box)
# ```
# ````
