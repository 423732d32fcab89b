"""The house rules, checked by reading the source:

- the package's modules import each other without a cycle (imports inside functions
  count: they are a cycle that merely happens later);
- no file uses another module's underscore name (benchmarks and tests included): what is
  shared is public;
- no module is longer than ``MAX_MODULE_LINES``;
- chapters are thin: code cells fit ``MAX_COLUMNS`` characters (no sideways scrolling on
  the site) and a chapter holds at most ``MAX_CHAPTER_CODE`` lines of code besides its
  parameters cell.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ntk_notes"
MAX_MODULE_LINES = 400
MAX_COLUMNS = 88
MAX_CHAPTER_CODE = 90


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(tree: ast.AST, own: str) -> set[str]:
    """The package's modules that a module imports, anywhere in its body."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in MODULES)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative import
                base = ".".join(own.split(".")[: len(own.split(".")) - node.level + 1] + [node.module])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {m for m in found if m in MODULES and m != own}


def test_the_package_imports_without_a_cycle():
    graph = {name: imported_modules(ast.parse(path.read_text()), name) for name, path in MODULES.items()}
    # A package's __init__ may gather its submodules; that is not a cycle of ideas.
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(cycles)


def private_uses(path: Path) -> list[str]:
    """``module._name`` and ``from module import _name`` where the module is another
    module of the package."""
    tree = ast.parse(path.read_text())
    own = module_name(path) if path.is_relative_to(PACKAGE) else None
    aliases, uses = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in MODULES:
                    aliases[a.asname or a.name.split(".")[-1]] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ntk_notes"):
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if full in MODULES:
                    aliases[a.asname or a.name] = full
                elif a.name.startswith("_") and node.module != own:
                    uses.append(f"{path.relative_to(ROOT)}: from {node.module} import {a.name}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and aliases[node.value.id] != own
        ):
            uses.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
    return uses


def test_no_file_uses_another_modules_private_names():
    files = [
        *PACKAGE.rglob("*.py"),
        *(ROOT / "tests").glob("*.py"),
        *(ROOT / "benchmarks").glob("*.py"),
        *(ROOT / "book").glob("*.py"),
    ]
    uses = [use for path in files for use in private_uses(path)]
    assert not uses, "private names used across modules:\n" + "\n".join(uses)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_of_readable_size(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines (at most {MAX_MODULE_LINES})"


def chapter_code(path: Path) -> list[tuple[int, str, bool]]:
    """(line number, line, in the parameters cell) of every code line of a percent-format
    chapter."""
    lines, out = path.read_text().splitlines(), []
    in_code = in_parameters = False
    for number, line in enumerate(lines, start=1):
        if line.startswith("# %%"):
            in_code = "[markdown]" not in line
            in_parameters = "parameters" in line
            continue
        if in_code:
            out.append((number, line, in_parameters))
    return out


CHAPTERS = sorted((ROOT / "book").glob("*.py"))


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_code_fits_the_page(path):
    wide = [f"{path.name}:{n}: {len(line)} columns" for n, line, _ in chapter_code(path) if len(line) > MAX_COLUMNS]
    assert not wide, "\n".join(wide)


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapters_are_thin(path):
    code = [
        line
        for _, line, parameters in chapter_code(path)
        if not parameters and line.strip() and not line.lstrip().startswith("#")
    ]
    print(f"{path.stem}: {len(code)} lines of code")
    assert len(code) <= MAX_CHAPTER_CODE, f"{path.name} has {len(code)} lines of code (at most {MAX_CHAPTER_CODE})"
