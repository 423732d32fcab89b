"""Verdicts and settings that the chapters glue for the reproduction report.

Each chapter applies its claim's rule (``ntk_notes.claims``) to its own numbers and glues
the result under ``<claim>_verdict``, ``<claim>_basis``, ``<claim>_estimate`` and
``<claim>_threshold``, and a one-line description of what it ran on under
``<chapter>_setting``. ``book/reproduction_report.md`` pastes them (myst-nb glue), so the
report says what this build measured and nothing written in advance.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "inconclusive at this size")
OUTCOMES = ("held", "failed", "inconclusive")


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
