"""The verdict rules of the reproduction report, and the report's references to the chapters."""

import re

import pytest

from ntk_notes import pipeline, report


@pytest.mark.parametrize("parts,expected", [
    ({"a": True}, "reproduced"),
    ({"a": True, "b": True, "c": True}, "reproduced"),
    ({"a": True, "b": False}, "partly reproduced"),
    ({"a": False, "b": True, "c": False}, "partly reproduced"),
    ({"a": False}, "not reproduced"),
    ({"a": False, "b": False}, "not reproduced"),
])
def test_verdict_follows_the_parts_that_held(parts, expected):
    assert report.verdict(parts) == expected


def test_verdict_refuses_a_claim_without_parts():
    with pytest.raises(ValueError, match="at least one part"):
        report.verdict({})


def test_basis_names_every_part_with_its_outcome():
    assert report.basis({"transfers": True, "weaker when not lazy": False}) == \
        "transfers: yes; weaker when not lazy: no"


def report_references() -> dict[str, set[str]]:
    """{chapter: glue keys} that book/reproduction_report.md pastes from each chapter."""
    text = (pipeline.BOOK / "reproduction_report.md").read_text()
    references: dict[str, set[str]] = {}
    for doc, key in re.findall(r"\{glue(?::\w+)?\}`([\w/]+)\.ipynb::(\w+)", text):
        references.setdefault(doc, set()).add(key)
    for key, doc in re.findall(r"```\{glue\} (\w+)\n:doc: ([\w/]+)\.ipynb", text):
        references.setdefault(doc, set()).add(key)
    return references


def test_the_report_pastes_from_every_chapter_with_a_claim():
    references = report_references()
    chapters = {source.stem for source in pipeline.toc_notebooks()}
    assert set(references) <= chapters, f"the report names pages that are not chapters: {set(references) - chapters}"
    claims = {key for keys in references.values() for key in keys if key.endswith("_verdict")}
    assert claims == {"claim1_verdict", "claim2_verdict", "claim3_features_verdict", "claim3_tradeoff_verdict",
                      "claim4_verdict", "claim5_verdict", "claim6_verdict", "claim7_verdict"}
