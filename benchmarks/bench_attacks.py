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

1. Our PGD step against our forward pass. The per-step cost ("step") is the difference of
   two ``attacks.attack(logits_fn, ..., method="pgd", steps=S)`` calls run back to back,
   S = 20 minus S = 10, divided by 10 (the fixed costs of a call, validation, the final
   evaluation, the copy to the host, cancel), median over the pairs. It is compared with one
   forward call ``logits_fn(x)`` of the same batch and with the bare jitted
   ``kernel_fn(x, X, "ntk")``, the ratio asked about (target <= 2x). Two more forward passes
   explain that ratio: ``kernel_fn`` compiled with X as a constant ("X folded": XLA then
   precomputes the work on the training images alone), and ``logits_fn`` inside a
   ``lax.scan`` as in ``attacks.pgd`` ("in-scan", per pass as above), where that work is
   hoisted out of the loop just as it is for the attack's steps. One step is also timed as a
   single jitted call ("single": grad of the summed loss through ``logits_fn``, with the
   package's ``per_example_loss``, ``attacks.direction`` and ``attacks.project``, X and the
   weights passed as arguments as ``attacks.attack`` does): the like-for-like unit for 2. and
   3., whose baselines are single jitted steps too.
2. Our step against a naive step that, at every step, recomputes the training kernel
   Θ(X, X) (``kernel_fn(X, X, "ntk")``) and re-solves Θ(X, X) W = Y (``jnp.linalg.solve``,
   float32 LU) inside the loss, then differentiates it. Θ(X, X) and the solve do not depend
   on the test input, so the gradient flows through Θ(x, X) only, but the naive step pays for
   both in its forward pass. This baseline lives in this script, on purpose: it is the thing
   being compared against. X and Y are arguments of the jitted step, not constants, so that
   XLA cannot fold Θ(X, X) and the solve away at compile time.
3. Our step against a step through neural-tangents' own predictor,
   ``nt.predict.gradient_descent_mse_ensemble(kernel_fn, X, Y)`` with ``t=None, get="ntk"``,
   differentiated with respect to x_test (it is differentiable), in two uses: (a) the
   ``predict_fn`` built once and called once outside jit, so that its cache holds Θ(X, X),
   its Cholesky factor and Θ⁻¹Y, then the jitted step (what a careful neural-tangents user
   gets; X and Θ⁻¹Y are constants of that compiled step); (b) the ensemble built inside the
   jitted step, so that every step recomputes Θ(X, X) and its Cholesky factor (what a user
   gets who builds it inside the attacked function: its cache lives as long as one build).

