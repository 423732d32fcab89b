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
# # How adversarial training changes the empirical NTK
#
# A finite network's kernel is not fixed: its empirical NTK {cite:p}`jacot2018neural`,
# K_t(x, x') = ∇_θ f(x; θ_t) · ∇_θ f(x'; θ_t), moves during training, fast at first and then
# more slowly, after which training is nearly linear, or "lazy" {cite:p}`chizat2019lazy`.
# Claim 7 of {cite:t}`tsilivis2022ntk`: under adversarial training the kernel settles much
# earlier than under standard training, and concentrates far more on its top eigenspace.
# This chapter trains one CNN three ways, standard, FGSM adversarial training
# {cite:p}`goodfellow2015explaining,wong2020fast` and PGD adversarial training
# {cite:p}`madry2018towards`, from three initialisations, records its empirical NTK every
# epoch on three probes and asks, in four ways, which kernel settles first.
#
# **You will learn to**
# - make adversarial training of a small network work at ε = 0.1 (a warm-up of the
#   budget, FGSM with a random start);
# - measure a kernel's motion on probes that do not move with the model, and keep its
#   turning (cosine distance) apart from its growth (norm);
# - test "settles earlier" four ways: a settling epoch, direction and norm separately,
#   linearisation {cite:p}`lee2019wide` from epoch k, and the centred spectral mass;
# - decide the claim with a rule that was tested on null data.
#
# **Running time**: `default` is meant to run in a few minutes on 2 CPU cores (the time
# of this build is printed at the end; checkpoints make reruns far quicker); `smoke` in
# seconds; `paper` (CIFAR-10, the authors' CNN, 200 epochs) is meant for a GPU and has not
# been timed. The {doc}`execution report <execution_report>` gives the time and peak memory
# of the build you are reading. Symbols follow the {doc}`notation page <notation>`.

# %% tags=["parameters"]
profile = "default"  # smoke | default | paper: one switch scales the whole chapter
dataset = None  # every setting left at None comes from the profile
data_dir = None  # a folder with the dataset's standard files (IDX for MNIST and
#   Fashion-MNIST, binary batches for CIFAR-10); None: offline copy or download cache
classes = None
n_train = None
n_test = None
image_size = None
seed = None  # the train / test split
seeds = None  # one run of each training per seed: its initialisation and data order
network = None  # "cnn", "authors_cnn" or "mlp"
widths = None
epochs = None
batch_size = None
learning_rate = None
epsilon = None
pgd_steps = None  # PGD training, and the probes' attack
step_size = None  # PGD step; None: 2.5 ε / steps
warmup_epochs = None  # ε rises linearly to its value over these first epochs
fgsm_random_start = None  # FGSM training from a random point, step 1.25 ε
eval_steps = None  # PGD evaluation (random start)
record_every = None  # kernels are recorded every this many epochs
probe_size = None
top_k = None
settle_threshold = None  # test 1: S(K_t, K_T) below this from the settling epoch on
norm_tolerance = None  # test 2: relative band around the final value
linearise_fractions = None  # test 3: epochs k tried, as fractions of the run
linearise_tolerance = None  # test 3: "ends within" this accuracy

# %% tags=["remove-input"]
from IPython.display import Markdown
from myst_nb import glue

from ntk_notes import chapter, claims, exercises, plotting_dynamics, report
from ntk_notes import dynamics_experiment as experiment
from ntk_notes import dynamics_tables as tables

cfg = chapter.begin(
    "adversarial_training_dynamics", globals(), "dynamics", experiment.describe
)

