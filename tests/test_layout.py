"""The package's layout: imports flow one way, down the pipeline.

The graph is built from the source with ``ast`` (nothing is imported), so it
sees every import: at the top, inside functions and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "digest"
MAX_LINES = 650

# The ground floor: these import nothing of ours but what is listed.
GROUND_FLOOR = {
    "digest.errors": set(),
    "digest.recipients": set(),
    "digest.words": set(),
    "digest.moments": {"digest.errors"},
    "digest.images": set(),
    "digest.htmltext": set(),
    "digest.articles": {"digest.errors", "digest.moments", "digest.images", "digest.htmltext"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ours that ``path`` (module ``name``) imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from digest import suppressions` imports the module digest.suppressions.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import digest.cli.content` -> digest.cli.content
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imported(name, path, known) for name, path in found.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path that starts and ends at the same module, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_cycle_finder_names_a_circle_hidden_in_a_function_or_type_checking_block(tmp_path):
    # The check itself must see the kinds of import that hid the old circles.
    graph = {
        "digest.settings": {"digest.selection"},
        "digest.selection": {"digest.articles"},
        "digest.articles": {"digest.settings"},
        "digest.errors": set(),
    }
    assert find_cycle(graph) == ["digest.articles", "digest.settings", "digest.selection", "digest.articles"]
    source = tmp_path / "digest" / "rendering.py"
    source.parent.mkdir()
    source.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from digest.providers import Recipient\n"
        "def f():\n    from digest import settings\n"
    )
    known = {"digest.rendering", "digest.providers", "digest.settings"}
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "digest"
    try:
        assert imported("digest.rendering", source, known) == {"digest.providers", "digest.settings"}
    finally:
        PACKAGE = saved


@pytest.mark.parametrize("name", sorted(GROUND_FLOOR))
def test_the_ground_floor_imports_nothing_above_it(name):
    assert import_graph()[name] <= GROUND_FLOOR[name]


def test_nothing_imports_the_command_line():
    graph = import_graph()
    users = sorted(name for name, targets in graph.items() if not name.startswith("digest.cli") and any(t.startswith("digest.cli") for t in targets))
    assert users == ["digest.__main__"]


def test_no_file_of_the_package_is_over_650_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
