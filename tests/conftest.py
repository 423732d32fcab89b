"""Strict numerics for every test: silent broadcasting between arrays of different rank
raises, so shape bugs in kernel and attack code fail loudly."""

import os

os.environ.setdefault("NTK_NOTES_PROGRESS", "0")

import jax  # noqa: E402

import ntk_notes  # noqa: E402,F401  (installs the neural-tangents shim)

jax.config.update("jax_numpy_rank_promotion", "raise")