# %% [markdown]
# ## A setting where the comparison is fair
#
# The comparison means something only between runs that work: standard training must
# learn features, that is turn its kernel measurably (not merely grow it), and adversarial
# training must reach a useful robust accuracy. The network is the package's small CNN
# (`architectures.network("cnn")`: a 3×3 convolution, two 3×3 stride-2 convolutions, a
# dense readout) in the standard parameterization, trained by plain SGD on cross-entropy. Its
# width and rate come from pilot runs made while writing this chapter, not from this
# build (exercise 1 repeats them): in the NTK parameterization standard training grew
# the kernel many times over without turning it much, and adversarial training failed to
# learn; in the standard parameterization at rate 0.05 with wider convolutions,
# adversarial training worked but standard training turned the kernel little. Under
# `default` the convolutions are narrower and the rate higher, until standard training
# turned the kernel in the pilots; the sections below measure whether it does here.
#
# The `paper` profile runs the authors' CNN (`architectures.network("authors_cnn")`, with
# average pooling where they max-pool) on CIFAR-10 with their rate, batch, epochs and
# PGD (ε = 8/255, steps of 2/255, 20 steps, from x), plain FGSM and no warm-up, as they
# trained. It differs from them in three seeds, the fixed probes and the four tests, and
# PGD evaluation with a random start.
#
# ### What adversarial training optimises
#
# Standard training minimises the average loss on the training images. Adversarial
# training {cite:p}`madry2018towards` minimises the loss on the *worst* perturbation of
# each image within the threat model, here the ℓ∞ ball of radius ε:
#
# $$ \min_\theta \; \frac{1}{N} \sum_{j=1}^{N} \; \max_{\|\delta_j\|_\infty \le
#    \varepsilon,\; x_j + \delta_j \in [0, 1]^d} \; \ell\bigl(f(x_j + \delta_j;
#    \theta),\, y_j\bigr). $$
#
# The inner maximum has no closed form, so each step of training first *approximates* it
# with an attack on the current network, then takes an SGD step on the loss at the
# attacked images; by Danskin's theorem that is a step along the gradient of the outer
# objective when the inner maximum is found exactly. FGSM training approximates the inner
# maximum with one signed-gradient step, PGD training with several projected ones; the
# better the approximation, the closer training is to the objective above, and the more
# each step costs (one gradient per attack step). Because the attacked images change with
# the network as it trains, its kernel is measured on probes that do not depend on the
# model (below), besides the moving adversarial probe the authors used.
#
# Adversarial training at ε = 0.1 uses two safeguards here: the budget rises linearly over
# the first `warmup_epochs` epochs (a network asked to be robust before it has learned
# anything can collapse to one class), and FGSM training starts from a random point of the
# ε-ball with a step of 1.25 ε, the "fast" adversarial training of
# {cite:t}`wong2020fast`, which avoids the catastrophic overfitting of plain FGSM
# training. Exercise 2 trains without them, to see what they buy at this size. PGD training uses
# `pgd_steps` steps of 2.5 ε / steps from x, as the authors' (zero initialisation).
#
# Each seed fixes one initialisation θ₀ and one data order, shared by its three runs.
# Every epoch is checkpointed in the data cache, so a rerun loads instead of training.
# Forty epochs amplify rounding: the same runs compiled otherwise (other XLA flags, another
# jax, the attack's loop rolled) end at other numbers, typically within their spread over
# seeds, so read every ± below as the precision of the number before it.

# %%
task = chapter.task(cfg)
runs = experiment.train_runs(cfg, task)  # {(seed, mode): run}, checkpointed per epoch

# %% [markdown]
# ## Do both kinds of training work?
#
# Clean test accuracy and accuracy under PGD (`eval_steps` steps of 2.5 ε / steps with a
# random start, as evaluation should use {cite:p}`madry2018towards`) at the last epoch,
# with 95% Wilson intervals over the test images; the last column is the mean and the
# standard deviation over seeds.

# %%
outcomes, final = experiment.final_outcomes(runs, task, cfg)
tables.accuracy_table(final, cfg.seeds, len(task.labels_test))

# %% tags=["remove-input"]
chance = experiment.majority_rate(task.labels_test)
Markdown(tables.accuracy_summary(final, chance))

