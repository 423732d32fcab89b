#!/usr/bin/env python3
"""The book's task runner: needs only Python >= 3.11 and the package registries.

    python3 tasks.py book             install, execute every notebook (default profile), render the site
    python3 tasks.py test             install, lint (ruff), run the unit tests and doctests, every
                                      notebook under `smoke` and the browser test of the built site
    python3 tasks.py run book/ntk_in_practice.py --profile paper    one notebook, any profile
    python3 tasks.py bench            the benchmarks in benchmarks/
    python3 tasks.py lock             resolve pyproject.toml into requirements/lock-cpu.txt and lock-gpu.txt
    python3 tasks.py install          the locked environment and the package into the Python running
                                      tasks.py (Colab's or Binder's kernel; the CUDA lock where
                                      nvidia-smi finds a GPU): what the chapters' Colab cell runs

Everything is installed into a local virtual environment (.venv, or $NTK_NOTES_VENV) from the
lock file (exact versions, checked hashes); it is reinstalled only when the lock changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("NTK_NOTES_VENV", ROOT / ".venv"))
PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
# neural-tangents' metadata requires TensorFlow, which it only needs for a submodule we
# never import (ntk_notes/_compat.py stubs it): it sits in the lock without its
# requirements, and the locked set is installed with --no-deps.
NEURAL_TANGENTS = "neural-tangents==0.6.5"
LOCKS = ROOT / "requirements"
DIGEST_LINE = "# pyproject-dependencies-sha256: "
PDF = ROOT / "_build" / "html" / "ntk-notes.pdf"


def lock_path(gpu: bool = False) -> Path:
    """The lock file: every package at an exact version with its hashes (CPU or CUDA)."""
    return LOCKS / ("lock-gpu.txt" if gpu else "lock-cpu.txt")


def extras_for(gpu: bool) -> list[str]:
    """The extras a lock holds: the tests' tools and Dask (the tests run a local cluster), and CUDA's jax."""
    return ["test", "distributed", "gpu"] if gpu else ["test", "distributed"]


def dependency_digest(extras: list[str]) -> str:
    """SHA-256 of what a lock is made from: pyproject.toml's dependencies and the extras'."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        "dependencies": project["dependencies"],
        **{extra: project["optional-dependencies"][extra] for extra in extras},
        "neural-tangents": NEURAL_TANGENTS,
    }
    return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()


def lock_is_current(gpu: bool = False) -> bool:
    path = lock_path(gpu)
    return path.exists() and path.read_text().startswith(DIGEST_LINE + dependency_digest(extras_for(gpu)))


