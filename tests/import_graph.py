"""The import graph between the project's top-level packages (DESIGN.md's rooms), read from the
import statements of every module (those inside functions too), without importing anything.

    python -m tests.import_graph     # prints each edge with the modules behind it, then circles
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "rules", "fleet", "activities", "workflows", "starter", "worker", "bench", "tests")

Graph = dict[str, dict[str, set[str]]]  # package -> imported package -> modules that import it
# What the pure rules may import besides models (and one another): the standard library, pydantic.
RULES_MAY_IMPORT = frozenset({"models", "rules", "pydantic", *sys.stdlib_module_names})


def parsed(path: Path) -> ast.Module:
    """The module's syntax tree, parsed on a thread of its own: CPython 3.11 before 3.11.8 may
    raise "SystemError: AST constructor recursion depth mismatch" when ast.parse runs deep in a
    busy interpreter (a pytest worker), never on a fresh thread's stack."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(ast.parse, path.read_text(encoding="utf-8"), str(path)).result()


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
            for name in imported(parsed(path)):
                if name in PACKAGES and name != package:
                    graph[package].setdefault(name, set()).add(module)
    return graph


def outside_imports(package: str, allowed: frozenset[str], root: Path = ROOT) -> dict[str, set[str]]:
    """What the modules of `package` import beyond `allowed` (top-level names), and where."""
    found: dict[str, set[str]] = {}
    for path in sorted((root / package).rglob("*.py")):
        module = str(path.relative_to(root).with_suffix("")).replace("/", ".")
        for name in imported(parsed(path)):
            if name not in allowed:
                found.setdefault(name, set()).add(module)
    return found


def circle_through(start: str, graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A shortest chain of imports from `start` back to it, if there is one (breadth first:
    linear in the graph, fine for every module of the project)."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in sorted(graph.get(node, ())):
            if target == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(came_from[chain[-1]])
                return [*reversed(chain), start]
            if target not in came_from:
                came_from[target] = node
                queue.append(target)
    return None


def circles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Each circle once, as a path from its least member back to it."""
    found: dict[frozenset[str], list[str]] = {}
    for node in sorted(graph):
        if (chain := circle_through(node, graph)) and frozenset(chain) not in found:
            found[frozenset(chain)] = chain
    return list(found.values())


def module_of(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, module: str) -> set[str]:
    """Every name `module` imports, anywhere in it: `from a import b` names `a` and `a.b` (a
    module of a package, or only a name in `a`; the caller keeps the modules)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            source = ".".join(filter(None, (base, node.module)))
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def module_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the project's modules it imports (the tests import one another's helpers and
    are no part of it)."""
    paths = {
        module_of(path, root): path
        for package in PACKAGES
        if package != "tests"
        for path in (root / package).rglob("*.py")
    }
    return {
        module: (imported_modules(path, module) & paths.keys()) - {module} for module, path in paths.items()
    }


def is_test_module(name: str) -> bool:
    """A module pytest collects, or a conftest: `tests.cli.test_plan`, `tests.conftest`."""
    last = name.rpartition(".")[2]
    return name.startswith("tests.") and (last.startswith("test_") or last == "conftest")


def imported_test_modules(root: Path = ROOT) -> dict[str, set[str]]:
    """Module of tests/ -> the test modules and conftests it imports. Test modules stand alone:
    what they share is in tests/helpers/ (builders) and the conftests (fixtures, which pytest
    hands to a test by its name, never by an import)."""
    found: dict[str, set[str]] = {}
    for path in sorted((root / "tests").rglob("*.py")):
        if "histories" in path.relative_to(root).parts:
            continue
        module = module_of(path, root)
        if names := {name for name in imported_modules(path, module) if is_test_module(name)}:
            found[module] = names
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
