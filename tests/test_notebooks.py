"""Every notebook of the book, executed end to end by papermill under the smoke profile.

With ``NTK_NOTES_EXECUTED`` set to a folder of notebooks executed in the same run (CI sets it
to the smoke build's ``book/``), a notebook stamped as executed from its current source under
``smoke`` is read from there instead of being executed a second time."""

import os
from pathlib import Path

import nbformat
import pytest
from test_data import write_mnist_folder
from test_report import report_references

from ntk_notes import data, pipeline


def glued_keys(notebook) -> set[str]:
    """The names a notebook glued with myst_nb.glue."""
    return {
        output.metadata["scrapbook"]["name"]
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if "scrapbook" in output.get("metadata", {})
    }


@pytest.mark.notebooks
@pytest.mark.parametrize("source", pipeline.toc_notebooks(), ids=lambda p: p.stem)
def test_notebook_executes_under_smoke(source, tmp_path):
    folder = os.environ.get("NTK_NOTES_EXECUTED")
    executed = pipeline.reusable_execution(source, "smoke", Path(folder) / f"{source.stem}.ipynb") if folder else None
    if executed is not None:
        print(f"{source.stem}: executed by this run's smoke build ({folder})")
    else:
        execution = pipeline.execute_notebook(source, "smoke", tmp_path / f"{source.stem}.ipynb")
        executed = nbformat.read(tmp_path / f"{source.stem}.ipynb", as_version=4)
        print(f"{source.stem}: {execution.seconds} s, peak {execution.peak_memory_mb} MB")
    # The reproduction report pastes these values; a missing one would fail the book build.
    missing = report_references().get(source.stem, set()) - glued_keys(executed)
    assert not missing, f"{source.stem} did not glue what the reproduction report pastes: {sorted(missing)}"


@pytest.mark.notebooks
def test_a_chapter_reads_its_dataset_from_data_dir(tmp_path, monkeypatch):
    """The `data_dir` parameter reaches the data: with an empty download cache and every
    download sent to a dead proxy, a chapter runs on MNIST read from a folder of IDX files
    (written from the offline digits)."""
    folder = tmp_path / "mnist"
    write_mnist_folder(folder)
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    output = tmp_path / "robustness_tradeoff.ipynb"
    pipeline.execute_notebook(
        pipeline.BOOK / "robustness_tradeoff.py",
        "smoke",
        output,
        parameters={"dataset": "mnist", "data_dir": str(folder)},
    )
    assert "mnist, digits 3 vs 5" in output.read_text()
    assert not (tmp_path / "cache" / "mnist").exists()


@pytest.mark.notebooks
def test_the_dynamics_chapter_runs_the_paper_profiles_cnn_on_ten_classes(tmp_path):
    """`paper` trains the authors' CNN on all ten CIFAR-10 classes (a full class x class
    kernel), with plain FGSM and no warm-up; run that code path here on ten MNIST digits
    with a tiny version of that CNN."""
    stand_in = {
        "classes": None,
        "network": "authors_cnn",
        "widths": [2, 2, 4, 4, 4, 4],
        "n_train": 100,
        "n_test": 20,
        "image_size": 8,
        "epochs": 2,
        "probe_size": 6,
        "top_k": 3,
        "warmup_epochs": 0,
        "fgsm_random_start": False,
    }
    output = tmp_path / "dynamics.ipynb"
    pipeline.execute_notebook(pipeline.BOOK / "adversarial_training_dynamics.py", "smoke", output, parameters=stand_in)
    assert "AUTHORS_CNN (2, 2, 4, 4, 4, 4)" in output.read_text()
