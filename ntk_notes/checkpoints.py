"""One store for everything computed once and kept on disk: checksummed, atomic .npz files.

A checkpoint is an .npz file (no pickle, so loading one cannot run code) holding named
arrays, each under its own name, and a ``config`` entry: the JSON text of the configuration
it was computed under, plus ``checkpoint_sha256``, a sha256 of the arrays and of that
configuration (``digest``). It is written to a private temporary file and renamed into
place, so a crash or two processes writing the same file never leave a half-written file
under the real name.

``read_npz`` returns what a file holds or raises ``UnreadableCheckpoint`` (truncated,
garbage, checksum mismatch); ``load_npz`` adds the trust policy of training runs: a file
saved under another configuration, with other arrays or with non-finite values is not
trusted either, and every rejection warns (``CheckpointWarning``) and returns None, so the
caller computes it again. Both ``adversarial_training`` (parameters per epoch),
``empirical`` (kernels per epoch) and ``kernels.BlockedKernel`` (kernel blocks) store
through this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

CHECKSUM_KEY = "checkpoint_sha256"  # the checksum's key inside the saved config
CONFIG_ENTRY = "config"  # the .npz entry holding the config; no array may be named so
RESERVED_NAMES = {CONFIG_ENTRY, "file", "args", "kwds", "allow_pickle"}  # np.savez's own names


class CheckpointWarning(UserWarning):
    """A saved file was not trusted (unreadable, altered, another configuration, wrong
    shapes, non-finite values) and is being computed again."""


class UnreadableCheckpoint(ValueError):
    """A checkpoint file that cannot be read whole, or does not match its checksum."""


class OtherFormat(UnreadableCheckpoint):
    """A readable file written in an earlier format of the book's checkpoints (no config entry
    or no checksum): replaced without a warning, since nothing is wrong with it."""


def digest(arrays: dict, text: str = "") -> str:
    """sha256 (hex) of named arrays (name, dtype, shape and bytes of each, in name order) and
    a text; ``digest({}, text)`` is the plain sha256 of the text."""
    h = hashlib.sha256(text.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def canonical(config: dict) -> dict:
    """The config as it reads back from JSON (tuples become lists, int keys strings); raises
    now, not after hours of compute, if it cannot be saved."""
    return json.loads(json.dumps(config, sort_keys=True))


def config_text(config: dict) -> str:
    """The canonical JSON text of a config, the text its checksum covers."""
    return json.dumps(canonical(config), sort_keys=True)


def save_npz(path, arrays: dict, config: dict) -> None:
    """Write named arrays and a JSON ``config`` to ``path`` with their sha256, atomically
    (a temporary file named with the pid, renamed into place)."""
    path = Path(path)
    reserved = RESERVED_NAMES & set(arrays)
    if reserved:
        raise ValueError(f"array names {sorted(reserved)} are reserved by the checkpoint format")
    if CHECKSUM_KEY in config:
        raise ValueError(f"a config may not hold the key {CHECKSUM_KEY!r}: the checksum is kept there")
    arrays = {name: np.asarray(a) for name, a in arrays.items()}
    text = config_text(config)
    stored = {**json.loads(text), CHECKSUM_KEY: digest(arrays, text)}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            np.savez(file, **{CONFIG_ENTRY: np.array(json.dumps(stored, sort_keys=True))}, **arrays)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def read_npz(path) -> tuple[dict, dict]:
    """(arrays, config) saved by ``save_npz`` at ``path``; ``UnreadableCheckpoint`` if the
    file cannot be read whole or does not match its checksum."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            if CONFIG_ENTRY not in saved.files:
                raise OtherFormat("is unreadable (another format: no config entry)")
            stored = json.loads(str(saved[CONFIG_ENTRY][()]))
            arrays = {name: saved[name] for name in saved.files if name != CONFIG_ENTRY}
    except UnreadableCheckpoint:
        raise
    except (
        OSError,
        EOFError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        zipfile.BadZipFile,
        zlib.error,
    ) as error:
        raise UnreadableCheckpoint(f"is unreadable ({type(error).__name__}: {error})") from error
    if not isinstance(stored, dict) or CHECKSUM_KEY not in stored:
        raise OtherFormat("is unreadable (another format: no checksum)")
    checksum = stored.pop(CHECKSUM_KEY)
    if digest(arrays, json.dumps(stored, sort_keys=True)) != checksum:
        raise UnreadableCheckpoint("does not match its checksum")
    return arrays, stored


def changed_keys(config: dict, stored: dict) -> list[str]:
    """The keys whose values differ between two configs (either may lack a key)."""
    return sorted(k for k in set(config) | set(stored) if config.get(k) != stored.get(k))


def load_npz(path, config: dict, expected: dict) -> dict | None:
    """The arrays saved by ``save_npz`` at ``path``, or None if the file is absent or not to
    be trusted: unreadable (truncated, garbage), checksum mismatch, saved under another
    ``config``, arrays other than ``expected`` (name -> (shape, dtype)), or non-finite
    values. Every rejection warns (``CheckpointWarning``, naming the file), except a file in
    an earlier format (``OtherFormat``), which is simply replaced."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        arrays, stored = read_npz(path)
    except OtherFormat:  # written by an earlier version of the book: computed again, quietly
        return None
    except UnreadableCheckpoint as error:
        return distrust(path, str(error))
    config = canonical(config)
    if stored != config:
        return distrust(
            path, f"was saved under another configuration (differs in {', '.join(changed_keys(config, stored))})"
        )
    found = {name: (a.shape, a.dtype) for name, a in arrays.items()}
    wanted = {name: (tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in expected.items()}
    if found != wanted:
        wrong = sorted(n for n in set(found) | set(wanted) if found.get(n) != wanted.get(n))
        return distrust(path, f"holds arrays of unexpected names or shapes ({', '.join(wrong[:4])})")
    if not all(np.all(np.isfinite(a)) for a in arrays.values() if a.dtype.kind == "f"):
        return distrust(path, "holds NaN or infinite values")
    return arrays


def distrust(path, reason: str) -> None:
    """Warn (``CheckpointWarning``) that the file at ``path`` is not trusted for ``reason``
    and will be computed again; returns None, the 'nothing loaded' of the loaders."""
    warnings.warn(f"{path} {reason}; computing it again", CheckpointWarning, stacklevel=3)


def named_leaves(tree) -> dict:
    """{key path string: leaf} of a pytree: names that do not depend on the flattening order."""
    return {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def rebuild(template, named: dict):
    """The pytree of ``template``'s structure whose leaves are ``named`` (``named_leaves``
    names), as jax arrays."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(named[jax.tree_util.keystr(p)]) for p, _ in paths])


def epoch_path(directory, linearised_from: int | None, epoch: int, stem: str) -> Path:
    """Where a training run keeps a file of ``epoch``: ``<stem>-EEEE.npz`` in ``directory``,
    or in its ``linearised-from-KKKK/`` folder for the epochs after a linearisation at K."""
    k = linearised_from
    folder = Path(directory) if k is None or epoch <= k else Path(directory) / f"linearised-from-{k:04d}"
    return folder / f"{stem}-{epoch:04d}.npz"