Every time is the median over several timed calls after a warm-up call (compilation
excluded), with ``jax.block_until_ready`` on the result; the calls being compared are
interleaved round by round, all in this one process; the slow baselines (naive, nt rebuilt,
Θ(X, X) alone) are timed in a phase of their own after the fast calls, with fewer rounds,
and their speedups are also given as fastest call over fastest call. The load average is
printed at the start and the end: on a shared machine other processes inflate every time,
the LAPACK-heavy baselines most, and the ratios get noisier. Before timing, the three
baselines are checked, all jitted, to compute our predictor's function and gradient at
N = 1000 (the script exits with status 1 if they do not). Only ratios are meaningful;
nothing is asserted on time. The whole script takes about a minute on 2 idle CPU cores.
"""

from __future__ import annotations

import os
import sys
import time
from functools import partial

import ntk_notes  # noqa: F401  (must come before neural_tangents: installs its jax shim)

# isort: split

import jax
import jax.numpy as jnp
import neural_tangents
import numpy as np
from timing import interleaved_seconds, machine, print_table  # benchmarks/timing.py, beside this script

from ntk_notes import attacks
from ntk_notes.architectures import architecture
from ntk_notes.data import make_task
from ntk_notes.predictors import KernelPredictor

ROUNDS = 15  # timed rounds of the fast calls (ours, forward passes, attacks, nt cached)
SLOW_REPEATS = 5  # timed rounds of the slow baselines (naive, nt rebuilt, Θ(X, X)), a phase of their own
SIZES = (1000, 2000, 4000)
BATCH = 100
EPSILON = 0.1
NORM = "linf"
STEPS = (10, 20)  # per-step cost = (time at 20 steps - time at 10 steps) / 10
STEP_SIZE = attacks.default_step_size(EPSILON, max(STEPS))  # the same step size for every step function timed
CHECK_LOGITS_RTOL = 1e-2  # float32 predictors solved three ways (float64 Cholesky, float32 LU, float32 Cholesky)
CHECK_GRAD_RTOL = 5e-2


class PerStep:
    """``run(S)`` for S = 10 and S = 20 back to back (alternating which goes first), recording
    (t_20 - t_10) / 10 per call: the cost of one step, from two runs close in time, with the
    fixed costs of a call cancelled. The first call is the warm-up (compilation)."""

    def __init__(self, run):
        self.run = run
        self.per_step, self.totals, self.calls = [], {s: [] for s in STEPS}, 0

    def __call__(self):
        order = STEPS if self.calls % 2 else STEPS[::-1]
        self.calls += 1
        took = {}
        for steps in order:
            start = time.perf_counter()
            jax.block_until_ready(self.run(steps))
            took[steps] = time.perf_counter() - start
        if self.calls > 1:
            self.per_step.append((took[max(STEPS)] - took[min(STEPS)]) / (max(STEPS) - min(STEPS)))
            for steps in STEPS:
                self.totals[steps].append(took[steps])


@partial(jax.jit, static_argnames="steps")
def forward_chain(model, x, steps: int):
    """``steps`` forward passes of ``model`` in a scan, each input depending on the previous
    output (so no pass can be skipped), with the model's arrays as arguments, as in
    ``attacks.pgd``: the forward pass under the same conditions as an attack step, where
    work on the training images alone is hoisted out of the loop."""

    def body(z, _):
        return z + 1e-6 * jnp.mean(model(z)), None

    return jax.lax.scan(body, x, None, length=steps)[0]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds >= 1e-3 else f"{seconds * 1e3:.2f} ms"


def pgd_update(x0, x_adv, grad):
    """One ℓ∞ PGD update from a gradient, with the package's own direction and projection."""
    return attacks.project(x0, x_adv + STEP_SIZE * attacks.direction(grad, NORM), EPSILON, NORM)


def baseline_logits(kernel_fn) -> dict:
    """The logits ``(z, a, b) -> (n, C)`` of each predictor, in the argument convention of the
    jitted steps (see ``make_steps``)."""

    def naive(z, x_train, y_train):
        weights = jnp.linalg.solve(kernel_fn(x_train, x_train, "ntk"), y_train)
        return kernel_fn(z, x_train, "ntk") @ weights

    def nt_fresh(z, x_train, y_train):
        predict_fn = neural_tangents.predict.gradient_descent_mse_ensemble(kernel_fn, x_train, y_train)
        return predict_fn(t=None, x_test=z, get="ntk")

    return {"ours": lambda z, model, _: model(z), "naive": naive, "nt_fresh": nt_fresh}


def make_steps(kernel_fn, loss: str) -> dict:
    """The jitted one-step functions ``(x_adv, x0, labels, a, b) -> x_adv``.

    ``ours``: through the predictor's ``logits_fn``, passed as ``a`` (a pytree holding X and
    the weights, which become arguments, as in ``attacks.attack``; ``b`` unused); the training
    system was solved once, outside. ``naive`` (a = X, b = Y): recomputes Θ(X, X) and solves
    for W inside. ``nt_fresh`` (a = X, b = Y): builds neural-tangents' ensemble predictor inside.
    """

    def step_from_logits(logits_of):
        def step(x_adv, x0, labels, a, b):
            def total(z):
                return jnp.sum(attacks.per_example_loss(loss, logits_of(z, a, b), labels))

            return pgd_update(x0, x_adv, jax.grad(total)(x_adv))

        return jax.jit(step)

    return {name: step_from_logits(logits_of) for name, logits_of in baseline_logits(kernel_fn).items()}


def nt_cached_step(kernel_fn, x_train, y_train, x_warm, loss: str):
    """The jitted step through a neural-tangents predictor built once, its cache filled by one
    call outside jit (Θ(X, X), Cholesky factor, Θ⁻¹Y become constants of the step)."""
    predict_fn = neural_tangents.predict.gradient_descent_mse_ensemble(kernel_fn, x_train, y_train)
    jax.block_until_ready(predict_fn(t=None, x_test=x_warm, get="ntk"))

    @jax.jit
    def step(x_adv, x0, labels):
        def total(z):
            return jnp.sum(attacks.per_example_loss(loss, predict_fn(t=None, x_test=z, get="ntk"), labels))

        return pgd_update(x0, x_adv, jax.grad(total)(x_adv))

    return step, predict_fn


