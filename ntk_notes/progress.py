"""Progress bars for long work: text bars (tqdm) for a reader running a notebook or a
script; silent when ``NTK_NOTES_PROGRESS=0``, which the book's pipeline sets so that
executed notebooks do not store bar redraws in their outputs."""

from __future__ import annotations

import os

from tqdm import tqdm


def progress_enabled() -> bool:
    return os.environ.get("NTK_NOTES_PROGRESS", "1") != "0"


def progress(iterable=None, *, enabled: bool | None = None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)``; ``enabled=None`` follows NTK_NOTES_PROGRESS (default on)."""
    if enabled is None:
        enabled = progress_enabled()
    return tqdm(iterable, disable=not enabled, leave=False, **kwargs)
