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
# Claim 7 of {cite:t}`tsilivis2022ntk`: under adversarial training the
# kernel settles much earlier than under standard training, and concentrates far more on its
# top eigenspace. This chapter trains the same network three ways, standard, FGSM
# adversarial training {cite:p}`goodfellow2015explaining,wong2020fast` and PGD adversarial
# training {cite:p}`madry2018towards`, records its empirical NTK on a fixed
# probe batch every epoch and measures how it moves.
#
# **You will learn to**
# - run standard and adversarial training with deterministic data order and checkpoints that
#   a rerun reuses;
# - compute the empirical NTK through training and measure its motion: distance heat maps,
#   velocity, polar trajectories, spectral mass and kernel–target alignment
#   {cite:p}`cristianini2002kernel`;
# - avoid two pitfalls of these metrics (an uncentred kernel's top eigenvalue, and a kernel
#   that grows without turning);
# - test laziness directly by swapping the network for its linearisation
#   {cite:p}`lee2019wide` from epoch k on.
#
# **Running time**, measured on 2 CPU cores: `smoke` about 20 s, `default` about 35 s;
# `paper` (CIFAR-10, the authors' CNN settings, 200 epochs) is meant for a GPU, and has not
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
classes = None
n_train = None
n_test = None
image_size = None
seed = None
network = None  # "mlp" or "cnn"
widths = None
epochs = None
batch_size = None
learning_rate = None
epsilon = None
pgd_steps = None
step_size = None  # PGD step; None: 2.5 ε / steps
record_every = None  # kernels are recorded every this many epochs
probe_size = None
top_k = None

# %%
import hashlib
import time

import jax
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown
from myst_nb import glue

from ntk_notes import claims, data, dynamics, plotting, report
from ntk_notes.profiles import settings

cfg = settings("adversarial_training_dynamics", profile, dataset=dataset, classes=classes, n_train=n_train,
               n_test=n_test, image_size=image_size, seed=seed, network=network, widths=widths, epochs=epochs,
               batch_size=batch_size, learning_rate=learning_rate, epsilon=epsilon, pgd_steps=pgd_steps,
               step_size=step_size, record_every=record_every, probe_size=probe_size, top_k=top_k)
plotting.use_style()
chapter_start = time.perf_counter()
print(report.glue_setting(
    "dynamics", cfg.profile,
    f"{cfg.dataset}, {'digits %d vs %d' % tuple(cfg.classes) if cfg.classes else 'all classes'}, {cfg.image_size}² "
    f"images, {cfg.n_train} train / {cfg.n_test} test; {cfg.network.upper()} {tuple(cfg.widths)}, {cfg.epochs} epochs of "
    f"SGD, rate {cfg.learning_rate}, batch {cfg.batch_size}; ε = {cfg.epsilon:.3g}, PGD-{cfg.pgd_steps}"))

# %% [markdown]
# ## Three training runs
#
# One initialisation θ₀, one data order per epoch (seeded), three ways of training with plain
# SGD and cross-entropy: on clean minibatches; on FGSM images x + ε·sign ∇ₓL; on PGD images
# (`pgd_steps` steps, projected onto the ℓ∞ ε-ball and [0, 1], starting at x as the
# authors did). The adversarial images are made against the current parameters.
#
# Under `default` the budget is ε = 0.05, not the customary 0.3 (or 0.1) for MNIST
# {cite:p}`lecun1998gradient`. Adversarial training of a small model on few, small
# images can fail under a large budget: FGSM training can overfit catastrophically in
# the sense of {cite:t}`wong2020fast` (high clean accuracy, PGD accuracy near zero), and
# PGD training can collapse to predicting one class. The smaller budget is meant to keep
# both adversarial runs working, since the comparison below is only meaningful between
# working runs; the accuracy section below says whether they work in this build. Every
# recorded epoch is checkpointed as `.npz` in the data cache, so a rerun of this chapter
# loads instead of training, and an interrupted run resumes where it stopped.

# %%
task = data.make_task(cfg.dataset, classes=cfg.classes, n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed,
                      image_size=cfg.image_size, data_dir=data_dir)
