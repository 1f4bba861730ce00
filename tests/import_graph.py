"""The import graph between the project's top-level packages (DESIGN.md's rooms), read from the
import statements of every module (those inside functions too), without importing anything.

    python -m tests.import_graph     # prints each edge with the modules behind it, then circles
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "rules", "fleet", "activities", "workflows", "starter", "worker", "bench", "tests")

Graph = dict[str, dict[str, set[str]]]  # package -> imported package -> modules that import it
# What the pure rules may import besides models (and one another): the standard library, pydantic.
RULES_MAY_IMPORT = frozenset({"models", "rules", "pydantic", *sys.stdlib_module_names})


def imported(tree: ast.AST) -> Iterator[str]:
    """The top-level names of every absolute import in a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def import_graph(root: Path = ROOT) -> Graph:
    graph: Graph = {package: {} for package in PACKAGES}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = str(path.relative_to(root).with_suffix("")).replace("/", ".")
            for name in imported(ast.parse(path.read_text(), str(path))):
                if name in PACKAGES and name != package:
                    graph[package].setdefault(name, set()).add(module)
    return graph


def outside_imports(package: str, allowed: frozenset[str], root: Path = ROOT) -> dict[str, set[str]]:
    """What the modules of `package` import beyond `allowed` (top-level names), and where."""
    found: dict[str, set[str]] = {}
    for path in sorted((root / package).rglob("*.py")):
        module = str(path.relative_to(root).with_suffix("")).replace("/", ".")
        for name in imported(ast.parse(path.read_text(), str(path))):
            if name not in allowed:
                found.setdefault(name, set()).add(module)
    return found


def circles(graph: Graph) -> list[list[str]]:
    """Each circle between packages once, as a path that returns to its first package."""
    found: list[list[str]] = []

    def walk(path: list[str]) -> None:
        for nxt in sorted(graph.get(path[-1], {})):
            if nxt == path[0]:
                found.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:  # a circle is reported from its least package
                walk([*path, nxt])

    for package in sorted(graph):
        walk([package])
    return found


def main() -> None:
    graph = import_graph()
    for package in PACKAGES:
        for target, modules in sorted(graph[package].items()):
            shown = ", ".join(sorted(modules)[:3]) + (", ..." if len(modules) > 3 else "")
            print(f"{package} -> {target}  ({shown})")
    for circle in circles(graph):
        print("circle:", " -> ".join(circle))


if __name__ == "__main__":
    main()
