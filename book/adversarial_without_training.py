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
authors_setting = None  # the authors' CIFAR-10 demo (dataset, classes, n_train, n_test); paper profile only

# %%
import time

import jax.numpy as jnp
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from ntk_notes import attacks, claims, data, kernels, plotting, report, stats
from ntk_notes.profiles import settings

cfg = settings("adversarial_without_training", profile, dataset=dataset, binary_classes=binary_classes,
               seed=seed, fc=fc, conv=conv, epsilons=epsilons, check_epsilon=check_epsilon,
               pgd_steps=pgd_steps, seeds=seeds, authors_setting=authors_setting)
plotting.use_style()
chapter_start = time.perf_counter()
print(report.glue_setting(
    "awt", cfg.profile,
    f"{cfg.dataset}, digits {cfg.binary_classes[0]} vs {cfg.binary_classes[1]} and all ten digits; "
    + "; ".join(f"{arch} kernel on {s['image_size']}² images, {s['n_train']} train / {s['n_test']} test"
                for arch, s in [("FC", cfg.fc), ("Conv", cfg.conv)])))

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
tasks = {"3 vs 5": cfg.binary_classes, "10 classes": None}
models = {}  # (task, architecture) -> (task data, predictor)
rows = []
for task_name, classes in tasks.items():
    for arch, sizes in [("FC", cfg.fc), ("Conv", cfg.conv)]:
        task = data.make_task(cfg.dataset, classes=classes, n_train=sizes["n_train"], n_test=sizes["n_test"],
                              seed=cfg.seed, image_size=sizes["image_size"],
                              data_dir=data_dir)
        _, _, kernel_fn = kernels.architecture(arch.lower(), depth=1, n_out=task.y_train.shape[1])
        start = time.perf_counter()
        predictor = kernels.KernelPredictor(kernel_fn, task.x_train, task.y_train)
        models[task_name, arch] = (task, predictor)
        rows.append({"task": task_name, "kernel": arch, "images": f"{sizes['image_size']}²",
                     "train / test": f"{len(task.x_train)} / {len(task.x_test)}",
                     "fit (s)": round(time.perf_counter() - start, 2),
                     "clean test accuracy": kernels.accuracy(predictor.predict(task.x_test), task.labels_test)})
pd.DataFrame(rows).set_index(["task", "kernel"])

# %% [markdown]
# ## Attacking the kernel predictor
#
# The predictor's output is treated as a logit: the attacks maximise the binary
# cross-entropy log(1 + e^{−y f(x)}) on the binary task and the softmax cross-entropy on ten
# classes, with the true labels, although f_∞ was fitted with a squared loss. The threat
# model is ℓ∞ with pixels in [0, 1]:
#
# - **FGSM**: x + ε · sign ∇ₓL, clipped to [0, 1];
# - **PGD**: `pgd_steps` steps of size 2.5 ε / steps along sign ∇ₓL, each projected back
#   onto the ε-ball and into [0, 1], starting at the clean image (the authors' kernel
#   attack had no random start);
# - **noise**: a random ±ε in every pixel, the baseline any attack must beat by far.
#
# A PGD step costs one evaluation of Θ(x, X) and its input gradient: the training system
# Θ(X, X) W = Y was solved once, when the predictor was fitted, and the weights W do not
# depend on the test input. `KernelPredictor.logits_fn()` is that function.

# %%
curves = []
for (task_name, arch), (task, predictor) in models.items():
    curve = attacks.accuracy_vs_epsilon(predictor.logits_fn(), task.x_test, task.labels_test, cfg.epsilons,
                                        steps=cfg.pgd_steps)
    curves.append(curve.assign(task=task_name, kernel=arch))
curves = pd.concat(curves, ignore_index=True)
grid = sns.relplot(curves, x="epsilon", y="accuracy", hue="method", style="kernel", col="task", kind="line",
                   markers=True, height=3.6, aspect=1.2)
grid.set_axis_labels("ε (ℓ∞)", "test accuracy")
grid.set(ylim=(-0.02, 1.02))
glue("awt_figure", grid.figure, display=False)  # pasted into the reproduction report

# %%
curves["accuracy [95% interval]"] = [
    stats.accuracy_text(a, len(models[t, k][0].labels_test))
    for a, t, k in zip(curves.accuracy, curves.task, curves.kernel)]
table = curves.pivot_table(index=["task", "kernel", "method"], columns="epsilon",
                           values="accuracy [95% interval]", aggfunc="first")