n_out = task.y_train.shape[1]
init_fn, apply_fn, _ = dynamics.network(cfg.network, n_out=n_out, widths=tuple(cfg.widths))
_, params = init_fn(jax.random.PRNGKey(cfg.seed), task.x_train.shape)
recorded = sorted(set(range(0, cfg.epochs + 1, cfg.record_every)) | {cfg.epochs})
# One checkpoint directory per configuration, so that runs with other settings (an exercise,
# a test's stand-in) never meet this one's files and make it train again.
settings_digest = hashlib.sha256(repr(sorted(vars(cfg).items())).encode()).hexdigest()[:12]
checkpoints = data.cache_dir() / "checkpoints" / "adversarial_training_dynamics"
MODES = ["standard", "fgsm", "pgd"]
runs = {}
for mode in MODES:
    start = time.perf_counter()
    runs[mode] = dynamics.adversarial_train(
        apply_fn, params, task.x_train, task.labels_train, epochs=cfg.epochs, learning_rate=cfg.learning_rate,
        batch_size=cfg.batch_size, mode=mode, epsilon=cfg.epsilon, step_size=cfg.step_size, steps=cfg.pgd_steps,
        seed=cfg.seed, record_epochs=recorded, directory=checkpoints / f"{cfg.profile}-{mode}-eps{cfg.epsilon:.4g}-{settings_digest}",
        config={"network": cfg.network, "widths": list(cfg.widths), "dataset": cfg.dataset})
    print(f"{mode}: {len(runs[mode].trained)} epochs trained, {cfg.epochs - len(runs[mode].trained)} loaded, "
          f"{time.perf_counter() - start:.1f} s")

# %% [markdown]
# ## Accuracy through training
#
# Clean test accuracy and accuracy under PGD (`pgd_steps` steps of 2.5 ε / steps, with a
# random start as evaluation should use) at every recorded epoch.

# %%
accuracy = pd.concat([dynamics.accuracy_over_epochs(run, task.x_test, task.labels_test, cfg.epsilon, "pgd",
                                                     steps=cfg.pgd_steps, random_start=True).assign(mode=mode)
                      for mode, run in runs.items()], ignore_index=True)
long = accuracy.melt(id_vars=["epoch", "mode"], value_vars=["clean_accuracy", "robust_accuracy"],
                     var_name="evaluated", value_name="test accuracy")
grid = sns.relplot(long, x="epoch", y="test accuracy", hue="mode", style="evaluated", kind="line", height=3.6,
                   aspect=1.6)
grid.set(ylim=(-0.02, 1.02))
final = accuracy[accuracy.epoch == cfg.epochs].set_index("mode")
final.round(3)

# %% tags=["remove-input"]
chance = np.bincount(task.labels_test).max() / len(task.labels_test)
at_chance = [mode for mode in MODES
             if final.loc[mode, "clean_accuracy"] < chance + 0.05]
Markdown("At the last epoch of this build: " + "; ".join(
    f"{mode} training, clean accuracy {final.loc[mode, 'clean_accuracy']:.2f} and PGD "
    f"accuracy {final.loc[mode, 'robust_accuracy']:.2f}" for mode in MODES)
    + f". Predicting the most common class would score {chance:.2f}"
    + (f"; {', '.join(at_chance)} training is within 0.05 of that: it does not work "
       "at this budget, and the comparison below is not between working runs."
       if at_chance else "; every run's clean accuracy is more than 0.05 above it."))

# %% [markdown]
# ## The empirical NTK on a probe batch
#
# The probe is the first `probe_size` training images. At each recorded epoch we compute the
# empirical NTK of the network at that epoch on the probe, and on the probe attacked against
# that epoch's network (the authors' protocol; their epoch 0 used clean images). With one
# output (the binary task) the kernel is probe × probe; with C outputs it is the full
# (probe · C) × (probe · C) kernel, not traced. Of the empirical-NTK implementations of
# neural-tangents {cite:p}`novak2020neural,novak2022fast`, the fastest of those that agree
# with the explicit Jacobian contraction is chosen once.

# %%
probe, probe_labels = task.x_train[:cfg.probe_size], task.labels_train[:cfg.probe_size]
targets = task.y_train[:cfg.probe_size]
trajectories = {}
for mode, run in runs.items():
    trajectories[mode] = dynamics.kernel_trajectory(run, probe, probe_labels, trace=False)
choice = next((t.choice for t in trajectories.values() if t.choice is not None), None)
if choice is not None:
    print(f"implementation: {choice.implementation} ({choice})")
metrics = {(mode, kind): dynamics.kernel_metrics(getattr(trajectory, kind), targets, ks=(cfg.top_k,),
                                                  n_outputs=n_out, epochs=trajectory.epochs)
           for mode, trajectory in trajectories.items() for kind in ("clean", "adversarial")}

