"""The GitHub workflows are valid: each is a workflow GitHub accepts (checked against the
workflow schema that check-jsonschema carries, offline), the check refuses a broken one, and
every `tasks.py` command and script the workflows run exists in this repository."""

import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
spec = importlib.util.spec_from_file_location("tasks", ROOT / "tasks.py")
tasks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tasks)


def schema_errors(path: Path) -> str:
    """check-jsonschema's complaints about a workflow file; empty when it is valid."""
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)]
    result = subprocess.run(command, capture_output=True, text=True)
    return "" if result.returncode == 0 else result.stdout + result.stderr


def test_the_workflows_are_there():
    assert {path.name for path in WORKFLOWS} == {"ci.yml", "site.yml", "paper.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_a_workflow_is_valid_for_github(path):
    assert not schema_errors(path)


def test_the_schema_check_refuses_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  build:\n    steps:\n      - run: echo no runs-on\n")
    assert "'runs-on' is a required property" in schema_errors(broken)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_the_commands_a_workflow_runs_exist(path):
    steps = [step for job in yaml.safe_load(path.read_text())["jobs"].values() for step in job.get("steps", [])]
    lines = [line.strip() for step in steps for line in step.get("run", "").splitlines() if line.strip()]
    assert lines, f"{path.name} runs nothing"
    for line in lines:
        words = shlex.split(line)
        if words[:2] == ["python3", "tasks.py"]:
            tasks.parse(words[2:])  # exits (failing the test) on a task or option tasks.py lacks
        elif words[0] == "bash":
            assert (ROOT / words[1]).is_file(), f"{path.name} runs {words[1]}, which does not exist"
