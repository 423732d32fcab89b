"""Strict numerics for every test: silent broadcasting between arrays of different rank
raises, so shape bugs in kernel and attack code fail loudly."""

import os

os.environ.setdefault("NTK_NOTES_PROGRESS", "0")

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