# %% [markdown]
# ### Distance between the kernels of different epochs
#
# Kernel distance S = 1 − s(K₁, K₂), with the similarity
# s(K₁, K₂) = ⟨K₁, K₂⟩ / (‖K₁‖_F ‖K₂‖_F) and ⟨A, B⟩ = Tr(ABᵀ) {cite:p}`fort2020deep`, between
# every pair of recorded epochs, on the adversarial probe. A kernel that settles early shows
# a large dark block: all later epochs alike.

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
for ax, (mode, trajectory) in zip(axes, trajectories.items()):
    sns.heatmap(dynamics.distance_matrix(trajectory.adversarial), ax=ax, cmap="magma", square=True,
                xticklabels=max(1, len(trajectory.epochs) // 6), yticklabels=max(1, len(trajectory.epochs) // 6))
    ax.set(title=mode, xlabel="epoch index", ylabel="epoch index")
fig.tight_layout()

# %% [markdown]
# ### Velocity, and the pitfall of a growing kernel
#
# Kernel velocity S(K_t, K_{t+1}) measures how much the kernel *turns* between epochs. Its
# size can change without turning: the relative change ‖K_t − K_0‖_F / ‖K_0‖_F counts that as
# motion, the cosine distance 1 − s(K_t, K_0) does not. Both are shown.

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
for mode in MODES:
    table = metrics[mode, "adversarial"]
    axes[0].plot(table.epoch, table.velocity, marker=".", label=mode)
    axes[1].plot(table.epoch, table.relative_change, marker=".", label=mode)
    axes[2].plot(table.epoch, table.cosine_distance, marker=".", label=mode)
axes[0].set(yscale="log", xlabel="epoch", title="velocity S(K_t, K_(t+1))")
axes[1].set(yscale="log", xlabel="epoch", title="‖K_t − K_0‖ / ‖K_0‖")
axes[2].set(xlabel="epoch", title="cosine distance to K_0")
axes[0].legend()
fig.tight_layout()
glue("dynamics_figure", fig, display=False)  # pasted into the reproduction report

# %% [markdown]
# ### Polar trajectories
#
# Radius r_t = ‖K_t − K_0‖_F / ‖K_T − K_0‖_F (how much of its total motion the kernel has done
# by epoch t) and angle α_t = arccos s(K_t, K_0), for the whole kernel, its rank-`top_k`
# truncation (top eigenspace) and the rest.

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), subplot_kw={"projection": "polar"})
for ax, (mode, trajectory) in zip(axes, trajectories.items()):
    polar = dynamics.polar_trajectory(trajectory.adversarial, k=cfg.top_k)
    for part in ("whole", "top", "rest"):
        p = getattr(polar, part)
        ax.plot(p.angle, p.radius, marker=".", label=part)
    ax.set_title(mode)
axes[0].legend(loc="lower left", fontsize="small")
fig.tight_layout()

# %% [markdown]
# ### Spectral mass, alignment and the top-eigenvalue pitfall
#
# The top-k spectral mass M_k = Σ_{i≤k} λᵢ² / Σᵢ λᵢ². With one output on a binary task
# one expects the uncentred kernel's top eigenvalue (a nearly constant eigenvector) to
# hold almost all of the squared mass from the first epoch to the last, so that the raw
# M_k says little (the line printed with the figure gives its value at epoch 0 in this
# build). We show it with the centred kernel HKH (H subtracts the mean over the probe
# images) and with the top eigenvalue set aside, beside the kernel–target alignment
# ⟨K, YYᵀ⟩ / (‖K‖_F ‖YYᵀ‖_F) and the label energy of the top-k eigenvectors.

# %%
k = cfg.top_k
columns = {f"mass_top{k}": f"M_{k} raw", f"mass_top{k}_centred": f"M_{k} centred",
           f"mass_top{k}_after_first": f"M_{k} without λ₁", "alignment_centred": "alignment (centred)",
           f"label_energy_top{k}": f"label energy, top {k}"}
frame = pd.concat([metrics[mode, "adversarial"].assign(mode=mode) for mode in MODES], ignore_index=True)
frame = frame.rename(columns=columns).melt(id_vars=["epoch", "mode"], value_vars=list(columns.values()),
                                            var_name="metric", value_name="value")
grid = sns.relplot(frame, x="epoch", y="value", hue="mode", col="metric", col_wrap=3, kind="line", height=3,
                   aspect=1.3, facet_kws={"sharey": False})
raw_mass = {mode: float(metrics[mode, "adversarial"][f"mass_top{k}"].iloc[0]) for mode in MODES}
print(f"raw M_{k} at epoch 0: " + ", ".join(f"{m} {v:.4f}" for m, v in raw_mass.items()))

# %% [markdown]
# ## The linearisation ablation
#
# A direct test of laziness: continue each run from epoch k with the network replaced by its
# linearisation around θ_k (`nt.linearize`), the same data and attacks, to the last epoch.
# If the kernel has settled by epoch k, the linearised run ends where the network does.

