"""Execute the book's notebooks with papermill, in table-of-contents order.

    python -m ntk_notes.pipeline execute --profile smoke [--only book/x.py] [--timeout 1200]

Each chapter is a jupytext py:percent file under ``book/``; it is converted to .ipynb
(with a kernel set, or papermill refuses it), executed in a child process with the
profile as a parameter, and written next to its source only when it succeeded, so a
half-executed notebook never reaches the site. The first failure stops the run and names
the notebook and the cell. An execution report (notebook, profile, seconds, peak memory)
is written as JSON and as the Markdown page ``book/execution_report.md``.

Every executed notebook opens with Colab's install cell (``colab_install_source``), hidden
on the site: in Colab it clones the book and runs ``tasks.py install``; elsewhere it does
nothing. It is added here, in one place, rather than written into each chapter.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import yaml

from ntk_notes import report
from ntk_notes.profiles import PROFILES

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
REPORT_DIR = BOOK / "_report"
REPORT_PAGE = BOOK / "execution_report.md"
DEFAULT_TIMEOUT = 1800  # seconds per notebook


class NotebookFailed(RuntimeError):
    """A notebook raised, or ran past its time limit."""


class Execution(NamedTuple):
    notebook: str
    profile: str
    seconds: float
    peak_memory_mb: float


def toc_files(toc_path: Path = ROOT / "_toc.yml") -> list[str]:
    """Every page of a Jupyter Book ``_toc.yml`` (root, parts, chapters, sections) in reading
    order, as paths without extension, e.g. ``book/intro``; ``url:`` entries are skipped."""
    toc = yaml.safe_load(toc_path.read_text())
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({key: value for key, value in toc.items() if key != "root"})
    return [re.sub(r"\.(md|ipynb|py|rst)$", "", str(f)) for f in files]


def toc_notebooks(toc_path: Path = ROOT / "_toc.yml") -> list[Path]:
    """The jupytext sources named in ``_toc.yml``, in reading order."""
    return [ROOT / f"{entry}.py" for entry in toc_files(toc_path) if (ROOT / f"{entry}.py").exists()]


def execute_notebook(
    source: Path, profile: str, output: Path, timeout: float = DEFAULT_TIMEOUT, parameters: dict | None = None
) -> Execution:
    """Execute one jupytext source under ``profile`` and write the executed .ipynb to ``output``.

    Runs in a child process, so that its peak memory (the kernel's, a grandchild) is
    measured on its own and a time limit can stop it. Raises NotebookFailed.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    source, output = Path(source).resolve(), Path(output).resolve()
    if not source.exists():
        raise ValueError(f"no notebook source at {source}")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        partial = Path(scratch) / output.name
        command = [
            sys.executable,
            "-m",
            "ntk_notes.pipeline",
            "_child",
            str(source),
            str(partial),
            profile,
            json.dumps(parameters or {}),
        ]
        start = time.perf_counter()
        # A session of its own, so that a time-out stops the kernel (a grandchild) too.
        child = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=source.parent,
            env={**os.environ, "NTK_NOTES_PROGRESS": "0"},
            start_new_session=True,
        )
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            raise NotebookFailed(
                f"{_relative(source)} ran past its limit of {timeout:.0f} s under the {profile!r} profile"
            ) from None
        seconds = time.perf_counter() - start
        if child.returncode != 0:
            kept = ""
            if partial.exists():
                failed = REPORT_DIR / f"{source.stem}.failed.ipynb"
                failed.parent.mkdir(parents=True, exist_ok=True)
                _move(partial, failed)
                kept = f"\n(the partly executed notebook is kept as {_relative(failed)})"
            explained = stdout.strip()
            detail = explained if explained else f"the executor crashed:\n{stderr.strip()[-3000:]}"
            raise NotebookFailed(f"{_relative(source)} failed under the {profile!r} profile: {detail}{kept}")
        peak_mb = json.loads(stdout.strip().splitlines()[-1])["peak_memory_mb"]
        _move(partial, output)
    return Execution(_relative(source), profile, round(seconds, 1), round(peak_mb, 1))


def execution_stamp(source: Path, profile: str, parameters: dict | None = None) -> dict:
    """What an executed notebook records of its execution (in its metadata, ``ntk_notes``):
    the source's SHA-256, the profile and the parameters besides the profile."""
    digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()
    return {"source_sha256": digest, "profile": profile, "parameters": parameters or {}}


