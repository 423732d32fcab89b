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
# adversarial examples fool real networks? Claim 2 of {cite:t}`tsilivis2022ntk`: they transfer
# to finite-width networks trained in the *lazy* regime {cite:p}`chizat2019lazy`, where a
# network stays close to its linearisation {cite:p}`lee2019wide`, and the transfer weakens as
# training leaves that regime. This chapter trains networks of the kernel's own architecture
# at many widths and measures it.
#
# **You will learn to**
# - evaluate a network against white-box PGD {cite:p}`madry2018towards`, against the kernel's
#   adversarial examples (transfer) and against random noise of the same size;
# - attack with the right kernel predictor: f_t at the networks' own training time, not
#   only f_∞;
# - separate the effect of the random initial function f_0 (raw, centred and ensembled
#   networks) from the effect of width;
# - measure laziness (how far the empirical NTK moves during training) and relate
#   transfer to it.
#
# **Running time**, measured on 2 CPU cores: `smoke` about 1 min, `default` about 3½ min;
# `paper` (full MNIST, 2000 training images, five seeds) is meant for a GPU, and has not
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
widths = None
seeds = None
train_steps = None
sgd_steps = None
sgd_batch_size = None
sgd_learning_rate = None
epsilon = None
pgd_steps = None
probe_size = None

# %%
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from jax.tree_util import Partial
from myst_nb import glue

from ntk_notes import attacks, claims, data, kernels, plotting, report, training
from ntk_notes.progress import progress
from ntk_notes.profiles import settings

cfg = settings("transfer_lazy", profile, dataset=dataset, classes=classes, n_train=n_train, n_test=n_test,
               image_size=image_size, seed=seed, widths=widths, seeds=seeds, train_steps=train_steps,
               sgd_steps=sgd_steps, sgd_batch_size=sgd_batch_size, sgd_learning_rate=sgd_learning_rate,
               epsilon=epsilon, pgd_steps=pgd_steps, probe_size=probe_size)
plotting.use_style()
chapter_start = time.perf_counter()
print(report.glue_setting(
    "transfer", cfg.profile,
    f"{cfg.dataset}, digits {cfg.classes[0]} vs {cfg.classes[1]}, {cfg.image_size}² images, {cfg.n_train} train / "
    f"{cfg.n_test} test; FC nets of widths {min(cfg.widths)} to {max(cfg.widths)}, {len(cfg.seeds)} seeds"))

# %% [markdown]
# ## The kernel and its adversarial examples
#
# The task is digit 3 (−1) against digit 5 (+1); the architecture is the kernel's own: one
# hidden ReLU layer, W_std = √2, b_std = 0.1. Every network below is trained for the same
# time t = learning rate × steps on the squared loss ½·mean(f(X) − Y)², which is exactly the
# time of the kernel predictor f_t. With the learning rate at η = N / λ₁ (λ₁ the top
# eigenvalue of Θ), t = `train_steps` · N / λ₁: the directions of the kernel with
# λᵢ > λ₁ / `train_steps` are fitted, the rest are not. So a network trained for time t
# approximates f_t, and f_∞ only as far as f_t does.
#
# We attack both predictors with PGD at ε = `epsilon` (ℓ∞, binary cross-entropy on the
# output, 2.5 ε / steps per step, no random start) and keep their adversarial test images.
# The random-sign noise images of the same ε are drawn once and shared by every model.

# %%
task = data.make_task(cfg.dataset, classes=cfg.classes, n_train=cfg.n_train, n_test=cfg.n_test,
                      seed=cfg.seed, image_size=cfg.image_size, data_dir=data_dir)
x_train, y_train = jnp.asarray(task.x_train), jnp.asarray(task.y_train)
x_test, labels = jnp.asarray(task.x_test), task.labels_test
probe = x_train[:cfg.probe_size]  # where the empirical kernel's movement is measured

_, _, kernel_fn = kernels.architecture("fc", depth=1)
predictor = kernels.KernelPredictor(kernel_fn, x_train, y_train)
learning_rate = training.stable_learning_rate(predictor.k_train_train)
t_train = learning_rate * cfg.train_steps
sources = {"f_∞": predictor.logits_fn(), "f_t": predictor.logits_fn(t_train)}
source_attacks = {name: attacks.attack(fn, x_test, labels, cfg.epsilon, "pgd", steps=cfg.pgd_steps)
                  for name, fn in sources.items()}
