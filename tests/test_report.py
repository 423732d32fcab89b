"""The verdict rules of the reproduction report, and the report's references to the chapters."""

import base64
import json
import re

import pytest

from ntk_notes import pipeline, report


@pytest.mark.parametrize(
    "parts,expected",
    [
        # Booleans: True is "held", False is "failed".
        ({"a": True}, "reproduced"),
        ({"a": True, "b": True, "c": True}, "reproduced"),
        ({"a": True, "b": False}, "partly reproduced"),
        ({"a": False, "b": True, "c": False}, "partly reproduced"),
        ({"a": False}, "not reproduced"),
        ({"a": False, "b": False}, "not reproduced"),
        # Outcome strings, with "inconclusive" for a part whose interval straddles its threshold.
        ({"a": "held", "b": "held"}, "reproduced"),
        ({"a": "held", "b": "failed"}, "partly reproduced"),
        ({"a": "failed", "b": "failed"}, "not reproduced"),
        ({"a": "inconclusive"}, "inconclusive at this size"),
        ({"a": "held", "b": "held", "c": "inconclusive"}, "inconclusive at this size"),
        ({"a": "held", "b": "failed", "c": "inconclusive"}, "partly reproduced"),
        ({"a": "failed", "b": "inconclusive"}, "not reproduced"),
        # Booleans and strings mix.
        ({"a": True, "b": "inconclusive"}, "inconclusive at this size"),
        ({"a": False, "b": "held"}, "partly reproduced"),
    ],
)
def test_verdict_follows_the_parts_that_held(parts, expected):
    assert report.verdict(parts) == expected
    assert expected in report.VERDICTS


def test_verdict_refuses_a_claim_without_parts():
    with pytest.raises(ValueError, match="at least one part"):
        report.verdict({})


@pytest.mark.parametrize("bad", ["yes", "Held", "", None, 1])
def test_verdict_refuses_an_unknown_outcome(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        report.verdict({"a": "held", "b": bad})


def test_glue_claim_glues_the_deciding_part_with_its_interval(monkeypatch):
    import myst_nb

    from ntk_notes import claims, stats

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda key, value, display=True: glued.__setitem__(key, value))
    held = claims.interval_part("top part robust", stats.Estimate(0.7, 0.65, 0.75), 0.5)
    straddles = claims.interval_part("deep part useful", stats.Estimate(0.52, 0.45, 0.59), 0.5)
    result = claims.ClaimResult("3", (held, straddles), report.verdict({"a": "held", "b": "inconclusive"}), {})
    text = report.glue_claim("claim3", result)
    assert glued["claim3_verdict"] == "inconclusive at this size"
    assert glued["claim3_estimate"] == "0.520 [0.450, 0.590] (deep part useful)"
    assert glued["claim3_threshold"] == "> 0.5"
    assert "top part robust: 0.700 [0.650, 0.750], needs > 0.5: held" in glued["claim3_basis"]
    assert text.startswith("Claim 3 is **inconclusive at this size**")


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
    assert claims == {
        "claim1_verdict",
        "claim2_verdict",
        "claim3_features_verdict",
        "claim3_tradeoff_verdict",
        "claim4_verdict",
        "claim5_verdict",
        "claim6_verdict",
        "claim7_verdict",
    }


def test_chapters_decide_no_claim_themselves():
    """Verdict logic lives in ntk_notes.claims: a chapter only hands its measurements to a
    rule and glues the result with report.glue_claim."""
    glued = set()
    for source in pipeline.toc_notebooks():
        text = source.read_text()
        for forbidden in ("report.verdict(", "glue_verdict(", '_verdict", '):
            assert forbidden not in text, f"{source.name} decides a verdict itself ({forbidden!r})"
        glued |= set(re.findall(r'glue_claim\("(\w+)"', text))
    assert glued == {"claim1", "claim2", "claim3_features", "claim3_tradeoff", "claim4", "claim5", "claim6", "claim7"}