def reusable_execution(source: Path, profile: str, executed: Path):
    """The notebook at ``executed`` if it was executed from ``source`` as it is now, under
    ``profile`` and with no other parameters (so that a test may read it instead of executing
    the source again: CI's smoke build and its tests then execute every chapter once); None if
    it is absent or stamped otherwise."""
    import nbformat

    executed = Path(executed)
    if not executed.is_file():
        return None
    notebook = nbformat.read(executed, as_version=4)
    return notebook if notebook.metadata.get("ntk_notes") == execution_stamp(source, profile) else None


COLAB_TAGS = ["remove-cell", "colab-install"]


def colab_install_source(repository: str | None = None, checkout: str = "/content/ntk-notes") -> str:
    """The code of the cell that makes a chapter run in Colab: clone ``repository`` (the
    book's, from _config.yml) into ``checkout`` and install its locked environment and the
    package into the running kernel with ``tasks.py install``; nothing outside Colab."""
    if repository is None:
        repository = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    return f"""\
# Colab only (nothing happens elsewhere): fetch this book and install its locked
# environment into this runtime (the CUDA lock when the runtime has a GPU).
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess
    from importlib.metadata import version

    repository = {json.dumps(repository)}
    checkout = {json.dumps(checkout)}
    if not os.path.isdir(checkout):
        clone = ["git", "clone", "-q", "--depth=1", repository, checkout]
        subprocess.run(clone, check=True)
    subprocess.run([sys.executable, f"{{checkout}}/tasks.py", "install"], check=True)
    # A module imported before the install would shadow the version just installed.
    stale = [m for m in ("numpy", "scipy", "jax", "pandas") if m in sys.modules]
    stale = [m for m in stale if sys.modules[m].__version__ != version(m)]
    if stale:
        raise RuntimeError(
            f"{{stale}} changed version under this session: restart it (Runtime > Restart "
            "session) and run all cells again; the install is then a quick check"
        )
"""


def _move(source: Path, target: Path) -> None:
    """Move a finished file into place atomically, even from another file system."""
    staging = target.with_name(f".{target.name}.partial")
    shutil.copyfile(source, staging)
    os.replace(staging, target)


def _child(source: str, output: str, profile: str, parameters: str) -> None:
    """Runs in the child process: convert, execute, report peak memory as JSON."""
    import jupytext
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["ntk_notes"] = execution_stamp(Path(source), profile, json.loads(parameters))
    notebook.cells.insert(0, nbformat.v4.new_code_cell(colab_install_source(), metadata={"tags": COLAB_TAGS}))
    converted = Path(output).with_suffix(".source.ipynb")
    jupytext.write(notebook, converted, fmt="ipynb")
    try:
        papermill.execute_notebook(
            str(converted),
            output,
            parameters={"profile": profile, **json.loads(parameters)},
            kernel_name="python3",
            cwd=str(Path(source).parent),
            progress_bar=False,
            log_output=False,
        )
    except PapermillExecutionError as error:
        print(_describe_failure(output, error))
        sys.exit(1)
    # The kernel was our child and has been waited for: its peak RSS is in RUSAGE_CHILDREN
    # (kilobytes on Linux).
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"peak_memory_mb": peak_kb / 1024}))


def _describe_failure(executed_path: str, error) -> str:
    """Name the failing cell as the reader sees it in the source: its code-cell number,
    not counting papermill's injected parameters cell nor Colab's install cell, and its first line."""
    import nbformat

    cells = [
        cell
        for cell in nbformat.read(executed_path, as_version=4).cells  # minus papermill's error banners
        if "papermill-error-cell-tag" not in cell.metadata.get("tags", [])
    ]
    code_cells = [
        i
        for i, cell in enumerate(cells)
        if cell.cell_type == "code" and not {"injected-parameters", *COLAB_TAGS} & set(cell.metadata.get("tags", []))
    ]
    number = code_cells.index(error.cell_index) + 1 if error.cell_index in code_cells else error.cell_index
    first_line = next((line for line in cells[error.cell_index].source.splitlines() if line.strip()), "")
    return f"code cell {number} (`{first_line.strip()[:80]}`) raised {error.ename}: {error.evalue}"