noise_images = attacks.attack(sources["f_∞"], x_test, labels, cfg.epsilon, "noise", seed=cfg.seed).x_adv
f_t_test = sources["f_t"](x_test)  # the reference every trained net is compared with

kernel_rows = [{"predictor": name, "clean accuracy": kernels.accuracy(fn(x_test), labels),
                f"PGD accuracy (ε={cfg.epsilon:g})": source_attacks[name].accuracy,
                "noise accuracy": kernels.accuracy(fn(noise_images), labels)} for name, fn in sources.items()]
print(f"learning rate η = {learning_rate:.3g}, training time t = {t_train:.3g} (τ = λ₁ t / N = {cfg.train_steps})")
pd.DataFrame(kernel_rows).set_index("predictor").round(3)

# %% [markdown]
# ## Four ways to train the same architecture
#
# For every width and seed we start from one initialisation θ₀ and train:
#
# - **lazy**: NTK parameterization, squared loss, full-batch gradient descent at η = N / λ₁
#   for `train_steps` steps: the regime in which the NTK theory
#   {cite:p}`jacot2018neural,lee2019wide` holds;
# - **lazy, centred**: the same, trained and evaluated as f(x; θ) − f(x; θ₀), so that it
#   starts from the zero function like the kernel predictor;
# - **linearised**: the first-order Taylor expansion of the network in θ around θ₀, built by
#   neural-tangents' `nt.linearize` {cite:p}`novak2020neural` and trained in the same way:
#   the ideal lazy network, whose empirical NTK cannot move;
# - **non-lazy**: standard parameterization, cross-entropy, minibatch SGD with a fixed
#   learning rate of `sgd_learning_rate` for `sgd_steps` steps: the usual recipe, which at
#   small width is expected to leave the lazy regime (its time is not in the kernel's
#   units, so f_t has no exact counterpart here).
#
# Each trained model is evaluated on clean test images, under its own white-box PGD (the
# same settings as the kernel's), on the adversarial images of f_∞ and of f_t (transfer),
# and on the noise images. Laziness is the relative change ‖K_T − K_0‖_F / ‖K_0‖_F of the
# empirical NTK on `probe_size` training images between initialisation and the end of
# training.

# %%
VARIANTS = {
    "lazy": dict(parameterization="ntk", wrap=None, loss="mse", batch_size=None),
    "lazy, centred": dict(parameterization="ntk", wrap=training.centred, loss="mse", batch_size=None),
    "linearised": dict(parameterization="ntk", wrap=training.linearised, loss="mse", batch_size=None),
    "non-lazy": dict(parameterization="standard", wrap=None, loss="cross_entropy", batch_size=cfg.sgd_batch_size),
}


def evaluate(model_fn):
    """Accuracy of a model on every evaluation set."""
    return {"clean": kernels.accuracy(model_fn(x_test), labels),
            "white-box PGD": attacks.attack(model_fn, x_test, labels, cfg.epsilon, "pgd", steps=cfg.pgd_steps).accuracy,
            "transfer from f_∞": kernels.accuracy(model_fn(source_attacks["f_∞"].x_adv), labels),
            "transfer from f_t": kernels.accuracy(model_fn(source_attacks["f_t"].x_adv), labels),
            "noise": kernels.accuracy(model_fn(noise_images), labels)}


runs, lazy_nets = [], {}
checks = [attacks.sanity_checks(fn, x_test, labels, cfg.epsilon, steps=cfg.pgd_steps).assign(model=name)
          for name, fn in sources.items()]
for width, variant, net_seed in progress([(w, v, s) for w in cfg.widths for v in VARIANTS for s in cfg.seeds],
                                         desc="training"):
    spec = VARIANTS[variant]
    init_fn, apply_fn, _ = kernels.architecture("fc", depth=1, width=width, parameterization=spec["parameterization"])
    _, params = init_fn(jax.random.PRNGKey(net_seed), x_train.shape)
    model = apply_fn if spec["wrap"] is None else spec["wrap"](apply_fn, params)
    lazy = variant != "non-lazy"
    start = time.perf_counter()
    net = training.train(model, params, x_train, y_train, learning_rate if lazy else cfg.sgd_learning_rate,
                         cfg.train_steps if lazy else cfg.sgd_steps, loss=spec["loss"],
                         batch_size=spec["batch_size"], seed=net_seed)
    seconds = time.perf_counter() - start
    if variant == "lazy":
        lazy_nets.setdefault(width, []).append(net)
    model_fn = net.logits_fn()
    kernel_change = training.relative_change(training.empirical_ntk(model, params, probe),
                                             training.empirical_ntk(model, net.params, probe))
    distance = float(jnp.sqrt(jnp.mean((model_fn(x_test) - f_t_test) ** 2)))
    runs.append({"width": width, "variant": variant, "seed": net_seed, "train seconds": seconds,
                 "kernel change": kernel_change, "RMS distance to f_t": distance, **evaluate(model_fn)})
    if net_seed == cfg.seeds[0]:  # the attack's sanity checks, on one network per variant and width
        checks.append(attacks.sanity_checks(model_fn, x_test, labels, cfg.epsilon, steps=cfg.pgd_steps)
                      .assign(model=f"{variant}, width {width}"))
