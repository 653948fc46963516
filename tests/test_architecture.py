"""The shape of the package: subpackages in layers, each importing only those below it, no import
cycle, no module over 500 lines. Imports inside functions and under TYPE_CHECKING count too: a lazy
import still ties the two modules together."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lorakit"
# Lowest first. A subpackage may import its own modules and anything in an earlier layer; packages in
# the same layer do not import each other.
LAYERS = [
    {"lorakit", "findings"},
    {"errors"},  # a GateError carries findings
    {"util"},  # util.files raises the errors' UserError
    {"config"},
    {"dataset"},
    {"machine"},
    {"models", "watch"},
    {"plan"},
    {"run", "publish", "kohya_gui"},
    {"batch"},
    {"cli"},
    {"__main__"},
]
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The lorakit modules `path` imports, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, set(mods)) - {name} for name, path in mods.items()}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_of(package: str) -> int:
    for index, layer in enumerate(LAYERS):
        if package in layer:
            return index
    raise AssertionError(f"lorakit.{package} is in no layer of tests/test_architecture.py; add it where it belongs")


def test_every_import_between_subpackages_points_down():
    upward = []
    for module, imported in graph().items():
        mine = package_of(module)
        for target in imported:
            theirs = package_of(target)
            if theirs != mine and layer_of(theirs) >= layer_of(mine):
                upward.append(f"{module} imports {target}")
    assert upward == []


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_is_over_500_lines(name):
    lines = len(modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by idea"
