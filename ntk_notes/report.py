"""Verdicts and settings that the chapters glue for the reproduction report.

Each chapter applies its claim's rule (``ntk_notes.claims``) to its own numbers and glues
the result under ``<claim>_verdict``, ``<claim>_basis``, ``<claim>_estimate`` and
``<claim>_threshold``, and a one-line description of what it ran on under
``<chapter>_setting``. ``book/reproduction_report.md`` pastes them (myst-nb glue), so the
report says what this build measured and nothing written in advance.

``python -m ntk_notes.report compare BEFORE AFTER`` lists the glued values that differ
between two executed notebooks: what a change did to the numbers a chapter states.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "inconclusive at this size")
OUTCOMES = ("held", "failed", "inconclusive")
GLUED_PNG = "application/papermill.record/image/png"  # how myst-nb's glue stores a figure
GLUED_TEXT = "application/papermill.record/text/plain"  # and the text of any other value


def _outcome(value: bool | str) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "held" if value else "failed"
    if value not in OUTCOMES:
        raise ValueError(f"a part's outcome must be True, False or one of {', '.join(OUTCOMES)}; got {value!r}")
    return value


def verdict(parts: Mapping[str, bool | str]) -> str:
    """The verdict of a claim from the outcomes of its parts (True / False, or "held",
    "failed", "inconclusive"): 'reproduced' if every part held; 'partly reproduced' if some
    held and some failed; 'not reproduced' if some failed and none held; otherwise (some
    part inconclusive, none failed) 'inconclusive at this size'. A false 'reproduced' is
    worse than an 'inconclusive'."""
    if not parts:
        raise ValueError("a verdict needs at least one part of the claim to test; got none")
    outcomes = [_outcome(value) for value in parts.values()]
    if all(o == "held" for o in outcomes):
        return VERDICTS[0]
    if "failed" in outcomes:
        return VERDICTS[1] if "held" in outcomes else VERDICTS[2]
    return VERDICTS[3]


def glue_claim(key: str, result) -> str:
    """Glue a rule's result (``ntk_notes.claims.ClaimResult``) for the report, hidden:
    ``<key>_verdict``, ``<key>_basis`` (every part), ``<key>_estimate`` (the deciding part's
    estimate and interval) and ``<key>_threshold`` (what that part needs). Returns the
    result's Markdown, for the chapter to show."""
    from myst_nb import glue

    deciding = result.deciding
    glue(f"{key}_verdict", result.verdict, display=False)
    glue(f"{key}_basis", "; ".join(part.describe() for part in result.parts), display=False)
    if deciding.is_count:
        estimate, needs = f"{deciding.estimate:.0%} passed", "all must pass"
    else:
        interval = "" if not np.isfinite(deciding.low) else f" [{deciding.low:.3f}, {deciding.high:.3f}]"
        estimate = f"{deciding.estimate:.3f}{interval}"
        needs = f"{'>' if deciding.above else '<'} {deciding.threshold:.3g}"
    glue(f"{key}_estimate", f"{estimate} ({deciding.name})", display=False)
    glue(f"{key}_threshold", needs, display=False)
    return result.markdown()


def glue_setting(chapter: str, profile: str, description: str) -> str:
    """Glue ``<chapter>_setting``: the profile and the data a chapter ran on, as one line."""
    from myst_nb import glue

    text = f"{profile} profile: {description}"
    glue(f"{chapter}_setting", text, display=False)
    return text


def glued_outputs(notebook: Path) -> dict[str, dict]:
    """The output data of everything glued in the executed ``notebook`` (myst-nb's ``glue``), by key."""
    glued = {}
    for cell in json.loads(Path(notebook).read_text())["cells"]:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                glued[name] = output.get("data", {})
    return glued


def glued_figures(notebook: Path) -> dict[str, bytes]:
    """The PNG of every figure glued in the executed ``notebook``, by key."""
    glued = glued_outputs(notebook).items()
    return {name: base64.b64decode(data[GLUED_PNG]) for name, data in glued if GLUED_PNG in data}


def glued_values(notebook: Path) -> dict[str, str]:
    """Every value glued in the executed ``notebook`` as the text the page shows (a figure:
    "<figure>"), by key; timings (keys ending in "seconds") left out, since no two runs agree."""
    values = {}
    for name, data in glued_outputs(notebook).items():
        if not name.endswith("seconds"):
            text = data.get(GLUED_TEXT, "")
            values[name] = "<figure>" if GLUED_PNG in data else text if isinstance(text, str) else "".join(text)
    return values


def glue_changes(before: Path, after: Path) -> list[str]:
    """One line per key whose glued value differs between two executed notebooks (a chapter
    before and after a change), "key: before -> after"; a key only one glued shows "(none)"."""
    old, new = glued_values(before), glued_values(after)
    return [
        f"{key}: {old.get(key, '(none)')} -> {new.get(key, '(none)')}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


def main(argv: list[str] | None = None) -> int:
    """``python -m ntk_notes.report compare BEFORE.ipynb AFTER.ipynb``: print the glued values
    that differ; exit status 1 if any does (0: every number the page shows is the same)."""
    parser = argparse.ArgumentParser(prog="python -m ntk_notes.report", description=main.__doc__)
    parser.add_argument("command", choices=["compare"])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    for path in (args.before, args.after):
        if not path.is_file():
            parser.error(f"no executed notebook at {path}")
    changes = glue_changes(args.before, args.after)
    print("\n".join(changes) if changes else f"every glued value is the same ({len(glued_values(args.after))} keys)")
    return 1 if changes else 0


def export_figures(notebook: Path, directory: Path) -> list[Path]:
    """Write each figure glued in ``notebook`` to ``directory/<notebook's stem>/<key>.png``, each
    file whole or not at all, so that a page outside the notebook (the reproduction report;
    myst-nb's ``{glue:figure}`` reads only its own notebook) can show it as a numbered,
    captioned figure. Returns the paths written."""
    folder = Path(directory) / Path(notebook).stem
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for key, png in glued_figures(notebook).items():
        path = folder / f"{key}.png"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(png)
        tmp.replace(path)
        written.append(path)
    return written


if __name__ == "__main__":
    sys.exit(main())