runs = pd.DataFrame(runs)
EVALUATIONS = ["clean", "white-box PGD", "transfer from f_∞", "transfer from f_t", "noise"]
runs.groupby(["variant", "width"])[EVALUATIONS + ["kernel change"]].mean().round(3)

# %% [markdown]
# ## Are the white-box attacks sound?
#
# The sanity checks of the previous chapter, after {cite:t}`carlini2019evaluating` (PGD at
# least as strong as FGSM per example,
# accuracy not increasing with ε, an unbounded attack reaching 0 %, noise much weaker,
# doubling the steps changing little) ran on both kernel predictors and on the first seed's
# network of every variant and width. The table counts the checks passed; every failed
# check is listed below it with what was measured.

# %%
checks = pd.concat(checks, ignore_index=True)
glue("transfer_checks_passed", int(checks.passed.sum()), display=False)
glue("transfer_checks_total", len(checks), display=False)
print(f"{checks.passed.sum()} of {len(checks)} checks passed on {checks.model.nunique()} models")
failed = checks[~checks.passed]
failed.set_index(["model", "check"]) if len(failed) else None

# %% [markdown]
# ## Transfer against width

# %%
long = runs.melt(id_vars=["width", "variant", "seed"], value_vars=EVALUATIONS, var_name="evaluated on",
                 value_name="accuracy")
grid = sns.relplot(long, x="width", y="accuracy", hue="evaluated on", col="variant", col_wrap=2, kind="line",
                   errorbar="sd", marker="o", height=3.4, aspect=1.3)
grid.set(xscale="log", ylim=(-0.02, 1.02))
grid.set_axis_labels("width", f"test accuracy (ε = {cfg.epsilon:g})")
glue("transfer_figure", grid.figure, display=False)  # pasted into the reproduction report

# %% [markdown]
# Lines are means over the seeds and bands one standard deviation. The gap between the
# "clean" and the "transfer" lines is what the kernel's adversarial examples take away from
# a network; the gap between "transfer" and "white-box PGD" is what an attacker loses by
# not having the network's gradient.

# %%
summary = runs.groupby("variant")[EVALUATIONS + ["kernel change"]].agg(["mean", "std"])
wide = runs[runs.width == max(cfg.widths)].groupby("variant")[EVALUATIONS + ["kernel change"]].mean()
narrow = runs[runs.width == min(cfg.widths)].groupby("variant")[EVALUATIONS + ["kernel change"]].mean()
for name, frame in [("widest", wide), ("narrowest", narrow)]:
    for variant in VARIANTS:
        key = variant.replace(", ", "_").replace("-", "_").replace(" ", "_")
        for column, short in [("transfer from f_t", "transfer_ft"), ("transfer from f_∞", "transfer_finf"),
                              ("white-box PGD", "whitebox"), ("clean", "clean"), ("noise", "noise"),
                              ("kernel change", "kernel_change")]:
            glue(f"transfer_{name}_{key}_{short}", round(float(frame.loc[variant, column]), 3), display=False)
comparison = pd.concat({f"width {min(cfg.widths)}": narrow, f"width {max(cfg.widths)}": wide}, axis=0).round(3)
comparison

# %% [markdown]
# ## f_t or f_∞?
#
# The networks were trained for a finite time, so their functions approximate f_t, which
# has fitted only the top eigen-directions of the kernel. The adversarial examples of
# f_∞ can exploit the low-eigenvalue directions too, which the networks never learned.
# The table above has both sources side by side: a lower accuracy under "transfer from
# f_t" than under "transfer from f_∞" means the matched predictor is the better
# surrogate.

