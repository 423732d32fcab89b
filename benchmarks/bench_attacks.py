"""What does one PGD step on the kernel predictor cost, and what does it save?

Run: ``.venv/bin/python benchmarks/bench_attacks.py`` (or ``python3 tasks.py bench``, which runs
every ``benchmarks/bench_*.py``).

Model: the FC NTK (``architecture("fc", 1)``: Flatten -> Dense -> ReLU -> Dense, NTK
parameterisation) as an infinite-time kernel predictor f_∞(x) = Θ(x, X) Θ⁻¹ Y
(``KernelPredictor(...).logits_fn()``), on 28 x 28 MNIST. mnist-5k holds 500 images per
digit, so a class pair (1000 images) cannot give N = 4000 training points: the task is all
ten digits (``make_task("mnist-5k", classes=None, n_train=4000, n_test=100, seed=0)``,
one-hot targets, 10 logits), its N = 1000 and 2000 training sets are prefixes of the
N = 4000 one (random subsets too), and the attack loss is therefore the package's default
for 10 logits, softmax cross-entropy, not binary cross-entropy. The kernel does not depend
on the number of logits; the only extra work is a (B x N) @ (N x 10) product.
The test batch is B = 100 images disjoint from every training set; ℓ∞ PGD, ε = 0.1.

1. Our PGD step against our forward pass. The per-step cost is the difference of two
   ``attacks.attack(logits_fn, ..., method="pgd", steps=S)`` calls, S = 20 minus S = 10,
   divided by 10 (the fixed costs of a call, validation, the final evaluation, the copy to
   the host, cancel). It is compared with one forward call ``logits_fn(x)`` of the same batch
   (and, for reference, the bare jitted ``kernel_fn(x, X, "ntk")``). As a cross-check, one
   step is also timed as a single jitted call built from the package's own pieces
   (``per_example_loss``, ``attacks._direction``, ``attacks._project``).
2. Our step against a naive step that, at every step, recomputes the training kernel
   Θ(X, X) (one jitted ``kernel_fn(X, X, "ntk")``) and re-solves Θ(X, X) W = Y
   (``jnp.linalg.solve``, float32 LU) inside the loss, then differentiates it. Θ(X, X) and
   the solve do not depend on the test input, so the gradient flows through Θ(x, X) only,
   but the naive step pays for both in its forward pass. This baseline lives in this script,
   on purpose: it is the thing being compared against. X and Y are arguments of the jitted
   step, not constants, so that XLA cannot fold Θ(X, X) and the solve away at compile time.
3. Our step against a step through neural-tangents' own predictor,
   ``nt.predict.gradient_descent_mse_ensemble(kernel_fn, X, Y)`` with ``t=None, get="ntk"``,
   differentiated with respect to x_test, in two uses: (a) the ``predict_fn`` built once and
   called once outside jit, so that its cache holds Θ(X, X), its Cholesky factor and Θ⁻¹Y,
   then the jitted step (what a careful neural-tangents user gets); (b) the ensemble built
   inside the jitted step, so that every step recomputes Θ(X, X) and its Cholesky factor
   (what a user gets who builds it inside the attacked function; its cache is per build).

Every "one step" time is the median over several timed calls after a warm-up call
(compilation excluded), with ``jax.block_until_ready`` on the result; the calls being
compared are interleaved, all in this one process. Before timing, the three predictors are
checked to compute the same function and gradient at N = 1000 (the script exits with
status 1 if they do not). Only ratios are meaningful; nothing is asserted on time.
"""

from __future__ import annotations

import os
import sys
import time

import ntk_notes  # noqa: F401  (must come before neural_tangents: installs its jax shim)
import jax
import jax.numpy as jnp
import neural_tangents
import numpy as np

from ntk_notes import attacks
from ntk_notes.data import make_task
from ntk_notes.kernels import KernelPredictor, architecture

ROUNDS = 15  # timed rounds of the fast calls (ours, forward passes, attacks)
SLOW_REPEATS = 5  # of those rounds, how many also time each slow baseline (naive, nt rebuilt, Θ(X, X))
SIZES = (1000, 2000, 4000)
BATCH = 100
EPSILON = 0.1
NORM = "linf"
STEPS = (10, 20)  # per-step cost = (time at 20 steps - time at 10 steps) / 10
STEP_SIZE = 2.5 * EPSILON / max(STEPS)  # the same step size for every step function timed
CHECK_LOGITS_RTOL = 1e-2  # float32 predictors solved three ways (float64 Cholesky, float32 LU, float32 Cholesky)
CHECK_GRAD_RTOL = 5e-2