def write_locks(constraints: str | None = None) -> None:
    """Resolve pyproject.toml (CPU, and with the CUDA extra) into lock files with hashes,
    using uv in the project's environment; neural-tangents is added without its
    requirements. ``constraints``: a pip-style file of versions to keep (e.g. a freeze)."""
    if not PYTHON.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    run(PYTHON, "-m", "pip", "install", "--quiet", "uv")
    version = subprocess.run(
        [str(PYTHON), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    common = ["--generate-hashes", "--no-header", "--no-annotate", "--python-version", version]
    uv = [str(PYTHON), "-m", "uv", "pip", "compile"]
    tangents = subprocess.run(
        uv + ["-", "--no-deps", *common], input=NEURAL_TANGENTS, capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    LOCKS.mkdir(exist_ok=True)
    for gpu in (False, True):
        extras = extras_for(gpu)
        command = uv + ["pyproject.toml", *[a for e in extras for a in ("--extra", e)], *common]
        if constraints:
            command += ["--constraint", constraints]
        resolved = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT).stdout
        header = (
            f"{DIGEST_LINE}{dependency_digest(extras)}\n"
            f"# Every package of the {'CUDA' if gpu else 'CPU'} environment (extras: {', '.join(extras)}) at an "
            f"exact version, with hashes, for CPython {version}.\n"
            "# Installed with pip --require-hashes --no-deps. Regenerate: python3 tasks.py lock\n"
        )
        partial = lock_path(gpu).with_suffix(".partial")
        partial.write_text(header + resolved + "# without its requirements (TensorFlow): see tasks.py\n" + tangents)
        partial.replace(lock_path(gpu))
        print(f"wrote {lock_path(gpu).relative_to(ROOT)}", flush=True)


def run(*command: str | Path) -> None:
    print("+", " ".join(map(str, command)), flush=True)
    result = subprocess.run([str(c) for c in command], cwd=ROOT)
    if result.returncode != 0:
        sys.exit(result.returncode)


def current_lock(gpu: bool = False) -> Path:
    """The lock file, or exit saying how to remake it when pyproject.toml has moved on."""
    lock = lock_path(gpu)
    if not lock_is_current(gpu):
        sys.exit(f"{lock.relative_to(ROOT)} does not match pyproject.toml's dependencies: run python3 tasks.py lock")
    return lock


def install_locked(python: Path, gpu: bool = False, editable: bool = True, compile_bytecode: bool = True) -> None:
    """Install into ``python``'s environment every package of the lock at its exact version,
    checked against its hashes, then the package itself (editable for a checkout's .venv;
    a plain install for a running Colab or Binder kernel, which reads no new .pth file).

    ``compile_bytecode``: compile every module once here, as pip does and uv does not. Where
    PYTHONDONTWRITEBYTECODE is set (this project's CI machines) every process would otherwise
    recompile jax, scipy and the rest: 8 s instead of 4 to import the stack, in every notebook
    kernel and test worker. A Colab kernel writes its own bytecode as it imports."""
    lock = current_lock(gpu)
    # uv installs the locked set (hashes checked) in seconds where pip takes half a minute;
    # it is the installer, not part of the environment's numbers.
    run(python, "-m", "pip", "install", "--quiet", "uv")
    uv_install = [python, "-m", "uv", "pip", "install", "--quiet", "--python", python, "--no-deps"]
    run(*uv_install, "--require-hashes", *(["--compile-bytecode"] if compile_bytecode else []), "-r", lock)
    run(*uv_install, *(["--editable"] if editable else []), ROOT)


def ensure_environment(gpu: bool = False) -> None:
    """The locked environment in VENV (install_locked), reinstalled when the lock or
    pyproject.toml changes."""
    stamp_text = hashlib.sha256(current_lock(gpu).read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = VENV / ".ntk-notes-installed"
    if stamp.exists() and stamp.read_text() == stamp_text and PYTHON.exists():
        return
    if not PYTHON.exists():
        print(f"creating a virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    install_locked(PYTHON, gpu)
    run(PYTHON, "-c", "import ntk_notes; print('ntk_notes imports cleanly')")
    stamp.write_text(stamp_text)


def ensure_browser() -> None:
    """Headless Chromium and its driver for the book's PDF and tests/test_site.py, from Debian's
    packages, in one line of output unless apt-get fails; NTK_NOTES_NO_BROWSER=1 skips the install.

    Selenium is pointed at these binaries so that it never downloads a browser itself."""
    if (shutil.which("chromium") or shutil.which("google-chrome")) and shutil.which("chromedriver"):
        return  # Debian's, or the Chrome of GitHub's Ubuntu runners (tests/sitecheck.py)
    skipped = "the book's PDF and the browser test (tests/test_site.py) will be skipped, or fail if CI is set"
    if os.environ.get("NTK_NOTES_NO_BROWSER"):
        print(f"NTK_NOTES_NO_BROWSER is set, so chromium is not installed: {skipped}", flush=True)
        return
    if not sys.platform.startswith("linux") or not shutil.which("apt-get"):
        print(f"chromium is not installed and there is no apt-get to install it: {skipped}", flush=True)
        return
    as_root = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if as_root and not shutil.which("sudo"):
        print(f"chromium is not installed and installing it needs root or sudo: {skipped}", flush=True)
        return
    print(
        "installing chromium and chromium-driver with apt-get for the PDF and the browser test (about a minute; "
        "to skip it: NTK_NOTES_NO_BROWSER=1, or tasks.py test -m 'not browser')",
        flush=True,
    )
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", "chromium-driver"],
    ):
        result = subprocess.run(as_root + command, cwd=ROOT, env=environment, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"{' '.join(as_root + command)} failed: {skipped}\n{result.stderr.strip()[-2000:]}", flush=True)
            return


def print_pdf() -> None:
    """The whole book as one PDF for handouts (``PDF``, linked from the start page): Jupyter Book's
    single-page HTML of the executed notebooks, printed by headless Chromium (the browser
    the tests use; Jupyter Book's own pdfhtml builder would download one, which fails
    offline, and its LaTeX route needs a TeX installation of several GB). Without Chromium
    the site is built without its PDF, except under CI, where that is an error."""
    browser = shutil.which("chromium") or shutil.which("google-chrome")
    if browser is None:
        message = f"chromium is not installed, so the book has no PDF ({PDF.name} is linked from the start page)"
        if os.environ.get("CI"):
            sys.exit(message)
        print(message, flush=True)
        return
    run(PYTHON.parent / "jupyter-book", "build", ".", "--builder", "singlehtml", "-W", "-n", "--keep-going")
    # The single page is written as the root document (book/intro.html) but links its
    # images and styles as if it sat at the top of the build: print it from there.
    site = ROOT / "_build" / "singlehtml"
    root = re.search(r"^root:\s*(\S+)", (ROOT / "_toc.yml").read_text(), re.MULTILINE).group(1)
    page = site / "whole-book.html"
    shutil.copyfile(site / f"{root}.html", page)
    partial = PDF.with_name(f".{PDF.name}.tmp")  # never a half-written PDF
    run(
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--log-level=3",  # not the errors of a browser without a session bus
        "--no-pdf-header-footer",
        "--virtual-time-budget=30000",  # MathJax typesets every formula before printing
        f"--print-to-pdf={partial}",
        page.as_uri(),
    )
    partial.replace(PDF)


def command_line() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="task", required=True)
    book = sub.add_parser("book", help="execute every notebook and render the site")
    book.add_argument("--profile", default="default", help="smoke, default or paper (default: %(default)s)")
    book.add_argument("--gpu", action="store_true", help="install the CUDA build of jax")
    book.add_argument("--jobs", default="1", help="notebooks executed at once (default: %(default)s)")
    test = sub.add_parser("test", help="unit tests and every notebook under the smoke profile")
    test.add_argument("pytest_args", nargs="*", help="passed on to pytest")
    one = sub.add_parser("run", help="execute one notebook with papermill")
    one.add_argument("notebook", help="a jupytext source under book/, e.g. book/ntk_in_practice.py")
    one.add_argument("--profile", default="default")
    one.add_argument("--gpu", action="store_true")
    sub.add_parser("bench", help="run the benchmarks and print their ratios")
    here = sub.add_parser("install", help="install the locked environment and the package into a running Python")
    here.add_argument("--python", default=sys.executable, help="its interpreter (default: the one running tasks.py)")
    here.add_argument("--cpu", action="store_true", help="the CPU lock even where nvidia-smi finds a GPU")
    lock = sub.add_parser("lock", help="resolve pyproject.toml into requirements/lock-*.txt (needs the registries)")
    lock.add_argument("--constraints", help="a pip-style file of versions to keep, e.g. a pip freeze")
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """The task and its options; everything after `test` goes to pytest as it is
    (``tasks.py test -m "not browser" -x``)."""
    if argv[:1] == ["test"] and argv[1:2] not in (["-h"], ["--help"]):
        return argparse.Namespace(task="test", pytest_args=argv[1:])
    return command_line().parse_args(argv)


def main() -> None:
    args = parse(sys.argv[1:])

    if args.task == "lock":
        write_locks(args.constraints)
        return
    if args.task == "install":
        gpu = not args.cpu and shutil.which("nvidia-smi") is not None
        install_locked(Path(args.python), gpu=gpu, editable=False, compile_bytecode=False)
        return
    ensure_environment(gpu=getattr(args, "gpu", False))
    if args.task == "book":
        run(PYTHON, "-m", "ntk_notes.pipeline", "execute", "--profile", args.profile, "--jobs", args.jobs)
        run(PYTHON.parent / "jupyter-book", "build", ".", "-W", "-n", "--keep-going")
        ensure_browser()
        print_pdf()
        print(f"the site is in {ROOT / '_build' / 'html' / 'index.html'}, its PDF in {PDF}")
    elif args.task == "test":
        ensure_browser()
        run(PYTHON, "-m", "ruff", "check", ".")
        run(PYTHON, "-m", "ruff", "format", "--check", ".")
        run(PYTHON, "-m", "pytest", *args.pytest_args)
    elif args.task == "run":
        run(PYTHON, "-m", "ntk_notes.pipeline", "execute", "--profile", args.profile, "--only", args.notebook)
    elif args.task == "bench":
        for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
            run(PYTHON, script)


if __name__ == "__main__":
    main()
