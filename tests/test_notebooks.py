"""Every notebook of the book, executed end to end by papermill under the smoke profile."""

import pytest

from ntk_notes import pipeline


@pytest.mark.notebooks
@pytest.mark.parametrize("source", pipeline.toc_notebooks(), ids=lambda p: p.stem)
def test_notebook_executes_under_smoke(source, tmp_path):
    execution = pipeline.execute_notebook(source, "smoke", tmp_path / f"{source.stem}.ipynb")
    assert (tmp_path / f"{source.stem}.ipynb").exists()
    print(f"{source.stem}: {execution.seconds} s, peak {execution.peak_memory_mb} MB")
