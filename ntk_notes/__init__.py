"""ntk-notes: what the neural tangent kernel tells us about adversarial robustness.

Importing the package first makes neural-tangents 0.6.5 work on the pinned jax
(``ntk_notes._compat``); notebooks then simply ``import neural_tangents``.
"""

from ntk_notes import _compat

_compat.install()

__version__ = "0.1.0"
