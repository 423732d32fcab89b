"""Every notebook of the book, executed end to end by papermill under the smoke profile."""

import pytest

from ntk_notes import pipeline


@pytest.mark.notebooks
@pytest.mark.parametrize("source", pipeline.toc_notebooks(), ids=lambda p: p.stem)
def test_notebook_executes_under_smoke(source, tmp_path):
    execution = pipeline.execute_notebook(source, "smoke", tmp_path / f"{source.stem}.ipynb")
    assert (tmp_path / f"{source.stem}.ipynb").exists()
    print(f"{source.stem}: {execution.seconds} s, peak {execution.peak_memory_mb} MB")


@pytest.mark.notebooks
def test_the_authors_cifar10_section_runs_on_stand_in_data(tmp_path):
    """The `paper` profile's CIFAR-10 comparison cannot download here: run its code on MNIST
    digits 0 vs 1 instead, so that a GPU run does not meet it untested."""
    source = pipeline.BOOK / "adversarial_without_training.py"
    stand_in = {"dataset": "mnist-5k", "classes": [0, 1], "n_train": 100, "n_test": 20}
    output = tmp_path / "authors.ipynb"
    pipeline.execute_notebook(source, "smoke", output, parameters={"authors_setting": stand_in})
    assert "authors (CIFAR-10)" in output.read_text()
