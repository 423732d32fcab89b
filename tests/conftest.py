"""Strict numerics for every test: silent broadcasting between arrays of different rank
raises, so shape bugs in kernel and attack code fail loudly.

The tests compile hundreds of small XLA programs and run each once or twice: XLA's CPU
backend without its LLVM optimisation passes compiles them much faster (test_dynamics.py and
test_attacks.py took 76 CPU-seconds instead of 124) and computes the same operations, to the
last bits of float32 (the tests' tolerances allow for that). The book's own runs keep the
defaults; a notebook that a test executes inherits this setting."""

import os

os.environ.setdefault("NTK_NOTES_PROGRESS", "0")
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    ).strip()

import jax  # noqa: E402
import pytest  # noqa: E402

import ntk_notes  # noqa: E402,F401  (installs the neural-tangents shim)

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def float64():
    """64-bit jax for one test: finite differences and tight comparisons need it."""
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)