# %%
gap = (runs["transfer from f_∞"] - runs["transfer from f_t"]).groupby(runs.variant).mean()
glue("transfer_ft_gain_lazy", round(float(gap["lazy, centred"]), 3), display=False)
gap.rename("accuracy on f_∞'s examples − accuracy on f_t's").round(3).to_frame()

# %% [markdown]
# ## The random initial function f_0
#
# f_t is the *mean* over initialisations of lazy networks trained for time t: a single
# network also carries its own random initial function f_0, which training on the
# training set does not remove away from it. Centring (f − f_0) removes it exactly;
# averaging networks from several seeds removes it on average. The figure compares raw
# networks, centred networks and an ensemble of the raw networks of all seeds, by their
# distance to f_t and by transfer from f_t. The last line printed below compares the
# networks' own white-box robustness with and without f_0: f_0 is a random function with
# input gradients of its own, which an attacker can use even where the trained part is
# smooth.

# %%
ensemble_rows = []
for width, nets in lazy_nets.items():
    apply_fn = kernels.architecture("fc", depth=1, width=width)[1]
    mean_output = lambda params_list, x, apply_fn=apply_fn: jnp.mean(  # noqa: E731
        jnp.stack([apply_fn(p, x) for p in params_list]), axis=0)
    ensemble_fn = Partial(jax.jit(mean_output), [net.params for net in nets])
    ensemble_rows.append({"width": width, "variant": f"ensemble of {len(nets)} lazy",
                          "RMS distance to f_t": float(jnp.sqrt(jnp.mean((ensemble_fn(x_test) - f_t_test) ** 2))),
                          "transfer from f_t": kernels.accuracy(ensemble_fn(source_attacks["f_t"].x_adv), labels)})
f0_frame = pd.concat([runs[runs.variant.isin(["lazy", "lazy, centred"])], pd.DataFrame(ensemble_rows)])
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
sns.lineplot(f0_frame, x="width", y="RMS distance to f_t", hue="variant", marker="o", errorbar="sd", ax=axes[0])
sns.lineplot(f0_frame, x="width", y="transfer from f_t", hue="variant", marker="o", errorbar="sd", ax=axes[1],
             legend=False)
for ax in axes:
    ax.set_xscale("log")
axes[0].set_yscale("log")
axes[1].set_ylabel("accuracy on f_t's adversarial images")
raw, centred_nets = wide.loc["lazy"], wide.loc["lazy, centred"]
glue("transfer_whitebox_raw_widest", round(float(raw["white-box PGD"]), 3), display=False)
glue("transfer_whitebox_centred_widest", round(float(centred_nets["white-box PGD"]), 3), display=False)
print(f"width {max(cfg.widths)}: white-box PGD accuracy {raw['white-box PGD']:.3f} raw, "
      f"{centred_nets['white-box PGD']:.3f} centred; f_t itself {source_attacks['f_t'].accuracy:.3f}")

# %% [markdown]
# ## Transfer against measured laziness
#
# Width is only a proxy for laziness. The empirical NTK's relative change during
# training measures it directly: near 0 the network is lazy (the linearised networks sit
# at exactly 0), and of order 1 its features moved. Each point is one trained network.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
moving = runs[runs.variant != "linearised"]
sns.scatterplot(moving, x="kernel change", y="transfer from f_∞", hue="variant", size="width", ax=axes[0],
                sizes=(20, 160))
sns.scatterplot(moving, x="kernel change", y="white-box PGD", hue="variant", size="width", ax=axes[1],
                sizes=(20, 160), legend=False)
for ax in axes:
    ax.set_xscale("log")
axes[0].set_ylabel(f"accuracy (ε = {cfg.epsilon:g})")
axes[0].set_title("on f_∞'s adversarial images")
axes[1].set_title("under white-box PGD")
correlation = moving[["kernel change", "transfer from f_∞"]].corr(method="spearman").iloc[0, 1]
glue("transfer_laziness_spearman", round(float(correlation), 2), display=False)
print(f"Spearman correlation of kernel change with accuracy under transfer: {correlation:+.2f}")

# %% [markdown]
# ## What we measured
#
# The numbers in this section are the ones this build computed (profile and sizes at the
# top of the chapter); the verdict in the next cell is written from them, not in advance.

