"""The lock files (requirements/lock-*.txt) agree with pyproject.toml: made from its current
dependency lists, every dependency pinned at a version its specifier allows, every package
with its hashes. `python3 tasks.py lock` regenerates them."""

import importlib.util
import re
import shutil
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("tasks", ROOT / "tasks.py")
tasks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tasks)

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^ \\;]+)(?:\s*;[^\\]*)?\s*\\?$")


def pins(path: Path) -> dict[str, tuple[str, int]]:
    """{canonical name: (version, number of hashes)} of a lock file."""
    found, current = {}, None
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            found[current] = (match.group(2), 0)
        elif line.strip().startswith("--hash=sha256:") and current:
            version, hashes = found[current]
            found[current] = (version, hashes + 1)
    return found


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_the_lock_matches_pyproject(gpu):
    path = tasks.lock_path(gpu)
    assert tasks.lock_is_current(gpu), f"{path.name} is stale: run python3 tasks.py lock"
    locked = pins(path)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in tasks.extras_for(gpu):
        wanted += project["optional-dependencies"][extra]
    wanted.append(tasks.NEURAL_TANGENTS)
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement.name} is not in {path.name}"
        version, _ = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), f"{name}=={version} breaks {text}"
    unhashed = [name for name, (_, hashes) in locked.items() if hashes == 0]
    assert not unhashed, f"packages without hashes in {path.name}: {unhashed}"
    assert "tensorflow" not in locked  # neural-tangents' requirement it does not need


def test_a_changed_dependency_makes_the_lock_stale(tmp_path, monkeypatch):
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    monkeypatch.setattr(tasks, "ROOT", tmp_path)
    monkeypatch.setattr(tasks, "LOCKS", tmp_path / "requirements")
    assert tasks.lock_is_current(False)
    text = (tmp_path / "pyproject.toml").read_text().replace('"scipy>=1.13"', '"scipy>=1.14"')
    (tmp_path / "pyproject.toml").write_text(text)
    assert not tasks.lock_is_current(False) and not tasks.lock_is_current(True)