# %% [markdown]
# ## The empirical NTK on three probes
#
# Every recorded epoch, the empirical NTK of each run on three batches of `probe_size`
# training images (with one output the kernel is probe × probe; with C outputs the full
# (probe · C) × (probe · C) kernel, not traced):
#
# - the **clean probe**, fixed;
# - the **fixed adversarial probe**: the same images attacked *once*, by the authors' PGD,
#   against the seed's initial network θ₀, which its three runs share, so that all three
#   are measured on the same inputs;
# - the authors' **moving probe**: the images attacked again every epoch against that
#   epoch's network, by the same PGD in all three runs.
#
# On a fixed probe only the parameters move the kernel; on the moving probe the inputs
# move too, and differently in each run. The tests below are decided on the clean probe
# and repeated on the other two.

# %%
kernels = experiment.probe_kernels(runs, task, cfg)  # {(seed, mode): {probe: kernels}}

# %% [markdown]
# ### Turning and growing, separately
#
# The cosine distance S(K_t, K_0) = 1 − s(K_t, K_0), with s(K₁, K₂) = ⟨K₁, K₂⟩ /
# (‖K₁‖_F ‖K₂‖_F) {cite:p}`fort2020deep`, measures how far the kernel has *turned*; the
# ratio ‖K_t‖_F / ‖K_0‖_F how much it has *grown*. A kernel can grow a hundredfold without
# turning, and ‖K_t − K_0‖ / ‖K_0‖ would count that as motion. Lines are means over
# seeds, bands their range.

# %% tags=["remove-output"]
curves = experiment.kernel_curves(kernels, cfg, n_out=task.y_train.shape[1])
fig = plotting_dynamics.turning_and_growing(curves, experiment.PROBES)
chapter.figure("dynamics_figure", fig)  # the reproduction report pastes it too

# %% [markdown]
# ```{glue:figure} dynamics_figure
# :name: fig-dynamics-turning
# :alt: A grid with one column per probe: top row, the cosine distance of the empirical NTK to its initial value against the epoch; bottom row, the norm ratio of the kernel to its initial value on a logarithmic axis; one line per training mode with a band over seeds.
#
# How the empirical NTK moves under standard, FGSM and PGD training, on each probe
# (columns): how far it has turned from K_0 (top, cosine distance) and how much it has
# grown (bottom, ‖K_t‖/‖K_0‖); lines are means over seeds, bands their range. What to
# look for: a curve that flattens early has settled; turning, not growth, is what claim
# 7 is about.
# ```

# %% [markdown]
# ### Distance between the kernels of different epochs
#
# S(K_i, K_j) between every pair of recorded epochs, first seed, clean probe. A kernel that
# settles early shows a large dark block in the lower right: all later epochs alike.

# %% tags=["remove-output"]
first = cfg.seeds[0]
fig = plotting_dynamics.distance_heatmaps(
    {mode: kernels[first, mode]["clean"] for mode in experiment.MODES}
)
chapter.figure("dynamics_distance_figure", fig)

# %% [markdown]
# ```{glue:figure} dynamics_distance_figure
# :name: fig-dynamics-distance
# :alt: One heat map per training mode of the kernel distance between every pair of recorded epochs, on the clean probe for the first seed.
#
# Kernel distance S(K_i, K_j) between every pair of recorded epochs i, j (first seed,
# clean probe), one panel per training mode. What to look for: a kernel that settles
# early shows a large dark block in the lower right, all later epochs alike; a kernel
# still moving shows a gradient up to the corner.
# ```

# %% [markdown]
# ## Four tests of "settles earlier"
#
# Per run:
#
# 1. **settling epoch**: the first epoch after which S(K_t, K_T) to the final kernel stays
#    below `settle_threshold`;
# 2. **direction and norm**: the first epoch after which the cosine distance to K_0 stays
#    within `norm_tolerance` (relative) of its final value, the same for the norm, and the
#    later of the two;
# 3. **linearisation**: continue the run from epoch k with the network replaced by its
#    linearisation around θ_k (`nt.linearize`), same data and attacks, to the last
#    epoch; the earliest k (of `linearise_fractions` of the run, tried from the latest
#    down) from which the continuation ends within `linearise_tolerance` of the full run's
#    clean *and* PGD test accuracy. A kernel that has settled makes training linear.
# 4. **concentration**: the centred kernel HKH's spectral mass outside its top-k
#    eigenspace, 1 − M_k, over epochs (H removes the mean over the probe images, whose
#    constant mode otherwise holds nearly all of a one-output kernel's mass).
#
# A test that cannot be computed (a kernel that never left the threshold band has no
# settling epoch) gives NaN.

