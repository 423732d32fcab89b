"""Every network of the book, in one registry: for infinite-width kernels and for training.

Each name of ``REGISTRY`` builds the neural-tangents ``stax`` layers of one architecture
from its hidden widths; two entry points read it:

- ``architecture(name, depth, width, ...)``: the kernels' architectures (``fc``, ``conv``,
  ``myrtle``), as the paper's authors: ReLU, W_std = sqrt(2), b_std = 0.1, NTK
  parameterization by default; its ``kernel_fn`` is the infinite-width kernel: for ``fc``
  the closed form of ``ntk_notes.fc_kernel`` (the same values, 1.6-1.8x faster on CPU; anything it
  does not cover goes to neural-tangents), for the others neural-tangents' own;
- ``network(name, n_out, widths, ...)``: small trainable networks (``cnn``, ``mlp``,
  ``authors_cnn``) in the standard parameterization (weights ~ N(0, W_std² / fan_in), the
  way networks are trained in practice).

Both return the stax triple ``(init_fn, apply_fn, kernel_fn)``; ``apply_fn(params, x)``
maps images (n, H, W, channels) to outputs (n, n_out). The same spec gives the same
functions (cached), so compiled code is reused.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.tree_util import Partial
from neural_tangents import stax

from ntk_notes import attacks, fc_kernel

MYRTLE_STAGES = {5: (2, 1, 1), 7: (2, 2, 2), 10: (3, 3, 3)}  # conv layers before each 2x2 pool
PARAMETERIZATIONS = ("ntk", "standard")


def _dense(width, W_std, b_std, parameterization):
    return stax.Dense(width, W_std, b_std, parameterization=parameterization)


def _conv(width, W_std, b_std, parameterization, strides=None):
    return stax.Conv(
        width, (3, 3), strides=strides, padding="SAME", W_std=W_std, b_std=b_std, parameterization=parameterization
    )


def _fully_connected(widths, n_out, *std):
    """Flatten → [Dense(w) → Relu] per width → Dense(n_out)."""
    return (
        [stax.Flatten()] + [layer for w in widths for layer in (_dense(w, *std), stax.Relu())] + [_dense(n_out, *std)]
    )


def _convolutional(widths, n_out, *std):
    """[Conv(w, 3x3, SAME) → Relu] per width → Flatten → Dense(n_out)."""
    return [layer for w in widths for layer in (_conv(w, *std), stax.Relu())] + [stax.Flatten(), _dense(n_out, *std)]


def _myrtle(widths, n_out, *std):
    """Myrtle-5/7/10 (Shankar et al. 2020): three stages of 3x3 conv + Relu layers, each
    followed by 2x2 average pooling, then global average pooling and Dense(n_out)."""
    layers = []
    for n_convs in MYRTLE_STAGES[len(widths) + 2]:
        layers += [_conv(widths[0], *std), stax.Relu()] * n_convs + [
            stax.AvgPool((2, 2), strides=(2, 2), padding="SAME")
        ]
    return layers + [stax.GlobalAvgPool(), _dense(n_out, *std)]


def _cnn(widths, n_out, *std):
    """Conv(w₁) → Relu → Conv(w₂, stride 2) → Relu → Conv(w₃, stride 2) → Relu → Flatten →
    Dense(n_out), 3x3 SAME convolutions."""
    return [
        _conv(widths[0], *std, strides=(1, 1)),
        stax.Relu(),
        _conv(widths[1], *std, strides=(2, 2)),
        stax.Relu(),
        _conv(widths[2], *std, strides=(2, 2)),
        stax.Relu(),
        stax.Flatten(),
        _dense(n_out, *std),
    ]


def _authors_cnn(widths, n_out, *std):
    """The authors' 6-conv CIFAR-10 network (PAPER.md), with 2x2 average pooling where they
    max-pool (stax has no max pooling)."""
    conv = lambda width: [_conv(width, *std), stax.Relu()]  # noqa: E731
    pool = stax.AvgPool((2, 2), strides=(2, 2))
    return [
        *conv(widths[0]),
        *conv(widths[1]),
        pool,
        *[layer for w in widths[2:] for layer in conv(w)],
        pool,
        stax.Flatten(),
        _dense(n_out, *std),
    ]


class Entry(NamedTuple):
    layers: object  # (widths, n_out, W_std, b_std, parameterization) -> list of stax layers
    kind: str  # "kernel" (read by ``architecture``) or "network" (read by ``network``)
    default_widths: tuple | None  # a network's default widths; None for the kernels' architectures
    n_layers: int | None  # how many widths a network takes (None: any number)


REGISTRY = {
    "fc": Entry(_fully_connected, "kernel", None, None),
    "conv": Entry(_convolutional, "kernel", None, None),
    "myrtle": Entry(_myrtle, "kernel", None, None),
    "cnn": Entry(_cnn, "network", (32, 32, 64), 3),
    "mlp": Entry(_fully_connected, "network", (256, 256), None),
    "authors_cnn": Entry(_authors_cnn, "network", (32, 32, 64, 64, 128, 128), 6),
}
ARCHITECTURES = tuple(name for name, entry in REGISTRY.items() if entry.kind == "kernel")
NETWORKS = tuple(name for name, entry in REGISTRY.items() if entry.kind == "network")


@lru_cache(maxsize=64)  # the same spec gives the same functions, so compiled code is reused
def architecture(
    name: str,
    depth: int = 1,
    width: int = 512,
    n_out: int = 1,
    W_std: float = 2**0.5,
    b_std: float = 0.1,
    parameterization: str = "ntk",
):
    """The stax triple ``(init_fn, apply_fn, kernel_fn)`` of a named kernel architecture.

    - ``fc``: Flatten -> depth x [Dense(width), Relu] -> Dense(n_out)
    - ``conv``: depth x [Conv(width, 3x3, SAME), Relu] -> Flatten -> Dense(n_out)
    - ``myrtle``: Myrtle-5/7/10 (Shankar et al. 2020), ``depth`` in 5, 7, 10: three stages
      of 3x3 conv + Relu layers, each followed by 2x2 average pooling, then global average
      pooling and Dense(n_out).

    ``fc``'s ``kernel_fn`` is an ``ntk_notes.fc_kernel.FcReluKernel`` (neural-tangents'
    ``kernel_fn`` is its ``reference``), the others' neural-tangents' own.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; allowed: {', '.join(ARCHITECTURES)}")
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"unknown parameterization {parameterization!r}; allowed: {', '.join(PARAMETERIZATIONS)}")
    if name == "myrtle" and depth not in MYRTLE_STAGES:
        raise ValueError(f"Myrtle depth {depth!r} is not allowed: one of {', '.join(map(str, MYRTLE_STAGES))}")
    if name != "myrtle" and (not isinstance(depth, int) or depth < 1):
        raise ValueError(f"depth {depth!r} is not allowed: a positive integer")
    widths = (width,) * (depth - 2 if name == "myrtle" else depth)
    init_fn, apply_fn, kernel_fn = stax.serial(*REGISTRY[name].layers(widths, n_out, W_std, b_std, parameterization))
    if name == "fc":  # closed form, vectorised arc-cosine; neural-tangents' kernel_fn stays its fallback
        kernel_fn = fc_kernel.FcReluKernel(kernel_fn, depth, W_std, b_std, parameterization, width)
    return init_fn, apply_fn, kernel_fn


