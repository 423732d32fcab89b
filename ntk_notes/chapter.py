"""The opening and the closing of every chapter, so that a chapter holds only its science.

A chapter's papermill parameters cell names ``profile``, ``data_dir`` and each of its
settings (``None``: take the profile's value). ``begin`` reads them from the notebook's
namespace, so no setting is named twice, applies the book's figure style, starts the
chapter's timer and glues the one-line description of what the chapter ran on; ``task``
draws the chapter's task from those settings; ``figure`` hands a figure to the site's
numbered, captioned ``{glue:figure}``; ``end`` glues and prints the chapter's running time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import SimpleNamespace

from ntk_notes import data, plotting, report
from ntk_notes.profiles import SIZES, settings


def begin(notebook: str, namespace: Mapping, key: str, describe: Callable[[SimpleNamespace], str]) -> SimpleNamespace:
    """The chapter's settings: ``notebook``'s profile ``namespace["profile"]``, overridden by
    every setting of that profile that the namespace (the parameters cell) sets to a value
    other than None, plus ``data_dir`` (None if the namespace has none). Also applies the
    figure style, starts the timer read by ``end`` and glues ``<key>_setting``: the profile
    and ``describe(settings)``. Returns the settings; ``settings.profile`` is the profile's
    name."""
    if "profile" not in namespace:
        raise ValueError(f"the notebook {notebook!r} sets no 'profile' in its parameters cell")
    profile = namespace["profile"]
    names = SIZES.get(notebook, {}).get(profile, {})
    cfg = settings(notebook, profile, **{name: namespace.get(name) for name in names})
    cfg.data_dir = namespace.get("data_dir")
    cfg.started = time.perf_counter()
    plotting.use_style()
    print(report.glue_setting(key, profile, describe(cfg)))
    return cfg


def task(cfg: SimpleNamespace, seed: int | None = None) -> data.Task:
    """The chapter's task from its settings: ``data.make_task`` of ``cfg.dataset`` with its
    classes, sizes, image size and data folder, drawn with ``seed`` (default: ``cfg.seed``)."""
    return data.make_task(
        cfg.dataset,
        classes=cfg.classes,
        n_train=cfg.n_train,
        n_test=cfg.n_test,
        seed=cfg.seed if seed is None else seed,
        image_size=cfg.image_size,
        data_dir=cfg.data_dir,
    )


def end(cfg: SimpleNamespace, key: str) -> None:
    """Glue ``<key>_chapter_seconds`` (hidden) and print the chapter's running time since
    ``begin``. Returns nothing, so that a chapter's last line shows no bare number."""
    from myst_nb import glue

    seconds = time.perf_counter() - cfg.started
    glue(f"{key}_chapter_seconds", round(seconds, 1), display=False)
    print(f"chapter ran in {seconds:.0f} s under the {cfg.profile!r} profile")


def figure(key: str, fig) -> None:
    """Glue ``fig`` (a matplotlib figure or a seaborn grid) as ``key`` for a
    ``{glue:figure}`` directive, which gives it its number, caption and alt text on the site.
    The cell that calls this is tagged ``remove-output``: a reader running the notebook still
    sees the figure there, the site shows it once, captioned. Text smaller than
    ``plotting.SMALLEST_TEXT_PT`` is refused: it would be illegible on a phone."""
    from myst_nb import glue

    fig = getattr(fig, "figure", fig)
    small = plotting.too_small_text(fig)
    if small:
        raise ValueError(
            f"figure {key!r} has text below {plotting.SMALLEST_TEXT_PT:g} pt, illegible on a phone: "
            + ", ".join(small[:5])
        )
    glue(key, fig, display=False)
