"""The notebook pipeline: profiles, failures that name the notebook and the cell, reports."""

import json
import subprocess
import sys

import pytest

from ntk_notes import pipeline
from ntk_notes.profiles import PROFILES, SIZES, settings


def test_settings_fill_from_profile_and_overrides_win():
    cfg = settings("ntk_in_practice", "smoke", n_train=None, widths=(8, 16))
    assert cfg.n_train == SIZES["ntk_in_practice"]["smoke"]["n_train"]
    assert cfg.widths == (8, 16)
    assert cfg.profile == "smoke"


def test_every_notebook_has_every_profile_with_the_same_settings():
    for notebook, profiles in SIZES.items():
        assert set(profiles) == set(PROFILES), notebook
        names = {profile: set(sizes) for profile, sizes in profiles.items()}
        assert len({frozenset(n) for n in names.values()}) == 1, notebook


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: settings("ntk_in_practice", "huge"), "'huge'.*smoke, default, paper"),
        (lambda: settings("nope", "smoke"), "'nope'"),
        (lambda: settings("ntk_in_practice", "smoke", n_trian=5), "'n_trian'"),
    ],
)
def test_bad_settings_name_the_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_toc_lists_the_chapters_in_order():
    sources = pipeline.toc_notebooks()
    assert sources, "no jupytext notebook found in _toc.yml"
    assert all(s.suffix == ".py" and s.parent == pipeline.BOOK for s in sources)
    assert sources[0].stem == "ntk_in_practice"


FAILING = """# %% [markdown]
# # A notebook that fails

# %% tags=["parameters"]
profile = "default"

# %%
print("fine so far")

# %%
raise RuntimeError("boom from the third cell")
"""

PASSING = """# %% tags=["parameters"]
profile = "default"

# %%
print(f"running under {profile}")
"""


def test_failing_notebook_names_notebook_and_cell_and_writes_nothing(tmp_path):
    source = tmp_path / "broken.py"
    source.write_text(FAILING)
    output = tmp_path / "broken.ipynb"
    with pytest.raises(pipeline.NotebookFailed) as error:
        pipeline.execute_notebook(source, "smoke", output, timeout=300)
    message = str(error.value)
    assert "broken.py" in message and "'smoke'" in message
    assert "code cell 3 (`raise RuntimeError(" in message
    assert "raised RuntimeError: boom from the third cell" in message
    assert not output.exists()  # nothing half-written where the site would pick it up
    kept = pipeline.REPORT_DIR / "broken.failed.ipynb"
    assert kept.exists()
    kept.unlink()


def test_passing_notebook_gets_the_profile_and_a_report(tmp_path):
    import nbformat

    source = tmp_path / "ok.py"
    source.write_text(PASSING)
    output = tmp_path / "ok.ipynb"
    execution = pipeline.execute_notebook(source, "paper", output, timeout=300)
    notebook = nbformat.read(output, as_version=4)
    printed = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "running under paper" in printed
    first = next(c for c in notebook.cells if c.cell_type == "code")
    assert first.source == pipeline.colab_install_source()  # Colab's install cell, hidden on the site
    assert "remove-cell" in first.metadata.tags and not first.outputs  # outside Colab it does nothing
    assert execution.profile == "paper" and execution.seconds > 0
    assert 20 < execution.peak_memory_mb < 4000  # a Python kernel's resident memory, in MB


def test_an_execution_is_reused_only_for_its_own_source_and_profile(tmp_path):
    """CI's tests read the notebooks its smoke build executed: only one stamped with the
    source as it is now, the same profile and no other parameters."""
    source = tmp_path / "ok.py"
    source.write_text(PASSING)
    output = tmp_path / "ok.ipynb"
    pipeline.execute_notebook(source, "smoke", output, timeout=300)
    reused = pipeline.reusable_execution(source, "smoke", output)
    assert reused is not None and "running under smoke" in str(reused.cells)
    assert pipeline.reusable_execution(source, "default", output) is None
    assert pipeline.reusable_execution(source, "smoke", tmp_path / "absent.ipynb") is None
    with_parameters = tmp_path / "other.ipynb"
    pipeline.execute_notebook(source, "smoke", with_parameters, timeout=300, parameters={"x": 1})
    assert pipeline.reusable_execution(source, "smoke", with_parameters) is None
    source.write_text(PASSING + "\n# %%\nprint('edited since')\n")
    assert pipeline.reusable_execution(source, "smoke", output) is None


def test_time_limit_stops_a_notebook(tmp_path):
    source = tmp_path / "slow.py"
    source.write_text(PASSING + "\n# %%\nimport time\ntime.sleep(120)\n")
    with pytest.raises(pipeline.NotebookFailed, match="ran past its limit of 5 s"):
        pipeline.execute_notebook(source, "smoke", tmp_path / "slow.ipynb", timeout=5)
    assert not (tmp_path / "slow.ipynb").exists()


def test_unknown_profile_is_refused_by_the_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "ntk_notes.pipeline", "execute", "--profile", "huge"], capture_output=True, text=True
    )
    assert result.returncode != 0 and "huge" in result.stderr


def test_report_page_lists_each_notebook(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "REPORT_DIR", tmp_path)
    monkeypatch.setattr(pipeline, "REPORT_PAGE", tmp_path / "execution_report.md")
    short, long = tmp_path / "a.py", tmp_path / "b.py"
    short.write_text(PASSING)
    long.write_text("# %% [markdown]\n" + "# word\n" * 700 + PASSING)  # 701 words of prose
    runs = [pipeline.Execution(str(short), "smoke", 1.5, 300.0), pipeline.Execution(str(long), "smoke", 200.0, 410.0)]
    pipeline.write_report(runs, "smoke")
    page = (tmp_path / "execution_report.md").read_text()
    assert f"| {short} | smoke | 1.5 | 300 |" in page and "**201.5**" in page
    assert json.loads((tmp_path / "execution.json").read_text())["notebooks"][1]["peak_memory_mb"] == 410.0
    # The start page's table: reading time at 200 words a minute (at least one), this run's time.
    times = (tmp_path / "chapter_times.md").read_text()
    assert "| {doc}`a` | 1 min | 2 s | 300 MB |" in times
    assert "| {doc}`b` | 4 min | 3.3 min | 410 MB |" in times and "(`smoke`)" in times


def test_chapters_run_side_by_side_in_reading_order_and_a_failure_stops_the_book(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "REPORT_DIR", tmp_path / "report")
    monkeypatch.setattr(pipeline, "REPORT_PAGE", tmp_path / "execution_report.md")
    sources = [tmp_path / f"{name}.py" for name in ("first", "second")]
    for source in sources:
        source.write_text(PASSING)
    monkeypatch.setattr(pipeline, "toc_notebooks", lambda: sources)
    executions = pipeline.execute_book("smoke", jobs=2)
    assert [e.notebook for e in executions] == [str(s) for s in sources]
    assert all(s.with_suffix(".ipynb").exists() for s in sources)
    assert "2 notebooks at a time" in (tmp_path / "execution_report.md").read_text()

    sources[1].write_text(FAILING)
    with pytest.raises(pipeline.NotebookFailed, match="second.py failed"):
        pipeline.execute_book("smoke", jobs=2)
    (tmp_path / "report" / "second.failed.ipynb").unlink()
    with pytest.raises(ValueError, match="jobs must be a whole number of at least 1, not 0"):
        pipeline.execute_book("smoke", jobs=0)