# %%
def measured():
    lazy, nonlazy = wide.loc["lazy, centred"], narrow.loc["non-lazy"]
    lines = [f"- Widest lazy centred nets (width {max(cfg.widths)}, kernel change {lazy['kernel change']:.3f}): "
             f"clean {lazy['clean']:.2f}, transfer from f_t {lazy['transfer from f_t']:.2f}, from f_∞ "
             f"{lazy['transfer from f_∞']:.2f}, white-box {lazy['white-box PGD']:.2f}, noise {lazy['noise']:.2f}.",
             f"- Narrowest non-lazy nets (width {min(cfg.widths)}, kernel change {nonlazy['kernel change']:.3f}): "
             f"clean {nonlazy['clean']:.2f}, transfer from f_t {nonlazy['transfer from f_t']:.2f}, from f_∞ "
             f"{nonlazy['transfer from f_∞']:.2f}, white-box {nonlazy['white-box PGD']:.2f}, noise {nonlazy['noise']:.2f}."]
    result = claims.claim2(lazy, nonlazy)
    drops = result.details
    lines.append(f"- f_∞'s adversarial images remove {drops['drop_lazy']:.2f} of the wide lazy nets' "
                 f"accuracy (noise of the same size: {drops['noise_drop']:.2f}) and "
                 f"{drops['drop_non_lazy']:.2f} of the narrow non-lazy nets'.")
    lines.append(f"- f_t's images (this book's addition) remove "
                 f"{lazy['clean'] - lazy['transfer from f_t']:.2f} and "
                 f"{nonlazy['clean'] - nonlazy['transfer from f_t']:.2f}.")
    lines.append(f"- Spearman correlation between kernel change and accuracy on f_∞'s images, over all trained "
                 f"nets: {correlation:+.2f} (positive would mean: the more a net's kernel moved, the less the "
                 "kernel's examples fool it).")
    # Claim 2 is about the examples of claim 1, f_∞'s; f_t's are this book's addition.
    lines.append(report.glue_claim("claim2", result))
    return "\n".join(lines)


from IPython.display import Markdown  # noqa: E402

Markdown(measured())

# %%
glue("transfer_chapter_seconds", round(time.perf_counter() - chapter_start, 1), display=False)
print(f"chapter ran in {time.perf_counter() - chapter_start:.0f} s")

# %% [markdown]
# ## Exercises
#
# 1. Vary the attack budget: repeat the width sweep of the lazy centred networks at
#    ε = 0.05 and ε = 0.2. Does the ordering white-box < transfer < noise hold at each ε?
# 2. Train the lazy networks for ten times longer (`train_steps`). What happens to the gap
#    between transfer from f_t and from f_∞, and why?
# 3. Make the non-lazy networks wide (width 4096) and measure their kernel change. Is
#    standard parameterization with a fixed learning rate lazy at large width?
#
# ```{admonition} Solution 1
# :class: dropdown
# Rerun the chapter with `epsilon=0.05` and `epsilon=0.2` (papermill `-p epsilon 0.2`,
# or edit the parameters cell), and compare the rows `lazy, centred` of the width table
# (`runs.groupby(["variant", "width"])`) across the three runs: at each ε, is the
# accuracy under white-box PGD below the accuracy under transfer, and that below the
# accuracy under noise? Look also at how the gaps to the clean accuracy change with ε.
# One expects all three gaps to shrink at small ε, and transfer to come closer to the
# white-box attack at large ε, where both push the images far towards the other class.
# ```
#
# ```{admonition} Solution 2
# :class: dropdown
# Rerun with `train_steps` ten times the profile's value and compare the table of the
# section "f_t or f_∞?" (`gap`, accuracy on f_∞'s examples minus accuracy on f_t's) with
# this build's. Why it should move: t grows tenfold, so f_t fits more eigen-directions
# and moves towards f_∞; one expects the two sources' adversarial examples to become
# more alike and the gap between the two transfer columns to shrink.
# ```
#
# ```{admonition} Solution 3
# :class: dropdown
# Rerun with `widths = (64, 4096)` (the non-lazy variant trains at every width) and
# compare the `kernel change` column of the non-lazy rows at the two widths; watch the
# training losses (`net.losses`) too, since a wide net may diverge. What to expect:
# under standard parameterization the empirical NTK grows with width, so a fixed
# learning rate is relatively *larger* for wider nets. With a rate small enough to be
# stable at width 4096 one expects the kernel change to shrink with width as in the NTK
# parameterization; with the same fixed rate as the narrow nets the wide nets may
# diverge or move far. Laziness is a property of width *and* learning rate together.
# ```