def measure(n: int, task, kernel_fn, loss: str, x_test, labels, started: float) -> dict | None:
    """Every time at N = n training images (None if the check at the smallest N fails)."""
    kernel_jit = jax.jit(kernel_fn, static_argnames="get")
    x_train = jnp.asarray(task.x_train[:n])
    y_train = jnp.asarray(task.y_train[:n], dtype=jnp.float32)
    setup = time.perf_counter()
    predictor = KernelPredictor(kernel_fn, task.x_train[:n], task.y_train[:n])
    logits_fn = predictor.logits_fn()
    jax.block_until_ready(logits_fn(x_test))
    setup = time.perf_counter() - setup
    model = attacks.as_model(logits_fn)  # what attacks.attack does with it: its arrays become arguments
    steps = make_steps(kernel_fn, loss)
    cached_step, cached_predict = nt_cached_step(kernel_fn, x_train, y_train, x_test, loss)

    if n == min(SIZES):  # --- check: the same function and gradient three ways ------------
        # Everything jitted: eager (op-by-op) calls here were seen to slow down the timings that follow.
        names = {
            "naive": "naive (solve each step)",
            "nt_cached": "neural-tangents (cached)",
            "nt_fresh": "neural-tangents (fresh)",
        }
        logits_of = {
            **baseline_logits(kernel_fn),
            "nt_cached": lambda z, *_: cached_predict(t=None, x_test=z, get="ntk"),
        }
        operands = {
            "ours": (model, None),
            "naive": (x_train, y_train),
            "nt_fresh": (x_train, y_train),
            "nt_cached": (None, None),
        }
        value = {k: jax.jit(f) for k, f in logits_of.items()}
        grad = {
            k: jax.jit(jax.grad(lambda z, a, b, f=f: jnp.sum(attacks.per_example_loss(loss, f(z, a, b), labels))))
            for k, f in logits_of.items()
        }
        step_of = {**steps, "nt_cached": lambda x_adv, x0, labels, *_: cached_step(x_adv, x0, labels)}
        out = {
            k: [
                np.asarray(fn[k](*xs, *operands[k]), np.float64)
                for fn, xs in ((value, (x_test,)), (grad, (x_test,)), (step_of, (x_test, x_test, labels)))
            ]
            for k in logits_of
        }
        ours, our_grad, first = out["ours"]
        worst_logits, worst_grad, moved = {}, {}, {}
        scale = np.max(np.abs(ours))
        for key, name in names.items():
            their_logits, their_grad, their_step = out[key]
            worst_logits[name] = float(np.max(np.abs(their_logits - ours)) / scale)
            worst_grad[name] = float(np.linalg.norm(their_grad - our_grad) / np.linalg.norm(our_grad))
            moved[name] = float(np.mean(np.abs(their_step - first) > 1e-6))
        print(
            f"check at N = {n}, against our logits_fn (Cholesky in float64 once): max |Δ logits| / "
            f"max |logit| (tolerance {CHECK_LOGITS_RTOL:.0e}), ‖Δ gradient‖ / ‖gradient‖ "
            f"(tolerance {CHECK_GRAD_RTOL:.0e}), share of pixels where one PGD step differs"
        )
        for name in names.values():
            print(
                f"   {name:26s} logits {worst_logits[name]:.1e}, gradient {worst_grad[name]:.1e}, "
                f"step differs at {moved[name]:.2%} of pixels"
            )
        if not all(v <= CHECK_LOGITS_RTOL for v in worst_logits.values()) or not all(
            v <= CHECK_GRAD_RTOL for v in worst_grad.values()
        ):
            print(
                "MISMATCH: the baselines do not compute our predictor's function or gradient; "
                "comparing their speed would be meaningless",
                file=sys.stderr,
            )
            return None
        print()

    args = (x_test, x_test, labels, x_train, y_train)
    attack_pair = PerStep(
        lambda s: attacks.attack(logits_fn, x_test, labels, EPSILON, "pgd", norm=NORM, steps=s, step_size=STEP_SIZE)
    )
    forward_pair = PerStep(lambda s: forward_chain(model, x_test, s))
    kernel_folded = jax.jit(lambda a: kernel_fn(a, x_train, "ntk"))  # X a constant of the compiled call
    fast = {
        "forward": (logits_fn, x_test),
        "kernel": (lambda a: kernel_jit(a, x_train, get="ntk"), x_test),
        "kernel_folded": (kernel_folded, x_test),
        "attack pair": (attack_pair,),
        "forward pair": (forward_pair,),
        "ours": (steps["ours"], x_test, x_test, labels, model, None),
        "nt_cached": (cached_step, x_test, x_test, labels),
    }
    slow = {
        "naive": (steps["naive"], *args),
        "nt_fresh": (steps["nt_fresh"], *args),
        "train_kernel": (lambda a: kernel_jit(a, a, get="ntk"), x_train),
    }
    # Two phases, so that no fast call is timed right after a slow one (whose LAPACK
    # threads may still be spinning on the two cores).
    samples = {**interleaved_seconds(fast, ROUNDS), **interleaved_seconds(slow, SLOW_REPEATS)}
    t = {name: float(np.median(v)) for name, v in samples.items() if not name.endswith(" pair")}
    t.update({f"min {name}": float(np.min(samples[name])) for name in ("ours", "nt_cached", *slow)})
    t["step"] = float(np.median(attack_pair.per_step))
    t["scan_forward"] = float(np.median(forward_pair.per_step))
    t.update({f"attack{s}": float(np.median(v)) for s, v in attack_pair.totals.items()})
    print(
        f"   N = {n}: timed ({time.perf_counter() - started:.0f} s so far; building the predictor, "
        f"Θ(X, X) + float64 Cholesky once, took {setup:.1f} s, not counted below)",
        flush=True,
    )
    return t


