"""The empirical NTK, and its trajectory on probes through a training run.

- ``empirical_ntk``: Θ(x1, x2) = J(x1) J(x2)ᵀ of any model (params, x) -> outputs, full or
  traced, by one of neural-tangents' implementations (``IMPLEMENTATIONS``), all of which
  give the same kernel; ``choose_ntk_implementation`` finds the fastest that agrees.
- ``kernel_trajectory``, ``probe_kernels``, ``fixed_adversarial_probe``: the empirical NTK
  of a run of ``ntk_notes.adversarial_training`` on a fixed probe batch, clean and
  attacked, at the recorded epochs, saved beside the run's parameters (``checkpoints``).

Kernel layout. ``trace=True`` averages over the outputs (neural-tangents' ``trace_axes``
convention, (1/C) Σ_c Θ_cc, comparable to the infinite-width kernel): K has shape (n, n).
The full kernel (``trace=False``) keeps every pair of outputs, shape (n·C, n·C), row
``i·C + c`` being example i, output c (example-major); its targets are Y (n, C) flattened
the same way, ``Y.reshape(-1)``. With one output both are the same (n, n) matrix.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import neural_tangents as nt
import numpy as np

from ntk_notes import attacks, checkpoints, training
from ntk_notes.progress import progress

IMPLEMENTATIONS = {
    "jacobian_contraction": nt.NtkImplementation.JACOBIAN_CONTRACTION,
    "ntk_vector_products": nt.NtkImplementation.NTK_VECTOR_PRODUCTS,
    "structured_derivatives": nt.NtkImplementation.STRUCTURED_DERIVATIVES,
}
AGREEMENT_RTOL = 1e-4  # relative Frobenius difference allowed between two implementations


def _implementation(implementation) -> nt.NtkImplementation:
    if isinstance(implementation, nt.NtkImplementation) and implementation in IMPLEMENTATIONS.values():
        return implementation
    if implementation in IMPLEMENTATIONS:
        return IMPLEMENTATIONS[implementation]
    raise ValueError(
        f"unknown empirical NTK implementation {implementation!r}; allowed: "
        f"{', '.join(IMPLEMENTATIONS)} (never AUTO: it prints while choosing)"
    )


@lru_cache(maxsize=32)
def _ntk_fn(trace_axes: tuple, implementation: nt.NtkImplementation):
    @jax.jit
    def kernel(model, params, x1, x2):
        fn = nt.empirical_ntk_fn(model, trace_axes=trace_axes, vmap_axes=0, implementation=implementation)
        return fn(x1, x2, params)

    return kernel


def _raw_ntk(model, params, x1, x2, trace: bool, implementation: nt.NtkImplementation):
    return _ntk_fn((-1,) if trace else (), implementation)(attacks.as_model(model), params, x1, x2)


def _as_matrix(raw, trace: bool) -> np.ndarray:
    k = np.asarray(raw, dtype=np.float64)
    if trace:
        return k
    n1, n2, c1, c2 = k.shape  # neural-tangents' layout for trace_axes=(): (n1, n2, C, C)
    return k.transpose(0, 2, 1, 3).reshape(n1 * c1, n2 * c2)  # row i·C + c: example-major


def empirical_ntk(
    model, params, x1, x2=None, trace: bool = False, implementation="structured_derivatives"
) -> np.ndarray:
    """The empirical NTK Θ(x1, x2) = J(x1) J(x2)ᵀ of ``model`` (params, x) -> outputs (C) at
    ``params``, as float64: (n1·C, n2·C), row i·C + c (``trace=False``), or averaged over the
    outputs, (1/C) Σ_c Θ_cc, (n1, n2) (``trace=True``). ``implementation``: a name of ``IMPLEMENTATIONS``
    (``choose_ntk_implementation`` finds the fastest); all give the same kernel."""
    raw = _raw_ntk(
        model, params, jnp.asarray(x1), None if x2 is None else jnp.asarray(x2), trace, _implementation(implementation)
    )
    return _as_matrix(raw, trace)


class NtkChoice(NamedTuple):
    implementation: str  # the fastest implementation that agrees
    seconds: dict  # name -> best time of one call after compilation (NaN: it failed)
    compile_seconds: dict  # name -> time of the first call (compilation included)
    relative_difference: dict  # name -> ‖K − K_ref‖ / ‖K_ref‖ against the reference (NaN: it failed)
    reference: str  # jacobian_contraction, unless it failed
    errors: dict  # name -> error message, for implementations that raised (e.g. out of memory)


def choose_ntk_implementation(
    model, params, x, trace: bool = False, repeats: int = 3, candidates=tuple(IMPLEMENTATIONS)
) -> NtkChoice:
    """Compute the empirical NTK of ``model`` on ``x`` with every implementation of
    ``candidates`` (default all of ``IMPLEMENTATIONS``) once, check that they agree (relative
    Frobenius difference below ``AGREEMENT_RTOL`` against the explicit Jacobian
    contraction; RuntimeError if not), and pick the fastest by the best of ``repeats`` timed
    calls. An implementation that raises (memory) is left out; at least two must succeed,
    so that the agreement is checked. Leave an implementation out of ``candidates`` when a
    benchmark showed it hopeless: NTK_VECTOR_PRODUCTS on a 10-output CNN compiles for 20 s."""
    x = jnp.asarray(x)
    candidates = tuple(dict.fromkeys(candidates))
    if len(candidates) < 2 or not all(isinstance(c, str) and c in IMPLEMENTATIONS for c in candidates):
        raise ValueError(
            f"candidates must be at least two names of {', '.join(IMPLEMENTATIONS)} (to check "
            f"them against each other); got {candidates!r}"
        )
    kernels, seconds, compile_seconds, errors = {}, {}, {}, {}
    for name in candidates:
        implementation = IMPLEMENTATIONS[name]
        try:
            start = time.perf_counter()
            kernels[name] = _as_matrix(
                jax.block_until_ready(_raw_ntk(model, params, x, None, trace, implementation)), trace
            )
            compile_seconds[name] = time.perf_counter() - start
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                jax.block_until_ready(_raw_ntk(model, params, x, None, trace, implementation))
                times.append(time.perf_counter() - start)
            seconds[name] = min(times)
        except Exception as error:  # noqa: BLE001 -- any failure just rules this implementation out
            errors[name] = f"{type(error).__name__}: {str(error)[:300]}"
    if len(kernels) < 2:
        raise RuntimeError(f"fewer than two empirical NTK implementations ran, so none can be checked: {errors}")
    reference = "jacobian_contraction" if "jacobian_contraction" in kernels else next(iter(kernels))
    scale = np.linalg.norm(kernels[reference])
    difference = {name: float(np.linalg.norm(k - kernels[reference]) / scale) for name, k in kernels.items()}
    disagreeing = {name: d for name, d in difference.items() if not d < AGREEMENT_RTOL}
    if disagreeing:
        raise RuntimeError(
            f"empirical NTK implementations disagree with {reference} (relative Frobenius "
            f"difference {disagreeing}, allowed {AGREEMENT_RTOL})"
        )
    nan = float("nan")
    return NtkChoice(
        min(seconds, key=seconds.get),
        {n: seconds.get(n, nan) for n in candidates},
        {n: compile_seconds.get(n, nan) for n in candidates},
        {n: difference.get(n, nan) for n in candidates},
        reference,
        errors,
    )


class KernelTrajectory(NamedTuple):
    epochs: np.ndarray  # (T,)
    clean: np.ndarray  # (T, m, m) float64 kernels on the clean probe; m = n·C (full) or n (traced)
    adversarial: np.ndarray  # (T, m, m) on the probe attacked against that epoch's model
    trace: bool
    attack: dict  # method, epsilon, step_size, steps of the probe attack
    choice: NtkChoice | None  # None when every kernel was loaded from disk


def kernel_trajectory(
    run,
    x_probe,
    labels_probe,
    trace: bool = False,
    epochs=None,
    method: str | None = None,
    epsilon: float | None = None,
    step_size: float | None = None,
    steps: int | None = None,
    candidates=tuple(IMPLEMENTATIONS),
    show_progress: bool | None = None,
) -> KernelTrajectory:
    """The empirical NTK of the trained model (``run.model_at(e)`` at ``run.params_at(e)``)
    on a fixed probe batch at each recorded epoch of ``epochs`` (default all): on the clean
    probe and on the probe attacked against that epoch's model (the authors' protocol;
    their epoch 0 used clean images).

    The probe attack defaults to the run's: FGSM for ``fgsm`` runs, PGD with the run's ε,
    step size and steps otherwise (so a ``standard`` run should be trained with the ε the
    probe is to be attacked with). The implementation is chosen once per call
    (``choose_ntk_implementation`` among ``candidates``, on the first kernel to compute). With a checkpoint
    directory each epoch's pair of kernels is saved beside its parameters
    (``kernel-full-EEEE.npz`` / ``kernel-traced-EEEE.npz``) and reused.
    """
    epochs = run.epochs if epochs is None else np.asarray(epochs)
    for e in epochs:
        run.params_at(int(e))  # names any epoch that was not recorded
    s = run.settings
    method = method or ("fgsm" if s["mode"] == "fgsm" else "pgd")
    probe_attack = dict(
        method=method,
        epsilon=s["epsilon"] if epsilon is None else float(epsilon),
        step_size=(s["step_size"] if step_size is None else float(step_size)),
        steps=s["steps"] if steps is None else int(steps),
    )
    if method == "fgsm":  # one step of size ε, as every FGSM of the book
        steps_, step_size_, _ = attacks.step_plan("fgsm", probe_attack["epsilon"], 1)
        probe_attack.update(step_size=step_size_, steps=steps_)
    x_probe = jnp.asarray(x_probe)
    labels_probe = training.check_labels(run.model_at(0), run.params[0], x_probe, labels_probe)
    n_out = jax.eval_shape(run.model_at(0), run.params[0], x_probe[:1]).shape[-1]
    m = len(x_probe) * (1 if trace else n_out)
    stem = f"kernel-{'traced' if trace else 'full'}"
    probe_sha = checkpoints.digest({"x": np.asarray(x_probe), "labels": labels_probe})
    choice, clean, adversarial = None, [], []
    for epoch in progress([int(e) for e in epochs], desc=f"{stem}s", enabled=show_progress):

        def compute(epoch=epoch):
            nonlocal choice
            model, params = run.model_at(epoch), run.params_at(epoch)
            if choice is None:
                choice = choose_ntk_implementation(model, params, x_probe, trace, candidates=candidates)
            x_adv = attacks.attack(
                run.logits_fn(epoch),
                x_probe,
                labels_probe,
                probe_attack["epsilon"],
                method,
                steps=probe_attack["steps"],
                step_size=probe_attack["step_size"],
                batch_size=len(x_probe),
            ).x_adv
            return {
                name: empirical_ntk(model, params, x, trace=trace, implementation=choice.implementation)
                for name, x in (("clean", x_probe), ("adversarial", x_adv))
            }

        config = _kernel_config(run, epoch, probe_sha, trace, attack=probe_attack)
        saved = _load_or_compute(
            run, epoch, stem, config, {"clean": ((m, m), np.float64), "adversarial": ((m, m), np.float64)}, compute
        )
        clean.append(saved["clean"])
        adversarial.append(saved["adversarial"])
    return KernelTrajectory(np.asarray(epochs), np.stack(clean), np.stack(adversarial), trace, probe_attack, choice)


def fixed_adversarial_probe(
    run, x_probe, labels_probe, epsilon: float, epoch: int = 0, steps: int = 10, step_size: float | None = None
) -> np.ndarray:
    """The probe attacked once, by PGD (``steps`` steps of ``step_size``, default 2.5 ε / steps,
    from x, as the authors' probe attack), against ``run``'s model at ``epoch`` (default 0:
    the initialisation θ₀, which the standard and adversarial runs of one seed share, so
    that all three are measured on the same inputs). Images (n, H, W, channels)."""
    return np.asarray(
        attacks.attack(
            run.logits_fn(epoch),
            x_probe,
            labels_probe,
            epsilon,
            "pgd",
            steps=steps,
            step_size=step_size,
            batch_size=len(x_probe),
        ).x_adv
    )


def probe_kernels(
    run,
    x_probe,
    name: str,
    trace: bool = False,
    epochs=None,
    implementation: str | None = None,
    show_progress: bool | None = None,
) -> np.ndarray:
    """The empirical NTK of ``run``'s model on fixed inputs ``x_probe`` (nothing attacked here)
    at each recorded epoch of ``epochs`` (default all), (T, m, m) float64. ``name`` labels the
    probe in the checkpoint files (``kernel-<name>-EEEE.npz`` beside the parameters), so that
    several probes of one run keep their own files. ``implementation``: default the fastest
    that agrees (``choose_ntk_implementation``, on the first kernel computed)."""
    if not (isinstance(name, str) and name.replace("-", "").isalnum()):
        raise ValueError(f"name must be letters, digits and dashes, got {name!r}")
    epochs = run.epochs if epochs is None else np.asarray(epochs)
    x_probe = jnp.asarray(x_probe)
    n_out = jax.eval_shape(run.model_at(0), run.params[0], x_probe[:1]).shape[-1]
    m = len(x_probe) * (1 if trace else n_out)
    probe_sha = checkpoints.digest({"x": np.asarray(x_probe)})
    kernels = []
    for epoch in progress([int(e) for e in epochs], desc=f"kernels on {name}", enabled=show_progress):

        def compute(epoch=epoch):
            nonlocal implementation
            model, params = run.model_at(epoch), run.params_at(epoch)
            if implementation is None:
                implementation = choose_ntk_implementation(model, params, x_probe, trace).implementation
            return {"kernel": empirical_ntk(model, params, x_probe, trace=trace, implementation=implementation)}

        config = _kernel_config(run, epoch, probe_sha, trace)
        kernels.append(
            _load_or_compute(run, epoch, f"kernel-{name}", config, {"kernel": ((m, m), np.float64)}, compute)["kernel"]
        )
    return np.stack(kernels)


def _kernel_config(run, epoch: int, probe_sha: str, trace: bool, **extra) -> dict:
    """The configuration a kernel of ``run`` at ``epoch`` is saved under: the run's settings,
    the probe, the layout, the parameters it was computed at, and ``extra``."""
    k = run.linearise_from_epoch
    return {
        "epoch": epoch,
        "run": run.settings,
        "probe_sha256": probe_sha,
        "trace": trace,
        **extra,
        "linearised_from": k if k is not None and epoch > k else None,
        "params_sha256": checkpoints.digest(checkpoints.named_leaves(run.params_at(epoch))),
    }


def _load_or_compute(run, epoch: int, stem: str, config: dict, expected: dict, compute) -> dict:
    """The arrays saved for ``epoch`` beside ``run``'s parameters (``<stem>-EEEE.npz``), or
    ``compute()``'s, saved there when the run has a directory."""
    path = (
        None if run.directory is None else checkpoints.epoch_path(run.directory, run.linearise_from_epoch, epoch, stem)
    )
    saved = None if path is None else checkpoints.load_npz(path, config, expected)
    if saved is None:
        saved = compute()
        if path is not None:
            checkpoints.save_npz(path, saved, config)
    return saved
