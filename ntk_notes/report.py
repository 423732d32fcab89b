"""Verdicts and settings that the chapters glue for the reproduction report.

Each chapter tests the parts of its claim on its own numbers and glues the outcome under
``<claim>_verdict`` and ``<claim>_basis``, and a one-line description of what it ran on under
``<chapter>_setting``. ``book/reproduction_report.md`` pastes them (myst-nb glue), so the
report says what this build measured and nothing written in advance.
"""

from __future__ import annotations

from collections.abc import Mapping

VERDICTS = ("reproduced", "partly reproduced", "not reproduced")


def verdict(parts: Mapping[str, bool]) -> str:
    """'reproduced' if every part of a claim held, 'not reproduced' if none did, else 'partly reproduced'."""
    if not parts:
        raise ValueError("a verdict needs at least one part of the claim to test; got none")
    held = [bool(value) for value in parts.values()]
    if all(held):
        return VERDICTS[0]
    return VERDICTS[1] if any(held) else VERDICTS[2]


def basis(parts: Mapping[str, bool]) -> str:
    """The parts of a claim with whether each held, e.g. 'transfer to lazy nets: yes; weaker when not lazy: no'."""
    return "; ".join(f"{part}: {'yes' if held else 'no'}" for part, held in parts.items())


def glue_verdict(claim: str, parts: Mapping[str, bool]) -> str:
    """Glue ``<claim>_verdict`` and ``<claim>_basis`` (hidden) and return the verdict."""
    from myst_nb import glue  # imported here: the package itself never needs a notebook

    result = verdict(parts)
    glue(f"{claim}_verdict", result, display=False)
    glue(f"{claim}_basis", basis(parts), display=False)
    return result


def glue_setting(chapter: str, profile: str, description: str) -> str:
    """Glue ``<chapter>_setting``: the profile and the data a chapter ran on, as one line."""
    from myst_nb import glue

    text = f"{profile} profile: {description}"
    glue(f"{chapter}_setting", text, display=False)
    return text