table.columns = [f"ε={e:g}" for e in table.columns]
table

# %%
def accuracy_at(task_name, arch, method, epsilon):
    rows = curves[(curves.task == task_name) & (curves.kernel == arch) & (curves.method == method)]
    return float(rows.loc[np.isclose(rows.epsilon, epsilon), "accuracy"].iloc[0])


e = cfg.check_epsilon
glue("awt_epsilon", e, display=False)

# %% tags=["remove-input"]
def sentence(task_name, arch):
    clean, pgd, fgsm, noise = (accuracy_at(task_name, arch, m, eps) for m, eps in
                               [("pgd", 0.0), ("pgd", e), ("fgsm", e), ("noise", e)])
    return (f"{arch} kernel, {task_name}: clean {clean:.3f}, PGD {pgd:.3f}, FGSM {fgsm:.3f}, "
            f"noise {noise:.3f}")


Markdown(f"In this build, at ε = {e:g}: " + "; ".join(sentence(t, a) for t, a in models)
         + ". Compare PGD with noise: the same size of perturbation, in a random direction.")

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
# weaker than PGD; doubling PGD's steps changing little. `attacks.sanity_checks` runs them
# all.

# %%
checks = pd.concat([attacks.sanity_checks(predictor.logits_fn(), task.x_test, task.labels_test, cfg.check_epsilon,
                                          steps=cfg.pgd_steps).assign(task=task_name, kernel=arch)
                    for (task_name, arch), (task, predictor) in models.items()], ignore_index=True)
glue("awt_checks_passed", int(checks.passed.sum()), display=False)
glue("awt_checks_total", len(checks), display=False)
print(f"{checks.passed.sum()} of {len(checks)} checks passed")
checks.set_index(["task", "kernel", "check"])

# %% [markdown]
# ## What the perturbations look like
#
# Below, test images of the FC predictors, their PGD adversarial versions at ε =
# `check_epsilon` and the perturbations (red brighter, blue darker). Titles give the
# predictor's output: the digit it predicts.

# %%
def show_attack(task_name, arch, n=8):
    task, predictor = models[task_name, arch]
    x, labels = task.x_test[:n], task.labels_test[:n]
    result = attacks.attack(predictor.logits_fn(), x, labels, cfg.check_epsilon, "pgd", steps=cfg.pgd_steps)
    names = lambda outputs: [task.class_names[c] for c in  # noqa: E731
                             (outputs[:, 0] > 0 if outputs.shape[1] == 1 else outputs.argmax(1)).astype(int)]
    clean_names, adversarial_names = names(predictor.predict(x)), names(predictor.predict(result.x_adv))
    fig = plotting.adversarial_grid(x, result.x_adv, [f"→ {c}" for c in clean_names],
                                    [f"→ {a}" for a in adversarial_names])
    fig.suptitle(f"{arch} kernel, {task_name}, PGD ε = {cfg.check_epsilon:g}", y=1.02)


show_attack("3 vs 5", "FC")

# %%
show_attack("10 classes", "FC")

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
if cfg.authors_setting:
    authors_task = data.make_task(cfg.authors_setting["dataset"], classes=tuple(cfg.authors_setting["classes"]),
                                  n_train=cfg.authors_setting["n_train"], n_test=cfg.authors_setting["n_test"],
                                  seed=cfg.seed)
    _, _, kernel_fn = kernels.architecture("fc", depth=1)
    authors_logits = kernels.KernelPredictor(kernel_fn, authors_task.x_train, authors_task.y_train).logits_fn()
    x, y = authors_task.x_test, authors_task.labels_test
    ours = [kernels.accuracy(authors_logits(jnp.asarray(x)), y),
            attacks.attack(authors_logits, x, y, 8 / 255, "fgsm").accuracy,
            attacks.attack(authors_logits, x, y, 8 / 255, "pgd", steps=10, step_size=0.01).accuracy]
    authors = pd.DataFrame({"authors (CIFAR-10)": [0.81, 0.02, 0.02], f"ours ({authors_task.dataset})": ours},
                           index=["clean", "FGSM ε=8/255", "PGD-10 ε=8/255"])
    glue("awt_authors_ours_clean", round(ours[0], 3), display=False)
    glue("awt_authors_ours_pgd", round(ours[2], 3), display=False)
    display(authors.round(3))
    print(authors_task.class_names, f"{len(authors_task.x_train)} / {len(x)} images, {authors_task.x_train.shape[1:]}")