# %% tags=["hide-output"]
settling, linearisations = experiment.settling_tests(runs, kernels, task, cfg)
tables.settling_view(settling, cfg.top_k)  # folded on the site; the verdict sums it up

# %% [markdown]
# The linearised continuations, per run: the accuracy gaps to the full run (linearised
# minus full) for each epoch k tried.

# %%
tables.linearisation_gaps(linearisations)

# %% [markdown]
# ### Concentration on the top eigenspace (test 4)

# %% tags=["remove-output"]
grid = plotting_dynamics.concentration(curves, experiment.outside_label(cfg.top_k))
chapter.figure("dynamics_concentration_figure", grid)

# %% [markdown]
# ```{glue:figure} dynamics_concentration_figure
# :name: fig-dynamics-concentration
# :alt: Line plots against the epoch, one panel per probe: the centred spectral mass of the empirical NTK outside its top-k eigenspace, one line per training mode with a band over seeds.
#
# The share of the kernel's centred spectral mass outside its top-k eigenspace against
# the epoch, per probe; means over seeds, bands their range. Claim 7 predicts a lower
# curve, more concentration on the top eigenspace, under adversarial training.
# ```

# %% tags=["remove-input"]
Markdown(tables.concentration_text(settling, cfg.top_k))

# %% [markdown]
# ## The verdict
#
# The rule (`claims.claim7`, tested on null data in `tests/test_claims_dynamics.py`):
# in each of tests 1–3, an adversarial run counts as settling earlier when its epoch comes
# before that of *every* standard run (so that a difference within the standard runs'
# own spread over seeds does not count); the test holds when, for FGSM and for PGD, at
# least 2 of 3 seeds do, at least 5 of the 6 runs do and none settles at or after a
# standard run. The claim holds when at least two of the three tests hold. Stricter than
# "2 of 3 seeds" alone, which holds 9% of the time when the epochs are exchangeable
# between trainings. Test 4 and the other two probes are shown, not decided on.

# %%
by_mode = experiment.outcomes_by_mode(outcomes, cfg.seeds)
clean_epochs = experiment.epochs_of(settling, "clean", cfg.seeds)
result = claims.claim7(clean_epochs, by_mode, chance)
Markdown(report.glue_claim("claim7", result))

# %% tags=["remove-input"]
Markdown(tables.other_probes_text(settling, by_mode, chance, cfg.seeds))

# %% [markdown]
# ### A positive control: can these tests see a kernel that settles early?
#
# Each standard run continued from epoch k₀ (the earliest linearisation epoch tried) as its
# linearisation: a run whose kernel is frozen from k₀ on by construction, trained as long.
# Handed to the same rule in place of the adversarial runs (its linearisation epoch is k₀
# by construction; the accuracy gates are left out, since a linearised run is not an
# adversarial one), it should be found to settle earlier than the standard runs.

# %%
control = experiment.positive_control(runs, task, settling, cfg)
Markdown(tables.control_text(control))

# %% tags=["remove-cell"]
glue("dynamics_control_outcome", control.result.verdict, display=False)


# %% tags=["remove-cell"]
tables.glue_report_values(settling, final, cfg)  # the report's claim-7 table

# %% tags=["remove-input"]
Markdown(tables.turned_text(settling))

# %% tags=["remove-input"]
chapter.end(cfg, "dynamics")

