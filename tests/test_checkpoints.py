"""The one checkpoint store (ntk_notes.checkpoints): round trips, what is refused and why,
atomic writes, and the pytree naming that lets parameters be saved and rebuilt."""

import hashlib
import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_notes import checkpoints


def _no_temporary_files(directory):
    assert not [p for p in directory.rglob("*") if ".tmp" in p.name]


def test_round_trip_keeps_names_dtypes_and_the_config(tmp_path):
    arrays = {
        "kernel": np.arange(6.0).reshape(2, 3),
        "history/loss": np.array([1, 2], dtype=np.int32),
        "params[0][1]": np.ones(3, np.float32),
    }
    path = tmp_path / "sub" / "x.npz"
    checkpoints.save_npz(path, arrays, {"k": (1, 2), "name": "run"})
    loaded, config = checkpoints.read_npz(path)
    assert set(loaded) == set(arrays) and all(loaded[n].dtype == arrays[n].dtype for n in arrays)
    assert all(np.array_equal(loaded[n], arrays[n]) for n in arrays)
    assert config == {"k": [1, 2], "name": "run"}  # as JSON reads it back, checksum removed
    # The file is plain arrays plus one JSON entry: no pickle needed to read it.
    with np.load(path, allow_pickle=False) as saved:
        assert set(saved.files) == set(arrays) | {"config"}
        stored = json.loads(str(saved["config"]))
    assert stored[checkpoints.CHECKSUM_KEY] == checkpoints.digest(arrays, checkpoints.config_text(config))
    _no_temporary_files(tmp_path)


def test_digest_of_a_text_is_its_sha256_and_arrays_count_by_dtype_and_shape():
    text = "repr of some settings"
    assert checkpoints.digest({}, text) == hashlib.sha256(text.encode()).hexdigest()
    a = np.arange(4.0)
    assert checkpoints.digest({"x": a}) != checkpoints.digest({"x": a.astype(np.float32)})
    assert checkpoints.digest({"x": a}) != checkpoints.digest({"x": a.reshape(2, 2)})
    assert checkpoints.digest({"x": a, "y": a}) == checkpoints.digest({"y": a, "x": a})  # name order


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bit flip", "no config", "no checksum"])
def test_unreadable_or_altered_files_are_refused(tmp_path, damage):
    path = tmp_path / "x.npz"
    checkpoints.save_npz(path, {"a": np.arange(100.0)}, {"k": 1})
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"not an npz" * 20)
    elif damage == "bit flip":
        with np.load(path) as saved:
            entries = {name: saved[name] for name in saved.files}
        entries["a"] = entries["a"] + 1.0
        np.savez(path, **entries)
    elif damage == "no config":  # e.g. the format before this module: arrays a0, a1 and a "meta" entry
        np.savez(path, a0=np.arange(100.0), meta=np.array("{}"))
    else:  # a block file of the earlier BlockedKernel: its config, but no checksum
        np.savez(path, kernel=np.arange(100.0), config=np.array(json.dumps({"k": 1})))
    with pytest.raises(checkpoints.UnreadableCheckpoint, match="checksum" if damage == "bit flip" else "unreadable"):
        checkpoints.read_npz(path)
    if damage in ("no config", "no checksum"):  # an earlier format: replaced without a warning
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert checkpoints.load_npz(path, {"k": 1}, {"a": ((100,), np.float64)}) is None
        return
    with pytest.warns(checkpoints.CheckpointWarning, match="x.npz"):
        assert checkpoints.load_npz(path, {"k": 1}, {"a": ((100,), np.float64)}) is None


def test_load_refuses_another_config_other_arrays_and_non_finite_values(tmp_path):
    path = tmp_path / "x.npz"
    expected = {"a": ((2, 3), np.float64)}
    checkpoints.save_npz(path, {"a": np.zeros((2, 3))}, {"k": [1, 2], "rate": 0.1})
    assert checkpoints.load_npz(path, {"k": (1, 2), "rate": 0.1}, expected) is not None  # tuples read as lists
    assert checkpoints.load_npz(tmp_path / "absent.npz", {}, expected) is None  # absent: no warning
    with pytest.warns(checkpoints.CheckpointWarning, match="another configuration.*differs in rate"):
        assert checkpoints.load_npz(path, {"k": [1, 2], "rate": 0.2}, expected) is None
    with pytest.warns(checkpoints.CheckpointWarning, match="unexpected names or shapes"):
        assert checkpoints.load_npz(path, {"k": [1, 2], "rate": 0.1}, {"a": ((3, 2), np.float64)}) is None
    checkpoints.save_npz(path, {"a": np.full((2, 3), np.nan)}, {"k": [1, 2], "rate": 0.1})
    with pytest.warns(checkpoints.CheckpointWarning, match="NaN"):
        assert checkpoints.load_npz(path, {"k": [1, 2], "rate": 0.1}, expected) is None


def test_reserved_names_and_unsavable_configs_raise_before_writing(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        checkpoints.save_npz(tmp_path / "x.npz", {"config": np.zeros(1)}, {})
    with pytest.raises(ValueError, match=checkpoints.CHECKSUM_KEY):
        checkpoints.save_npz(tmp_path / "x.npz", {"a": np.zeros(1)}, {checkpoints.CHECKSUM_KEY: "x"})
    with pytest.raises(TypeError):
        checkpoints.save_npz(tmp_path / "x.npz", {"a": np.zeros(1)}, {"f": object()})
    assert not list(tmp_path.iterdir())


def test_a_failed_write_leaves_neither_a_file_nor_a_temporary(tmp_path, monkeypatch):
    def failing(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", failing)
    with pytest.raises(OSError, match="disk full"):
        checkpoints.save_npz(tmp_path / "x.npz", {"a": np.zeros(2)}, {})
    assert not list(tmp_path.iterdir())


def test_named_leaves_and_rebuild_round_trip_a_pytree():
    tree = ({"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}, (), [jnp.arange(4.0)])
    named = checkpoints.named_leaves(tree)
    assert len(named) == 3 and all(isinstance(name, str) for name in named)
    rebuilt = checkpoints.rebuild(tree, {name: np.asarray(leaf) for name, leaf in named.items()})
    assert jax.tree.structure(rebuilt) == jax.tree.structure(tree)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(rebuilt), jax.tree.leaves(tree)))


def test_epoch_paths_put_linearised_epochs_in_their_own_folder(tmp_path):
    assert checkpoints.epoch_path(tmp_path, None, 7, "epoch") == tmp_path / "epoch-0007.npz"
    assert checkpoints.epoch_path(tmp_path, 3, 3, "kernel-clean") == tmp_path / "kernel-clean-0003.npz"
    assert checkpoints.epoch_path(tmp_path, 3, 4, "epoch") == tmp_path / "linearised-from-0003" / "epoch-0004.npz"