def main() -> int:
    started = time.perf_counter()
    print(machine())
    cores = len(os.sched_getaffinity(0))
    load_start = os.getloadavg()[0]
    print(
        f"median of {ROUNDS} interleaved timed rounds after a warm-up ({SLOW_REPEATS} for the slow baselines), "
        f"float32, all in this process; load average (1 min) {load_start:.1f}"
    )

    _, _, kernel_fn = architecture("fc", depth=1)
    task = make_task("mnist-5k", classes=None, n_train=max(SIZES), n_test=BATCH, seed=0)
    loss = attacks.default_loss(task.y_train.shape[1])
    x_test, labels = jnp.asarray(task.x_test), np.asarray(task.labels_test)
    print(
        f"task: mnist-5k, all 10 digits (a class pair has only 1000 images), one-hot targets, "
        f"{loss} loss; N training images = prefixes of {max(SIZES)} random ones, a disjoint test "
        f"batch of B = {BATCH}, 28x28; FC NTK depth 1; ℓ∞ PGD, ε = {EPSILON}\n"
    )

    results = {}
    for n in SIZES:
        t = measure(n, task, kernel_fn, loss, x_test, labels, started)
        if t is None:
            return 1
        results[n] = t

    print(f"\n1. one PGD step of ours vs one forward pass, B = {BATCH} test images against N training images")
    print(
        f"   step = (attacks.attack with {max(STEPS)} steps - with {min(STEPS)}) / {max(STEPS) - min(STEPS)}, "
        f"median over {ROUNDS} back-to-back pairs; forward = predictor.logits_fn()(x), one call;"
    )
    print(
        "   kernel = jitted kernel_fn(x, X, 'ntk') with X an argument, 'X folded' with X a constant of the "
        "compiled call (XLA then precomputes the work on X alone);"
    )
    print(
        f"   in-scan forward = logits_fn in a lax.scan as in attacks.pgd, (S={max(STEPS)} - S={min(STEPS)}) / "
        f"{max(STEPS) - min(STEPS)}; single = one step as one jitted call (grad of the summed loss through "
        "logits_fn, sign, project)"
    )
    rows = [
        (
            f"{n}",
            ms(t["forward"]),
            ms(t["kernel"]),
            ms(t["kernel_folded"]),
            ms(t["scan_forward"]),
            ms(t[f"attack{min(STEPS)}"]),
            ms(t[f"attack{max(STEPS)}"]),
            ms(t["step"]),
            ms(t["ours"]),
        )
        for n, t in results.items()
    ]
    print_table(
        (
            "N",
            "forward",
            "kernel",
            "X folded",
            "in-scan fwd",
            f"attack {min(STEPS)}",
            f"attack {max(STEPS)}",
            "step",
            "single",
        ),
        rows,
    )
    print()
    rows = [
        (
            f"{n}",
            f"{t['step'] / t['forward']:.2f}x",
            f"{t['step'] / t['kernel']:.2f}x",
            f"{t['step'] / t['scan_forward']:.2f}x",
            f"{t['ours'] / t['forward']:.2f}x",
            ms(t["forward"] - t["scan_forward"]),
        )
        for n, t in results.items()
    ]
    print_table(
        ("N", "step/forward", "step/kernel", "step/in-scan fwd", "single/forward", "forward - in-scan fwd"), rows
    )
    print(
        "   (forward - in-scan forward: work a standalone call repeats that the scan hoists out of its loop, "
        "i.e. work on the training images alone)"
    )

    print(
        "\n2. one step of ours vs a naive step that recomputes Θ(X, X) and jnp.linalg.solve's it every step "
        "(gradient through Θ(x, X) only), both one jitted call per step (like for like); 'vs in-attack' divides "
        f"by our per-step cost inside attacks.attack instead; naive median of {SLOW_REPEATS};"
    )
    print(
        "   'fastest' divides the fastest naive call by our fastest: less sensitive to other processes, which slow "
        "the LAPACK-heavy baselines far more than our steps"
    )
    rows = [
        (
            f"{n}",
            ms(t["ours"]),
            ms(t["naive"]),
            ms(t["train_kernel"]),
            f"{t['naive'] / t['ours']:.0f}x",
            f"{t['naive'] / t['step']:.0f}x",
            f"{t['min naive'] / t['min ours']:.0f}x",
        )
        for n, t in results.items()
    ]
    print_table(("N", "ours (single)", "naive step", "Θ(X, X) alone", "speedup", "vs in-attack", "fastest"), rows)

    print(
        "\n3. one step of ours vs one step through nt.predict.gradient_descent_mse_ensemble(kernel_fn, X, Y)"
        "(t=None, x_test=x, get='ntk'), differentiated w.r.t. x_test (it is differentiable), each one jitted call:"
    )
    print(
        "   (a) predict_fn built once and called once outside jit, so that its cache holds Θ(X, X), the Cholesky "
        "factor and Θ⁻¹Y; (b) built inside the step, so Θ(X, X) and its Cholesky factor are recomputed every "
        f"step (median of {SLOW_REPEATS}); 'fastest' as in 2."
    )
    rows = [
        (
            f"{n}",
            ms(t["ours"]),
            ms(t["nt_cached"]),
            f"{t['nt_cached'] / t['ours']:.2f}x",
            f"{t['min nt_cached'] / t['min ours']:.2f}x",
            ms(t["nt_fresh"]),
            f"{t['nt_fresh'] / t['ours']:.0f}x",
            f"{t['min nt_fresh'] / t['min ours']:.0f}x",
        )
        for n, t in results.items()
    ]
    print_table(
        (
            "N",
            "ours (single)",
            "(a) nt cached",
            "speedup (a)",
            "fastest (a)",
            "(b) nt rebuilt",
            "speedup (b)",
            "fastest (b)",
        ),
        rows,
    )
    cached = [t["nt_cached"] / t["ours"] for t in results.values()]
    if max(cached) < 1.2:
        print(
            f"   (a) costs what ours costs or less ({min(cached):.2f}x to {max(cached):.2f}x): both are one pass "
            "through Θ(x, X); its compiled step also holds X as a constant, so XLA precomputes the work on X "
            "alone ('X folded' in 1.), while ours receives X as an argument"
        )

    def each(numerator: str, denominator: str, digits: int) -> str:
        return " / ".join(f"{results[n][numerator] / results[n][denominator]:.{digits}f}x" for n in SIZES)

    print(
        f"\nsummary (N = {' / '.join(map(str, SIZES))}): PGD step / forward pass {each('step', 'forward', 2)} "
        f"({each('step', 'scan_forward', 2)} against a forward pass in a scan); speedup vs naive re-solve "
        f"{each('naive', 'ours', 0)}; vs neural-tangents predict_fn {each('nt_cached', 'ours', 2)} with its "
        f"cache, {each('nt_fresh', 'ours', 0)} rebuilt each step"
    )
    load_end = os.getloadavg()[0]
    print(
        f"load average (1 min) {load_start:.1f} at the start, {load_end:.1f} at the end, on {cores} cores"
        + (
            ": other processes were competing for the CPU, every time is inflated and noisier"
            if max(load_start, load_end) > cores + 0.5
            else ""
        )
    )
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