def test_export_figures_writes_each_glued_figure_of_a_notebook(tmp_path):
    png = b"\x89PNG\r\n\x1a\n not a real image, bytes are copied as they are"
    glued = {"application/papermill.record/image/png": base64.b64encode(png).decode()}
    notebook = tmp_path / "chapter.ipynb"
    notebook.write_text(
        json.dumps(
            {
                "cells": [
                    {"cell_type": "markdown", "source": "text"},
                    {
                        "cell_type": "code",
                        "outputs": [
                            {"output_type": "display_data", "data": {"image/png": "eA=="}, "metadata": {}},
                            {"output_type": "display_data", "data": glued, "metadata": SCRAPBOOK("a_figure")},
                            {
                                "output_type": "display_data",
                                "data": {"application/papermill.record/text/plain": "0.5"},
                                "metadata": SCRAPBOOK("a_number"),
                            },
                        ],
                    },
                ]
            }
        )
    )
    [path] = report.export_figures(notebook, tmp_path / "figures")
    assert path == tmp_path / "figures" / "chapter" / "a_figure.png"
    assert path.read_bytes() == png
    assert sorted(p.name for p in path.parent.iterdir()) == ["a_figure.png"]  # no temporary left


def SCRAPBOOK(name):  # noqa: N802  (what myst-nb's glue writes beside a glued output)
    return {"scrapbook": {"mime_prefix": "application/papermill.record/", "name": name}}


def test_every_figure_the_report_shows_is_one_a_chapter_glues():
    text = (pipeline.BOOK / "reproduction_report.md").read_text()
    shown = re.findall(r"```\{figure\} _report/figures/(\w+)/(\w+)\.png", text)
    assert len(shown) == 8
    for notebook, key in shown:
        source = (pipeline.BOOK / f"{notebook}.py").read_text()
        assert f"{{glue:figure}} {key}\n" in source, f"{notebook} shows no glued figure {key!r}"


def _glue_notebook(path, values: dict):
    """An executed notebook whose one code cell glued ``values`` (text, or bytes for a figure)."""
    outputs = []
    for name, value in values.items():
        data = (
            {"application/papermill.record/image/png": base64.b64encode(value).decode()}
            if isinstance(value, bytes)
            else {"application/papermill.record/text/plain": value}
        )
        outputs.append({"output_type": "display_data", "data": data, "metadata": SCRAPBOOK(name)})
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "outputs": outputs}]}))
    return path


def test_glue_changes_lists_each_value_that_moved_and_leaves_out_timings(tmp_path, capsys):
    same = {"rho": "'-0.75 (p = 0.0055)'", "figure": b"\x89PNG one", "run_seconds": "12.5"}
    before = _glue_notebook(tmp_path / "before.ipynb", same)
    again = _glue_notebook(tmp_path / "again.ipynb", {**same, "figure": b"\x89PNG redrawn", "run_seconds": "14.0"})
    assert report.glued_values(before) == {"rho": "'-0.75 (p = 0.0055)'", "figure": "<figure>"}
    assert report.glue_changes(before, again) == []  # a redrawn figure and another run time are no change
    assert report.main(["compare", str(before), str(again)]) == 0
    assert "every glued value is the same (2 keys)" in capsys.readouterr().out
    after = _glue_notebook(tmp_path / "after.ipynb", {"rho": "'-0.66 (p = 0.0145)'", "new_key": "3"})
    assert report.glue_changes(before, after) == [
        "figure: <figure> -> (none)",
        "new_key: (none) -> 3",
        "rho: '-0.75 (p = 0.0055)' -> '-0.66 (p = 0.0145)'",
    ]
    assert report.main(["compare", str(before), str(after)]) == 1
    assert "rho: '-0.75 (p = 0.0055)' -> '-0.66 (p = 0.0145)'" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        report.main(["compare", str(tmp_path / "missing.ipynb"), str(after)])
    assert f"no executed notebook at {tmp_path / 'missing.ipynb'}" in capsys.readouterr().err
