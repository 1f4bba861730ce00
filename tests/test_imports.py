"""The project's modules import one another without a circle. Every import counts, also one inside
a function: a lazy import hides a circle (and breaks when the order of imports changes), it does
not open it."""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Every package of the project (the tests import one another's helpers and are no part of it).
PACKAGES = sorted(init.parent.name for init in ROOT.glob("*/__init__.py") if init.parent.name != "tests")


def module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, module: str) -> set[str]:
    """Every name `module` imports, anywhere in it: `from a import b` names `a` and `a.b` (a
    module of a package, or only a name in `a`; the caller keeps the modules)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            source = ".".join(filter(None, (base, node.module)))
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    paths = {module_of(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    return {module: (imported(path, module) & paths.keys()) - {module} for module, path in paths.items()}


def circle_through(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """A shortest chain of imports from `start` back to it, if there is one."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        module = queue.popleft()
        for target in sorted(graph[module]):
            if target == start:
                chain = [module]
                while chain[-1] != start:
                    chain.append(came_from[chain[-1]])
                return [*reversed(chain), start]
            if target not in came_from:
                came_from[target] = module
                queue.append(target)
    return None


def test_the_graph_covers_the_command_line_and_its_lazy_imports():
    graph = import_graph()
    assert {"starter", "workflows", "models", "fleet", "worker"} <= set(PACKAGES)
    assert "starter.upgrade_commands" in graph["starter.cli"]
    # `fleet serve` imports the emulator's server inside the command.
    assert "fleet.emulator.server" in graph["starter.fleet_commands"]


def test_no_module_imports_itself_through_others():
    graph = import_graph()
    circles = {frozenset(chain): chain for module in graph if (chain := circle_through(module, graph))}
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(chain) for chain in circles.values())
