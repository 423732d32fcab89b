"""Let neural-tangents 0.6.5 (its last release) run on the pinned jax.

neural-tangents 0.6.5 imports names that jax has since moved or removed. Before it is
imported we put those names back where it looks for them, and afterwards we replace the
one function whose behaviour changed (``cost_analysis`` now returns a dict, not a list).
Importing ``ntk_notes`` runs this once; no notebook patches anything itself.

Only the exact jax version below is supported: on jax 0.10 the STRUCTURED_DERIVATIVES
implementation breaks (``ad.linearize`` was rewritten), so other versions are refused.
"""

from __future__ import annotations

import os
import sys
import types

SUPPORTED_JAX = "0.9.2"
NEURAL_TANGENTS = "0.6.5"
INSTALL_HINT = (
    f"pip install 'jax=={SUPPORTED_JAX}' 'jaxlib=={SUPPORTED_JAX}' && "
    f"pip install --no-deps 'neural-tangents=={NEURAL_TANGENTS}' frozendict"
)

# Quiet XLA's C++ logging (CUDA-plugin probing on CPU machines) before jax loads.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def check_jax_version() -> None:
    """Raise an ImportError naming the install command unless jax is the supported version."""
    import jax

    if jax.__version__ != SUPPORTED_JAX:
        raise ImportError(
            f"ntk_notes supports jax=={SUPPORTED_JAX} only (found jax {jax.__version__}): "
            f"neural-tangents {NEURAL_TANGENTS} needs the shim in ntk_notes/_compat.py, which "
            f"is tested on that version. Install it with: {INSTALL_HINT}"
        )


def _restore_moved_jax_names() -> None:
    import jax
    import jax.core
    import jax.extend.core
    import jax.interpreters.ad as ad
    from jax._src import ad_util
    from jax._src import core as private_core
    from jax._src import util as private_util
    from jax._src.interpreters import ad as private_ad

    for name in ("Jaxpr", "JaxprEqn", "Literal", "Var", "Primitive"):
        if not hasattr(jax.core, name):
            setattr(jax.core, name, getattr(jax.extend.core, name))
    if "get_aval" not in vars(jax.core):
        jax.core.get_aval = private_core.get_aval
    if "DShapedArray" not in vars(jax.core):
        # jax dropped dynamic shapes; neural-tangents only compares types against this
        # class, so an empty class that nothing is an instance of is exact.
        jax.core.DShapedArray = type("DShapedArray", (), {})
    if "jax.util" not in sys.modules:
        util = types.ModuleType("jax.util")
        util.safe_map = private_util.safe_map
        util.safe_zip = private_util.safe_zip
        sys.modules["jax.util"] = util
        jax.util = util
    # Set in the module's namespace so that neither a missing-name error nor a
    # deprecation warning (reducing_transposes) reaches the reader.
    if "config" not in vars(ad):  # read as `ad.config.jax_enable_checks`
        ad.config = jax.config
    for name in ("backward_pass", "source_info_util", "reducing_transposes"):
        if name not in vars(ad):
            setattr(ad, name, getattr(private_ad, name))
    if "zeros_like_p" not in vars(ad):
        ad.zeros_like_p = ad_util.zeros_like_p


def _stub_experimental() -> None:
    # `neural_tangents.experimental` needs TensorFlow and tf2jax (1.9 GB), which we do not
    # install; nothing in this project uses it. An empty module keeps `import
    # neural_tangents` from importing TensorFlow.
    name = "neural_tangents.experimental"
    if name not in sys.modules:
        stub = types.ModuleType(name)
        stub.__doc__ = "Stubbed by ntk_notes: needs TensorFlow, which is not installed."
        sys.modules[name] = stub


def _flops(f, optimize: bool, *args, **kwargs) -> float:
    lowered = __import__("jax").jit(f).lower(*args, **kwargs)
    analysis = lowered.compile().cost_analysis() if optimize else lowered.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax returned one dict per device
        analysis = analysis[0]
    return analysis["flops"]


def install() -> None:
    """Prepare jax for neural-tangents and import it once."""
    check_jax_version()
    _restore_moved_jax_names()
    _stub_experimental()
    try:
        import neural_tangents
        from neural_tangents._src import empirical
    except ImportError as error:
        raise ImportError(
            f"neural-tangents {NEURAL_TANGENTS} could not be imported ({error}). "
            f"Install it without its TensorFlow requirements: {INSTALL_HINT}"
        ) from error
    if neural_tangents.__version__ != NEURAL_TANGENTS:
        raise ImportError(
            f"ntk_notes supports neural-tangents=={NEURAL_TANGENTS} only "
            f"(found {neural_tangents.__version__}). Install it with: {INSTALL_HINT}"
        )
    empirical._get_flops = _flops