else:
    not_run = f"not run under {cfg.profile} (needs CIFAR-10: paper profile)"
    glue("awt_authors_ours_clean", not_run, display=False)
    glue("awt_authors_ours_pgd", not_run, display=False)
    display(Markdown(f"*Not run under the `{cfg.profile}` profile: this comparison needs CIFAR-10, which "
                     "the `paper` profile downloads.*"))

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
def outcomes_of(task_name, arch, task, predictor):
    found = attacks.outcomes(predictor.logits_fn(), task.x_test, task.labels_test, e,
                             "pgd", steps=cfg.pgd_steps)
    majority = np.bincount(task.labels_test).max() / len(task.labels_test)
    return f"{arch}, {task_name}", claims.AttackOutcomes(*found, majority)


def draw_models(draw_seed):
    """The four kernel predictors on another draw of the images."""
    drawn = {}
    for task_name, classes in tasks.items():
        for arch, sizes in [("FC", cfg.fc), ("Conv", cfg.conv)]:
            task = data.make_task(cfg.dataset, classes=classes, n_train=sizes["n_train"],
                                  n_test=sizes["n_test"], seed=draw_seed,
                                  image_size=sizes["image_size"], data_dir=data_dir)
            kernel_fn = kernels.architecture(arch.lower(), depth=1,
                                             n_out=task.y_train.shape[1])[2]
            drawn[task_name, arch] = (task, kernels.KernelPredictor(
                kernel_fn, task.x_train, task.y_train))
    return drawn


results = []
for draw_seed in cfg.seeds:
    drawn = models if draw_seed == cfg.seed else draw_models(draw_seed)
    found = dict(outcomes_of(t, a, *drawn[t, a]) for t, a in drawn)
    results.append(claims.claim1(found, int(checks.passed.sum()), len(checks)))
    if draw_seed == cfg.seed:
        shown = found
claim1 = claims.across_seeds(results)
for task_name, key in [("3 vs 5", "binary"), ("10 classes", "multiclass")]:
    for part, outcome in zip(["clean", "pgd", "noise"], shown[f"FC, {task_name}"][:3]):
        glue(f"awt_fc_{key}_{part}", str(stats.accuracy(outcome)), display=False)
pd.DataFrame([{"predictor": name, "clean": str(stats.accuracy(o.clean)),
               "PGD": str(stats.accuracy(o.attacked)), "noise": str(stats.accuracy(o.noise)),
               "removed by PGD": str(stats.paired_difference(o.clean, o.attacked))}
              for name, o in shown.items()]).set_index("predictor")

# %% tags=["remove-input"]
smallest = min(len(o.clean) for o in shown.values())
Markdown(report.glue_claim("claim1", claim1)
         + f"\n\nThe smallest test set here has {smallest} images: on it an accuracy is told "
         f"apart from 0.5 (80% power) once it differs by "
         f"{stats.detectable_difference(smallest, 0.5):.3f}, and the parts' thresholds "
         f"are {claims.DROP:g} away.")

# %% tags=["remove-cell"]
glue("awt_chapter_seconds", round(time.perf_counter() - chapter_start, 1), display=False)
print(f"chapter ran in {time.perf_counter() - chapter_start:.0f} s")

# %% [markdown]
# ## Exercises
#
# 1. Attack the FC predictor of the binary task under the ℓ2 threat model
#    (`norm="l2"`, for instance ε from 0.5 to 3 on 28 × 28 images) and compare with random
#    noise of the same ℓ2 norm.
# 2. The predictor f_t stops gradient flow at a finite time t. Is the early-stopped kernel
#    predictor more robust than f_∞? Use `predictor.logits_fn(t)` with t from 10 N / λ₁ to
#    10⁴ N / λ₁ (λ₁ = `predictor.eigen[0][0]`).
# 3. Replace the cross-entropy by the `margin` loss and by `mse`. Which loss gives the
#    strongest FGSM on the 10-class task, and why does the choice matter less for PGD?
#
# ```{admonition} Solution 1
# :class: dropdown
# `attacks.accuracy_vs_epsilon(predictor.logits_fn(), task.x_test, task.labels_test,
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
# `attacks.accuracy_vs_epsilon(..., loss="margin")`. The margin loss aims at the decision
# boundary directly, so FGSM with it is usually at least as strong as with cross-entropy;
# `mse` against one-hot targets also rewards lowering wrong logits, which wastes budget.
# PGD takes many small steps and re-aims at each one, so all three end close together.
# ```