def _relative(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def write_report(executions: list[Execution], profile: str, jobs: int = 1) -> None:
    """The execution report, as JSON (for tools) and as a page of the book, and the table of
    reading and running time per chapter that the start page includes."""
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    import jax

    machine = {
        "profile": profile,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "devices": ", ".join(sorted({d.platform for d in jax.devices()})),
        "cpu_count": os.cpu_count(),
        "jobs": jobs,
    }
    (REPORT_DIR / "execution.json").write_text(
        json.dumps({"machine": machine, "notebooks": [e._asdict() for e in executions]}, indent=2)
    )
    rows = "\n".join(f"| {e.notebook} | {e.profile} | {e.seconds:.1f} | {e.peak_memory_mb:.0f} |" for e in executions)
    total = sum(e.seconds for e in executions)
    page = f"""# Execution report

Every notebook in this book was executed by papermill before the site was rendered; this
page records that run. Profile **{profile}** on {machine["cpu_count"]} CPU cores
(jax {machine["jax"]}, devices: {machine["devices"]}, Python {machine["python"]}),
{machine["date"]}; {_at_a_time(jobs)}.

| notebook | profile | seconds | peak memory (MB) |
|---|---|---:|---:|
{rows}
| **total** | | **{total:.1f}** | |

Peak memory is the largest resident set size of the notebook's kernel process.
"""
    for path, text in (
        (REPORT_PAGE, page),
        (REPORT_DIR / "chapter_times.md", chapter_times(executions, profile, jobs)),
    ):
        tmp = path.with_name(f".{path.name}.tmp")  # never a half-written page
        tmp.write_text(text)
        tmp.replace(path)


def reading_minutes(source: Path, words_per_minute: int = 200) -> int:
    """Minutes to read a chapter's prose (the words of its Markdown cells), at least 1."""
    import jupytext

    cells = jupytext.read(source).cells
    words = sum(len(cell.source.split()) for cell in cells if cell.cell_type == "markdown")
    return max(1, round(words / words_per_minute))


def chapter_times(executions: list[Execution], profile: str, jobs: int = 1) -> str:
    """The start page's table of reading and running time per chapter, from this run."""
    rows = "\n".join(
        f"| {{doc}}`{Path(e.notebook).stem}` | {reading_minutes(ROOT / e.notebook)} min "
        f"| {f'{e.seconds:.0f} s' if e.seconds < 90 else f'{e.seconds / 60:.1f} min'} | {e.peak_memory_mb:.0f} MB |"
        for e in executions
    )
    return f"""| chapter | reading | running (`{profile}`) | peak memory |
|---|---:|---:|---:|
{rows}

Running times are this build's, under the `{profile}` profile ({_at_a_time(jobs)}); the
{{doc}}`execution report <execution_report>` has the machine.
"""


def _at_a_time(jobs: int) -> str:
    if jobs == 1:
        return "one notebook at a time"
    return f"{jobs} notebooks at a time, so each one's seconds include sharing the cores"


def execute_book(
    profile: str, only: str | None = None, timeout: float = DEFAULT_TIMEOUT, jobs: int = 1
) -> list[Execution]:
    """Execute the chapters of _toc.yml (or ``only`` one), ``jobs`` at a time (each in its own
    process; their times and memory are then measured side by side). The first failure
    stops the run: chapters not yet started are cancelled, those running are finished."""
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a whole number of at least 1, not {jobs!r}")
    sources = toc_notebooks()
    if only is not None:
        wanted = (ROOT / only).resolve() if not Path(only).is_absolute() else Path(only)
        if wanted not in sources:
            raise ValueError(
                f"{only!r} is not a notebook of _toc.yml; allowed: " + ", ".join(_relative(s) for s in sources)
            )
        sources = [wanted]

    def run(source: Path) -> Execution:
        print(f"executing {_relative(source)} under the {profile!r} profile ...", flush=True)
        execution = execute_notebook(source, profile, source.with_suffix(".ipynb"), timeout)
        report.export_figures(source.with_suffix(".ipynb"), REPORT_DIR / "figures")  # for the report page
        done = f"{execution.seconds:.1f} s, peak memory {execution.peak_memory_mb:.0f} MB"
        print(f"  {execution.notebook} done in {done}", flush=True)
        return execution

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        executions = list(pool.map(run, sources))  # reading order, whatever finished first
    finally:
        pool.shutdown(cancel_futures=True)  # after a failure, no other chapter starts
    if only is None:
        write_report(executions, profile, jobs)
    return executions


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        _child(*argv[1:])
        return
    parser = argparse.ArgumentParser(prog="python -m ntk_notes.pipeline")
    sub = parser.add_subparsers(dest="command", required=True)
    execute = sub.add_parser("execute", help="execute the notebooks of _toc.yml in order")
    execute.add_argument("--profile", default="default", choices=list(PROFILES))
    execute.add_argument("--only", help="one notebook source, e.g. book/ntk_in_practice.py")
    execute.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per notebook")
    execute.add_argument("--jobs", type=int, default=1, help="notebooks executed at once (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        execute_book(args.profile, args.only, args.timeout, args.jobs)
    except (NotebookFailed, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