# %%
ks = sorted({0, cfg.epochs // 4, cfg.epochs // 2, cfg.epochs} & set(recorded))
ablation = pd.concat([dynamics.ablation(run, ks, task.x_test, task.labels_test, cfg.epsilon, "pgd",
                                        steps=cfg.pgd_steps, random_start=True) for run in runs.values()],
                     ignore_index=True)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
for ax, column in zip(axes, ["clean_accuracy", "robust_accuracy"]):
    sns.lineplot(ablation, x="linearised_from", y=column, hue="mode", marker="o", ax=ax)
    ax.set(xlabel="linearised from epoch k", title=column.replace("_", " "))
fig.tight_layout()
ablation.pivot(index="linearised_from", columns="mode", values=["clean_accuracy", "robust_accuracy"]).round(3)

# %% [markdown]
# ## What we measured
#
# "Settling" is measured by when the kernel has done 90 % of its total motion (the first
# epoch with polar radius r_t ≥ 0.9, whole kernel, adversarial probe) and by how much it still
# turns in the second half of training (mean velocity over the last half of the epochs).

# %%
def settling(mode):
    table, polar = metrics[mode, "adversarial"], dynamics.polar_trajectory(trajectories[mode].adversarial, k=k)
    epochs_ = trajectories[mode].epochs
    t90 = int(epochs_[np.argmax(polar.whole.radius >= 0.9)])
    late = float(np.nanmean(table.velocity[epochs_ > cfg.epochs / 2]))
    return {"epoch reaching 90% of motion": t90, "mean velocity, second half": late,
            f"M_{k} centred, last epoch": float(table[f"mass_top{k}_centred"].iloc[-1]),
            "relative change, last epoch": float(table.relative_change.iloc[-1]),
            "cosine distance, last epoch": float(table.cosine_distance.iloc[-1]),
            "clean accuracy": float(final.loc[mode, "clean_accuracy"]),
            "PGD accuracy": float(final.loc[mode, "robust_accuracy"])}


summary = pd.DataFrame({mode: settling(mode) for mode in MODES}).T
for mode in MODES:
    for column, short in [("epoch reaching 90% of motion", "t90"), ("mean velocity, second half", "late_velocity"),
                          (f"M_{k} centred, last epoch", "mass_centred")]:
        glue(f"dynamics_{mode}_{short}", float(f"{summary.loc[mode, column]:.4g}"), display=False)
glue("dynamics_top_k", k, display=False)
summary.round(4)

# %%
def measured():
    s = summary
    lines = ["- 90 % of the kernel's motion is reached at epoch " + ", ".join(
        f"{m} {int(s.loc[m, 'epoch reaching 90% of motion'])}" for m in MODES)
        + f" (of {cfg.epochs}).",
             "- Mean velocity in the second half: " + ", ".join(
                 f"{m} {s.loc[m, 'mean velocity, second half']:.2e}" for m in MODES) + ".",
             f"- Centred top-{k} spectral mass at the end: " + ", ".join(
                 f"{m} {s.loc[m, f'M_{k} centred, last epoch']:.3f}" for m in MODES) + "."]
    result = claims.claim7(s["epoch reaching 90% of motion"], s["mean velocity, second half"],
                           s[f"M_{k} centred, last epoch"],
                           adversarial=[m for m in MODES if m != "standard"])
    return "\n".join(lines) + "\n\n" + report.glue_claim("claim7", result)


Markdown(measured())

# %%
glue("dynamics_chapter_seconds", round(time.perf_counter() - chapter_start, 1), display=False)
print(f"chapter ran in {time.perf_counter() - chapter_start:.0f} s")

# %% [markdown]
# ## Exercises
#
# 1. Run the chapter with `network="cnn"` (smaller images keep it quick on a CPU). Does the
#    verdict change with the architecture?
# 2. Compare the kernels on the clean probe (`metrics[mode, "clean"]`) with those on the
#    adversarial probe. Which one moves more under adversarial training?
#
# ```{admonition} Solution 1
# :class: dropdown
# Set `network = "cnn"`, `widths = [16, 16, 32]`, `image_size = 8` in the parameters
# cell (papermill `-p network cnn` and so on) and rerun. Compare the verdict and the
# summary table with those of the MLP run: for each architecture, does the "epoch
# reaching 90 % of motion" come earlier under FGSM and PGD training than under standard
# training? Compare the modes within each architecture rather than the raw numbers
# across architectures, whose kernels need not move by comparable amounts.
# ```
#
# ```{admonition} Solution 2
# :class: dropdown
# `metrics[mode, "clean"]` (from `dynamics.kernel_metrics` on
# `trajectories[mode].clean`) is the clean-probe table; plot its `cosine_distance` and
# `velocity` beside those of `metrics[mode, "adversarial"]` for each mode. Look for
# which probe's kernel ends farther from K_0 and which settles later. One might expect
# adversarial training to reshape the kernel most where the attacks push, that is on the
# adversarial probe; the two curves say whether it does at this scale.
# ```