# %% [markdown]
# ## Exercises
#
# Difficulty: ★ a short step, ★★ some work, ★★★ a small project. Experiments change
# the parameters cell and rerun; the derivation and the coding exercise come after these.
#
# 1. **Experiment (★★).** Predict first, then run: with a smaller learning rate (`learning_rate = 0.05`, one of
#    the pilots' rates) and the same number of epochs, should standard training turn its
#    kernel more or less than here? What does that do to a test of "adversarial training
#    settles earlier"? Run it (with `widths = [16, 32, 32]`, then also at the rate of
#    this page) and compare the settling tables.
# 2. **Experiment (★).** Train without the warm-up (`warmup_epochs = 0`) and with plain FGSM
#    (`fgsm_random_start = False`). Which of the adversarial runs still works?
# 3. **Conceptual (★★).** The tests are decided on the clean probe. Which probe makes the adversarial runs'
#    kernels look most settled, and why might the moving probe mislead?
#
# ```{admonition} Solution 1
# :class: dropdown
# Less. With the same epochs, the parameters travel about η × (steps) × (gradient size)
# from θ₀, so a smaller rate leaves them much nearer to θ₀, and the empirical
# kernel, which moves with the parameters, nearer to K₀: training is closer to the lazy
# regime {cite:p}`chizat2019lazy`. A kernel that hardly turns under standard training
# leaves "adversarial training settles earlier" nothing to be earlier than: when the
# standard runs' `turned` column is no larger than its spread over seeds, the rule cannot
# separate the two, and the honest verdict is *inconclusive*, whatever the adversarial
# runs do. To check, pass `learning_rate=0.05, widths=[16, 32, 32]` (papermill `-p`; each
# configuration gets its own checkpoints) and compare the standard runs' `turned` column
# and the verdict with this page's.
# ```
#
# ```{admonition} Solution 2
# :class: dropdown
# Set `warmup_epochs=0`, then `fgsm_random_start=False`, and read the accuracy table.
# Look for a run whose clean accuracy is near the majority rate (collapse to one class)
# or whose PGD accuracy is near 0 while its clean accuracy is high (catastrophic
# overfitting of FGSM training, {cite:t}`wong2020fast`); such runs cannot be compared.
# ```
#
# ```{admonition} Solution 3
# :class: dropdown
# Compare the rows of the settling table for the three probes, and the two extra verdicts
# printed under the verdict. On the moving probe the inputs change every epoch with the
# model and differ between the three runs, so a kernel can look as if it moved (or
# settled) because its inputs did; on the fixed probes only the parameters move it.
# ```

# %% [markdown]
# ### A derivation
#
# **Derivation (★).** Show that the kernel distance S(K₁, K₂) does not change when either
# kernel is multiplied by a positive number, and that S(K₀, K_t) = 0 when training only
# rescales the kernel, K_t = c K₀. Why does this make S a measure of *turning* and not
# of growth?
#
# ```{admonition} Solution: derivation
# :class: dropdown
# $s(cK_1, K_2) = c\langle K_1, K_2\rangle / (c\|K_1\|_F \|K_2\|_F) =
# s(K_1, K_2)$ for c > 0, and likewise for K₂; so S = 1 − s is unchanged. For
# K_t = cK₀, $s = c\|K_0\|_F^2 / (c\|K_0\|_F^2) = 1$ and S = 0. S depends only on the
# direction of the kernel in the space of matrices: a kernel that grows without turning
# has S = 0, which is why the chapter reads the norm ratio ‖K_t‖/‖K₀‖ separately.
# ```

# %% [markdown]
# ### A coding exercise that checks itself
#
# **Coding (★).** Write `kernel_distance(k1, k2)`: the kernel distance S(K₁, K₂) = 1 − s(K₁, K₂)
# of this chapter, with s the cosine of the angle between the two matrices. The check
# includes a kernel and three times itself: what must S be, and why is that the point of
# measuring turning apart from growth?


# %%
def kernel_distance(k1, k2):
    raise NotImplementedError  # your code here


exercises.check("kernel_distance", kernel_distance)

# %% [markdown]
# ````{admonition} Solution: kernel_distance
# :class: dropdown
# ```python
# import numpy as np
#
#
# def kernel_distance(k1, k2):
#     # ⟨K1, K2⟩ / (‖K1‖_F ‖K2‖_F) does not change when a kernel is scaled
#     return 1 - np.sum(k1 * k2) / (np.linalg.norm(k1) * np.linalg.norm(k2))
# ```
# ````
