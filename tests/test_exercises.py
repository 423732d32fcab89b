"""The chapters' coding exercises (``ntk_notes.exercises``): every check accepts the
solution printed under its exercise, refuses a wrong answer, and reports an answer not yet
written without failing the chapter."""

import re
from pathlib import Path

import jupytext
import numpy as np
import pytest

from ntk_notes import exercises

BOOK = Path(__file__).resolve().parents[1] / "book"
SOLUTION = re.compile(r"````\{admonition\} Solution: (\w+)\n:class: dropdown\n```python\n(.*?)\n```\n````", re.S)


def chapter_exercises() -> dict[str, tuple[str, str]]:
    """{exercise name: (chapter, solution source)} from the chapters' folded solutions."""
    found = {}
    for source in sorted(BOOK.glob("*.py")):
        notebook = jupytext.read(source)
        text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
        code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
        for name, solution in SOLUTION.findall(text):
            assert f'exercises.check("{name}", {name})' in code, f"{source.name} never checks {name}"
            found[name] = (source.stem, solution)
    return found


SOLUTIONS = chapter_exercises()


def test_every_chapter_has_a_checked_coding_exercise_and_every_check_a_solution():
    chapters = {p.stem for p in BOOK.glob("*.py")}
    assert {chapter for chapter, _ in SOLUTIONS.values()} == chapters
    assert set(SOLUTIONS) == set(exercises.TASKS)


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_the_printed_solution_passes_its_check(name, capsys):
    exercises.check(name, solution(name))
    assert capsys.readouterr().out == f"{name}: correct.\n"


def solution(name: str):
    namespace = {}
    exec(compile(SOLUTIONS[name][1], f"solution of {name}", "exec"), namespace)
    return namespace[name]


@pytest.mark.parametrize("name", sorted(exercises.TASKS))
def test_a_wrong_answer_is_refused(name):
    right = solution(name)
    with pytest.raises(AssertionError, match=f"{name}: .* is off by up to 0.1"):
        exercises.check(name, lambda *args: np.asarray(right(*args)) + 0.1)
    with pytest.raises(AssertionError, match=f"{name}: .* has shape"):
        exercises.check(name, lambda *args: np.zeros((7, 7, 7)))


def test_an_answer_not_yet_written_is_reported_not_failed(capsys):
    def flow_predictor(k_test_train, k_train_train, y, t):
        raise NotImplementedError

    exercises.check("flow_predictor", flow_predictor)
    assert "not attempted yet" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no exercise named 'nope'; the exercises are: flow_predictor"):
        exercises.check("nope", flow_predictor)


def test_a_nearly_right_answer_is_refused_beyond_the_tolerance():
    right = solution("kernel_distance")
    off = lambda k1, k2: right(k1, k2) + 1e-4  # noqa: E731
    with pytest.raises(AssertionError, match="off by up to 0.0001"):
        exercises.check("kernel_distance", off)
