"""The chapters run where the launch buttons take them. Colab's install cell (the first code
cell of every executed chapter) does nothing outside Colab; in a fresh virtual environment
standing in for Colab's runtime it clones the book and installs the locked stack and the
package from the registries, and a chapter then executes there under `smoke`.

The clone is made from this working tree (committed or not) instead of GitHub, which this
machine cannot reach: the cell's code is otherwise the one every chapter carries."""

import os
import subprocess
import sys
import venv
from pathlib import Path

import nbformat

from ntk_notes import pipeline

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "book/ntk_in_practice.py"  # the quickest chapter under smoke


def test_the_install_cell_does_nothing_outside_colab(tmp_path):
    checkout = tmp_path / "checkout"
    exec(compile(pipeline.colab_install_source(str(ROOT), str(checkout)), "colab-cell", "exec"), {})
    assert "google.colab" not in sys.modules and not checkout.exists()


def working_tree_repository(target: Path) -> Path:
    """A git repository holding this working tree's files (tracked and new, not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes((ROOT / name).read_bytes())
    identity = ["-c", "user.name=test", "-c", "user.email=test@localhost"]
    for command in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-q", "-m", "tree"]):
        subprocess.run(["git", *command], cwd=target, check=True)
    return target


def test_the_colab_install_cell_makes_a_fresh_environment_run_a_chapter(tmp_path):
    repository = working_tree_repository(tmp_path / "repository")
    checkout = tmp_path / "content" / "ntk-notes"
    runtime = tmp_path / "runtime"
    venv.EnvBuilder(with_pip=True).create(runtime)
    python = runtime / "bin" / "python"
    # The runtime's own tools first on PATH, as in Colab; jupyter finds its kernel there.
    environment = {**os.environ, "PATH": f"{runtime / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    environment.pop("VIRTUAL_ENV", None)
    cell = tmp_path / "colab_cell.py"
    cell.write_text(pipeline.colab_install_source(str(repository), str(checkout)))
    as_in_colab = (
        "import sys, types; sys.modules['google.colab'] = types.ModuleType('google.colab'); "
        f"exec(compile(open({str(cell)!r}).read(), 'colab-cell', 'exec'))"
    )
    subprocess.run([python, "-c", as_in_colab], env=environment, check=True, cwd=tmp_path)
    assert (checkout / "tasks.py").is_file()

    where = subprocess.run(
        [python, "-c", "import ntk_notes; print(ntk_notes.__file__)"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.strip()
    assert Path(where).is_relative_to(runtime), f"ntk_notes imported from {where}, not the fresh environment"

    source, executed = checkout / CHAPTER, tmp_path / "executed.ipynb"
    subprocess.run([python, "-m", "jupytext", "--quiet", "--to", "ipynb", source], env=environment, check=True)
    subprocess.run(
        [
            python,
            "-m",
            "papermill",
            "--no-progress-bar",
            "-p",
            "profile",
            "smoke",
            "-k",
            "python3",
            "--cwd",
            source.parent,
            source.with_suffix(".ipynb"),
            executed,
        ],
        env={**environment, "NTK_NOTES_PROGRESS": "0"},
        check=True,
        capture_output=True,
    )
    notebook = nbformat.read(executed, as_version=4)
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors and notebook.metadata.papermill.parameters == {"profile": "smoke"}