def network(name: str, n_out: int = 1, widths=None, W_std: float = 2**0.5, b_std: float = 0.1):
    """The stax triple ``(init_fn, apply_fn, kernel_fn)`` of a small trainable network, in the
    standard parameterization (``architecture`` uses the NTK parameterization for kernels):

    - ``cnn``: Conv(w₁, 3x3) → Relu → Conv(w₂, 3x3, stride 2) → Relu → Conv(w₃, 3x3, stride 2)
      → Relu → Flatten → Dense(n_out), all convolutions SAME; default widths (32, 32, 64);
    - ``mlp``: Flatten → [Dense(w) → Relu] per width → Dense(n_out); default (256, 256);
    - ``authors_cnn``: the authors' CIFAR-10 CNN, Conv(w₁) → Conv(w₂) → AvgPool 2 → Conv(w₃)
      → Conv(w₄) → Conv(w₅) → Conv(w₆) → AvgPool 2 → Flatten → Dense(n_out), 3x3 SAME
      convolutions each followed by Relu, default widths (32, 32, 64, 64, 128, 128)
      (about 0.37 M parameters on 32x32x3 images, 10 outputs); they max-pooled.
    """
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; allowed: {', '.join(NETWORKS)}")
    entry = REGISTRY[name]
    widths = entry.default_widths if widths is None else tuple(widths)
    if entry.n_layers is not None and len(widths) != entry.n_layers:
        raise ValueError(
            f"the {name} network has {entry.n_layers} hidden layers: widths must have "
            f"{entry.n_layers} entries, got {widths!r}"
        )
    if not widths or not all(attacks.is_count(w) for w in widths):
        raise ValueError(f"widths must be positive integers, got {widths!r}")
    if not attacks.is_count(n_out):
        raise ValueError(f"n_out must be a positive integer, got {n_out!r}")
    return _network(name, int(n_out), tuple(int(w) for w in widths), float(W_std), float(b_std))


@lru_cache(maxsize=64)  # the same spec gives the same functions, so compiled code is reused
def _network(name, n_out, widths, W_std, b_std):
    return stax.serial(*REGISTRY[name].layers(widths, n_out, W_std, b_std, "standard"))


@lru_cache(maxsize=16)
def network_convolves(name: str) -> bool:
    """Whether the network ``name`` (default widths) convolves with its weights,
    ``attacks.uses_convolution`` on a small image: what its PGD loop's form depends on."""
    init_fn, apply_fn, _ = network(name)
    shape = (1, 8, 8, 1)
    return attacks.uses_convolution(Partial(apply_fn, init_fn(jax.random.PRNGKey(0), shape)[1]), jnp.zeros(shape))
