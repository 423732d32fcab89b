#!/usr/bin/env python3
"""The book's task runner: needs only Python >= 3.11 and the package registries.

    python3 tasks.py book             install, execute every notebook (default profile), render the site
    python3 tasks.py test             install, lint (ruff), run the unit tests and doctests, every
                                      notebook under `smoke` and the browser test of the built site
    python3 tasks.py run book/ntk_in_practice.py --profile paper    one notebook, any profile
    python3 tasks.py bench            the benchmarks in benchmarks/
    python3 tasks.py lock             resolve pyproject.toml into requirements/lock-cpu.txt and lock-gpu.txt

Everything is installed into a local virtual environment (.venv, or $NTK_NOTES_VENV) from the
lock file (exact versions, checked hashes); it is reinstalled only when the lock changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
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


def lock_path(gpu: bool = False) -> Path:
    """The lock file: every package at an exact version with its hashes (CPU or CUDA)."""
    return LOCKS / ("lock-gpu.txt" if gpu else "lock-cpu.txt")


def extras_for(gpu: bool) -> list[str]:
    return ["test", "gpu"] if gpu else ["test"]


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


def ensure_environment(gpu: bool = False) -> None:
    """The locked environment in VENV: every package of the lock at its exact version,
    checked against its hashes, and the package itself; reinstalled when the lock or
    pyproject.toml changes."""
    lock = lock_path(gpu)
    if not lock_is_current(gpu):
        sys.exit(f"{lock.relative_to(ROOT)} does not match pyproject.toml's dependencies: run python3 tasks.py lock")
    stamp_text = hashlib.sha256(lock.read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = VENV / ".ntk-notes-installed"
    if stamp.exists() and stamp.read_text() == stamp_text and PYTHON.exists():
        return
    if not PYTHON.exists():
        print(f"creating a virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    # uv installs the locked set (hashes checked) in seconds where pip takes half a minute;
    # it is the installer, not part of the environment's numbers.
    run(PYTHON, "-m", "pip", "install", "--quiet", "uv")
    uv_install = [PYTHON, "-m", "uv", "pip", "install", "--quiet", "--python", PYTHON, "--no-deps"]
    run(*uv_install, "--require-hashes", "-r", lock)
    run(*uv_install, "-e", ".")
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
    lock = sub.add_parser("lock", help="resolve pyproject.toml into requirements/lock-*.txt (needs the registries)")
    lock.add_argument("--constraints", help="a pip-style file of versions to keep, e.g. a pip freeze")
    args = parser.parse_args()

    if args.task == "lock":
        write_locks(args.constraints)
        return
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
