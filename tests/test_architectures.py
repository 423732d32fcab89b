"""The one registry of networks (ntk_notes.architectures): kernels' architectures and
trainable networks share their layer builders, and the old entry points still answer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_notes import architectures


def test_every_name_is_in_one_registry_with_its_kind():
    assert set(architectures.ARCHITECTURES) == {"fc", "conv", "myrtle"}
    assert set(architectures.NETWORKS) == {"cnn", "mlp", "authors_cnn"}
    assert set(architectures.REGISTRY) == set(architectures.ARCHITECTURES) | set(architectures.NETWORKS)
    with pytest.raises(ValueError, match="unknown architecture 'mlp'"):
        architectures.architecture("mlp")  # a trainable network is no kernel architecture
    with pytest.raises(ValueError, match="unknown network 'fc'"):
        architectures.network("fc")


def test_fc_in_the_standard_parameterization_is_the_mlp():
    """One builder serves both: the same layers, so the same parameters and outputs."""
    x = jax.random.uniform(jax.random.PRNGKey(0), (3, 4, 4, 1))
    init_a, apply_a, _ = architectures.architecture("fc", depth=2, width=16, parameterization="standard")
    init_b, apply_b, _ = architectures.network("mlp", 1, (16, 16))
    _, params_a = init_a(jax.random.PRNGKey(1), x.shape)
    _, params_b = init_b(jax.random.PRNGKey(1), x.shape)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)))
    np.testing.assert_array_equal(apply_a(params_a, x), apply_b(params_b, x))


@pytest.mark.parametrize("depth, convs", [(5, 4), (7, 6), (10, 9)])
def test_myrtle_stages(depth, convs):
    init_fn, apply_fn, _ = architectures.architecture("myrtle", depth, width=4)
    _, params = init_fn(jax.random.PRNGKey(0), (1, 8, 8, 3))
    conv_weights = [leaf for leaf in jax.tree.leaves(params) if leaf.shape[:2] == (3, 3)]
    assert len(conv_weights) == convs  # depth − 1 conv layers, then the readout
    assert apply_fn(params, jnp.zeros((2, 8, 8, 3))).shape == (2, 1)


def test_the_small_cnn_strides_and_shapes():
    init_fn, apply_fn, _ = architectures.network("cnn", 3, (4, 5, 6))
    _, params = init_fn(jax.random.PRNGKey(0), (1, 8, 8, 1))
    convs = [leaf.shape for leaf in jax.tree.leaves(params) if leaf.shape[:2] == (3, 3)]
    assert [shape[-1] for shape in convs] == [4, 5, 6]
    dense = [leaf.shape for leaf in jax.tree.leaves(params) if leaf.ndim == 2 and leaf.shape[0] > 1]
    assert dense == [(2 * 2 * 6, 3)]  # 8 -> 8 -> 4 -> 2 pixels: two stride-2 convolutions
    assert apply_fn(params, jnp.zeros((5, 8, 8, 1))).shape == (5, 3)
    assert architectures.network("cnn", 3, (4, 5, 6)) is architectures.network("cnn", 3, [4, 5, 6])  # cached
