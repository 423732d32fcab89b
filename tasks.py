#!/usr/bin/env python3
"""The book's task runner: needs only Python >= 3.11 and the package registries.

    python3 tasks.py book             install, execute every notebook (default profile), render the site
    python3 tasks.py test             install, lint (ruff), run the unit tests and doctests, every
                                      notebook under `smoke` and the browser test of the built site
    python3 tasks.py run book/ntk_in_practice.py --profile paper    one notebook, any profile
    python3 tasks.py bench            the benchmarks in benchmarks/

Everything is installed into a local virtual environment (.venv, or $NTK_NOTES_VENV);
it is reinstalled only when pyproject.toml changes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("NTK_NOTES_VENV", ROOT / ".venv"))
PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
# neural-tangents' metadata requires TensorFlow, which it only needs for a submodule we
# never import (ntk_notes/_compat.py stubs it): install it without its requirements.
NEURAL_TANGENTS = "neural-tangents==0.6.5"


def run(*command: str | Path) -> None:
    print("+", " ".join(map(str, command)), flush=True)
    result = subprocess.run([str(c) for c in command], cwd=ROOT)
    if result.returncode != 0:
        sys.exit(result.returncode)


def ensure_environment(gpu: bool = False) -> None:
    extras = "test,gpu" if gpu else "test"
    stamp_text = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / ".ntk-notes-installed"
    if stamp.exists() and stamp.read_text() == stamp_text and PYTHON.exists():
        return
    if not PYTHON.exists():
        print(f"creating a virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", f".[{extras}]")
    run(PYTHON, "-m", "pip", "install", "--quiet", "--no-deps", NEURAL_TANGENTS)
    run(PYTHON, "-c", "import ntk_notes; print('ntk_notes imports cleanly')")
    stamp.write_text(stamp_text)


def ensure_browser() -> None:
    """Headless Chromium and its driver for tests/test_site.py, from Debian's packages.

    Selenium is pointed at these binaries so that it never downloads a browser itself."""
    if shutil.which("chromium") and shutil.which("chromedriver"):
        return
    skipped = "the browser test (tests/test_site.py) will be skipped, or fail if CI is set"
    if not sys.platform.startswith("linux") or not shutil.which("apt-get"):
        print(
            f"chromium and chromedriver are not installed and there is no apt-get to install them: {skipped}",
            flush=True,
        )
        return
    as_root = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if as_root and not shutil.which("sudo"):
        print(
            f"chromium and chromedriver are not installed and installing them needs root or sudo: {skipped}", flush=True
        )
        return
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"],
    ):
        print("+", " ".join(as_root + command), flush=True)
        if subprocess.run(as_root + command, cwd=ROOT, env=environment).returncode != 0:
            print(f"could not install chromium and chromium-driver with apt-get: {skipped}", flush=True)
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="task", required=True)
    book = sub.add_parser("book", help="execute every notebook and render the site")
    book.add_argument("--profile", default="default", help="smoke, default or paper (default: %(default)s)")
    book.add_argument("--gpu", action="store_true", help="install the CUDA build of jax")
    test = sub.add_parser("test", help="unit tests and every notebook under the smoke profile")
    test.add_argument("pytest_args", nargs="*", help="passed on to pytest")
    one = sub.add_parser("run", help="execute one notebook with papermill")
    one.add_argument("notebook", help="a jupytext source under book/, e.g. book/ntk_in_practice.py")
    one.add_argument("--profile", default="default")
    one.add_argument("--gpu", action="store_true")
    sub.add_parser("bench", help="run the benchmarks and print their ratios")
    args = parser.parse_args()

    ensure_environment(gpu=getattr(args, "gpu", False))
    if args.task == "book":
        run(PYTHON, "-m", "ntk_notes.pipeline", "execute", "--profile", args.profile)
        run(PYTHON.parent / "jupyter-book", "build", ".", "-W", "-n", "--keep-going")
        print(f"the site is in {ROOT / '_build' / 'html' / 'index.html'}")
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