def sample_seconds(calls: dict, rounds: int, sparse: dict | None = None) -> dict:
    """Wall times of each ``name: (fn, *args)``, after a warm-up call of each (compilation).

    The calls are interleaved (one round of every call, in a rotating order), so that a slow
    spell of this shared machine hits all of them alike. A name in ``sparse`` (name -> count)
    runs in only ``count`` of the rounds, spread evenly over them: the slow baselines.
    """
    sparse = sparse or {}
    for fn, *args in calls.values():
        jax.block_until_ready(fn(*args))  # compile outside the timing
    times = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if name in sparse and (r % (rounds // sparse[name]) or len(times[name]) >= sparse[name]):
                continue
            fn, *args = calls[name]
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - start)
    return times


class AttackPair:
    """``attacks.attack`` with S = 10 and S = 20 steps back to back (alternating which goes
    first), recording (t_20 - t_10) / 10 per call: the per-step cost, from two runs close in
    time, with the fixed costs of a call cancelled."""

    def __init__(self, logits_fn, x, labels):
        self.run = lambda steps: attacks.attack(logits_fn, x, labels, EPSILON, "pgd", norm=NORM, steps=steps,  # noqa: E731
                                                step_size=STEP_SIZE)
        self.per_step, self.totals, self.calls = [], {s: [] for s in STEPS}, 0

    def __call__(self):
        order = STEPS if self.calls % 2 else STEPS[::-1]
        self.calls += 1
        took = {}
        for steps in order:
            start = time.perf_counter()
            jax.block_until_ready(self.run(steps))
            took[steps] = time.perf_counter() - start
        if self.calls > 1:  # the first call is the warm-up (compilation)
            self.per_step.append((took[max(STEPS)] - took[min(STEPS)]) / (max(STEPS) - min(STEPS)))
            for steps in STEPS:
                self.totals[steps].append(took[steps])


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    print(line(header))
    print(line(tuple("-" * w for w in widths)))
    for row in rows:
        print(line(row))


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds >= 1e-3 else f"{seconds * 1e3:.2f} ms"


def pgd_update(x0, x_adv, grad):
    """One ℓ∞ PGD update from a gradient, with the package's own direction and projection."""
    return attacks._project(x0, x_adv + STEP_SIZE * attacks._direction(grad, NORM), EPSILON, NORM)


def make_steps(kernel_fn, logits_fn, loss: str):
    """The jitted one-step functions ``(x_adv, x0, labels, x_train, y_train) -> x_adv``.

    ``ours`` goes through the predictor's ``logits_fn`` (training system solved once, outside);
    ``naive`` recomputes Θ(X, X) and solves for W inside; ``nt_fresh`` builds neural-tangents'
    ensemble predictor inside. x_train / y_train are unused by ``ours``.
    """
    def step_from_logits(logits_of):
        def step(x_adv, x0, labels, x_train, y_train):
            total = lambda z: jnp.sum(attacks.per_example_loss(loss, logits_of(z, x_train, y_train), labels))  # noqa: E731
            return pgd_update(x0, x_adv, jax.grad(total)(x_adv))
        return jax.jit(step)

    def naive_logits(z, x_train, y_train):
        k_train = kernel_fn(x_train, x_train, "ntk")
        weights = jnp.linalg.solve(k_train, y_train)
        return kernel_fn(z, x_train, "ntk") @ weights

    def nt_fresh_logits(z, x_train, y_train):
        predict_fn = neural_tangents.predict.gradient_descent_mse_ensemble(kernel_fn, x_train, y_train)
        return predict_fn(t=None, x_test=z, get="ntk")

    return {"ours": step_from_logits(lambda z, x_train, y_train: logits_fn(z)),
            "naive": step_from_logits(naive_logits),
            "nt_fresh": step_from_logits(nt_fresh_logits)}


def nt_cached_step(kernel_fn, x_train, y_train, x_warm, loss: str):
    """The jitted step through a neural-tangents predictor built once, its cache filled by one
    call outside jit (Θ(X, X), Cholesky factor, Θ⁻¹Y become constants of the step)."""
    predict_fn = neural_tangents.predict.gradient_descent_mse_ensemble(kernel_fn, x_train, y_train)
    jax.block_until_ready(predict_fn(t=None, x_test=x_warm, get="ntk"))

    @jax.jit
    def step(x_adv, x0, labels):
        total = lambda z: jnp.sum(attacks.per_example_loss(loss, predict_fn(t=None, x_test=z, get="ntk"), labels))  # noqa: E731
        return pgd_update(x0, x_adv, jax.grad(total)(x_adv))

    return step, predict_fn


def main() -> int:
    started = time.perf_counter()
    device = jax.devices()[0]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"jax {jax.__version__}, neural-tangents {neural_tangents.__version__}, "
          f"device {device.platform}:{device.device_kind} ({device}), {cores} CPU cores available")
    print(f"median of {REPEATS} interleaved timed calls after a warm-up, float32, all in this process")

    _, _, kernel_fn = architecture("fc", depth=1)
    task = make_task("mnist-5k", classes=None, n_train=max(SIZES), n_test=BATCH, seed=0)
    loss = attacks.default_loss(task.y_train.shape[1])
    x_test, labels = jnp.asarray(task.x_test), np.asarray(task.labels_test)
    print(f"task: mnist-5k, all 10 digits (a class pair has only 1000 images), one-hot targets, "
          f"{loss} loss; N training images = prefixes of {max(SIZES)} random ones, a disjoint test "
          f"batch of B = {BATCH}, 28x28; FC NTK depth 1; ℓ∞ PGD, ε = {EPSILON}\n")

    kernel_jit = jax.jit(kernel_fn, static_argnames="get")
    results, built = {}, {}
    for n in SIZES:
        x_train = jnp.asarray(task.x_train[:n])
        y_train = jnp.asarray(task.y_train[:n], dtype=jnp.float32)
        setup = time.perf_counter()
        predictor = KernelPredictor(kernel_fn, task.x_train[:n], task.y_train[:n])
        logits_fn = predictor.logits_fn()
        jax.block_until_ready(logits_fn(x_test))
        setup = time.perf_counter() - setup
        steps = make_steps(kernel_fn, logits_fn, loss)
        cached_step, cached_predict = nt_cached_step(kernel_fn, x_train, y_train, x_test, loss)

        if n == min(SIZES):  # --- check: the same function and gradient three ways ------------
            ours = np.asarray(logits_fn(x_test), np.float64)
            others = {"naive (solve each step)": steps["naive"],
                      "neural-tangents (cached)": lambda *a: cached_step(*a[:3]),
                      "neural-tangents (fresh)": steps["nt_fresh"]}
            logits_of = {"naive (solve each step)": lambda z: kernel_fn(z, x_train, "ntk") @ jnp.linalg.solve(
                             kernel_fn(x_train, x_train, "ntk"), y_train),
                         "neural-tangents (cached)": lambda z: cached_predict(t=None, x_test=z, get="ntk"),
                         "neural-tangents (fresh)": lambda z: neural_tangents.predict.gradient_descent_mse_ensemble(
                             kernel_fn, x_train, y_train)(t=None, x_test=z, get="ntk")}
            grad_of = lambda f: np.asarray(jax.grad(  # noqa: E731
                lambda z: jnp.sum(attacks.per_example_loss(loss, f(z), labels)))(x_test), np.float64)
            our_grad = grad_of(logits_fn)
            first = np.asarray(steps["ours"](x_test, x_test, labels, x_train, y_train))
            worst_logits, worst_grad, moved = {}, {}, {}
            scale = np.max(np.abs(ours))
            for name in others:
                worst_logits[name] = float(np.max(np.abs(np.asarray(logits_of[name](x_test), np.float64) - ours)) / scale)
                worst_grad[name] = float(np.linalg.norm(grad_of(logits_of[name]) - our_grad) / np.linalg.norm(our_grad))
                step = np.asarray(others[name](x_test, x_test, labels, x_train, y_train))
                moved[name] = float(np.mean(np.abs(step - first) > 1e-6))
            print(f"check at N = {n}, against our logits_fn (Cholesky in float64 once): max |Δ logits| / "
                  f"max |logit| (tolerance {CHECK_LOGITS_RTOL:.0e}), ‖Δ gradient‖ / ‖gradient‖ "
                  f"(tolerance {CHECK_GRAD_RTOL:.0e}), share of pixels where one PGD step differs")
            for name in others:
                print(f"   {name:26s} logits {worst_logits[name]:.1e}, gradient {worst_grad[name]:.1e}, "
                      f"step differs at {moved[name]:.2%} of pixels")
            if not all(v <= CHECK_LOGITS_RTOL for v in worst_logits.values()) or \
                    not all(v <= CHECK_GRAD_RTOL for v in worst_grad.values()):
                print("MISMATCH: the baselines do not compute our predictor's function or gradient; "
                      "comparing their speed would be meaningless", file=sys.stderr)
                return 1
            print()

        args = (x_test, x_test, labels, x_train, y_train)
        calls = {
            "forward": (logits_fn, x_test),
            "kernel": (lambda a: kernel_jit(a, x_train, get="ntk"), x_test),
            **{f"attack{s}": (lambda s=s: attacks.attack(logits_fn, x_test, labels, EPSILON, "pgd", norm=NORM,
                                                          steps=s, step_size=STEP_SIZE),) for s in STEPS},
            "ours": (steps["ours"], *args),
            "nt_cached": (cached_step, x_test, x_test, labels),
            "naive": (steps["naive"], *args),
            "nt_fresh": (steps["nt_fresh"], *args),
            "train_kernel": (lambda a: kernel_jit(a, a, get="ntk"), x_train),
        }
        t = median_seconds(calls)
        t["step"] = (t[f"attack{max(STEPS)}"] - t[f"attack{min(STEPS)}"]) / (max(STEPS) - min(STEPS))
        results[n] = t
        built[n] = setup
        print(f"   N = {n}: done ({time.perf_counter() - started:.0f} s so far; predictor setup "
              f"{setup:.1f} s, not timed below)", flush=True)

    print(f"\n1. one PGD step vs one forward pass, B = {BATCH} test images against N training images. "
          f"step = (attack with {max(STEPS)} steps - with {min(STEPS)}) / {max(STEPS) - min(STEPS)}; "
          f"forward = logits_fn(x); kernel = jitted kernel_fn(x, X, 'ntk'); single-step = one jitted "
          f"grad + sign + project call")
    rows = []
    for n, t in results.items():
        rows.append((f"{n}", ms(t["forward"]), ms(t["kernel"]), ms(t[f"attack{min(STEPS)}"]),
                     ms(t[f"attack{max(STEPS)}"]), ms(t["step"]), f"{t['step'] / t['forward']:.2f}x",
                     ms(t["ours"]), f"{t['ours'] / t['forward']:.2f}x"))
    table(("N", "forward", "kernel", f"attack {min(STEPS)}", f"attack {max(STEPS)}", "step", "step/forward",
           "single-step", "single/forward"), rows)

    print("\n2. one step of ours vs a naive step that recomputes Θ(X, X) and jnp.linalg.solve's it every "
          "step (gradient through Θ(x, X) only; Θ(X, X) alone is timed too)")
    rows = [(f"{n}", ms(t["step"]), ms(t["naive"]), ms(t["train_kernel"]),
             f"{t['naive'] / t['step']:.0f}x") for n, t in results.items()]
    table(("N", "ours (step)", "naive step", "Θ(X, X) alone", "speedup"), rows)

    print("\n3. one step of ours vs one step through nt.predict.gradient_descent_mse_ensemble(kernel_fn, X, Y) "
          "(t=None, get='ntk'): (a) predict_fn built once, cache filled outside jit; (b) built inside the "
          "step, so Θ(X, X) and its Cholesky factor are recomputed every step")
    rows = [(f"{n}", ms(t["step"]), ms(t["nt_cached"]), f"{t['nt_cached'] / t['step']:.2f}x",
             ms(t["nt_fresh"]), f"{t['nt_fresh'] / t['step']:.0f}x") for n, t in results.items()]
    table(("N", "ours (step)", "nt cached", "speedup (a)", "nt rebuilt", "speedup (b)"), rows)

    lo, mid, hi = SIZES[0], SIZES[len(SIZES) // 2], SIZES[-1]
    r = results
    print(f"\nsummary: PGD step / forward {r[lo]['step'] / r[lo]['forward']:.2f}x (N={lo}), "
          f"{r[mid]['step'] / r[mid]['forward']:.2f}x (N={mid}), {r[hi]['step'] / r[hi]['forward']:.2f}x "
          f"(N={hi}); vs naive re-solve {r[mid]['naive'] / r[mid]['step']:.0f}x (N={mid}), "
          f"{r[hi]['naive'] / r[hi]['step']:.0f}x (N={hi}); vs neural-tangents predict_fn "
          f"{r[mid]['nt_cached'] / r[mid]['step']:.2f}x cached / {r[mid]['nt_fresh'] / r[mid]['step']:.0f}x "
          f"rebuilt each step (N={mid})")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
