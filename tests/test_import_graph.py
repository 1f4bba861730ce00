"""DESIGN.md's rooms, as the import statements have them: the pure rules import only models, and
no two packages import each other, however indirectly (python -m tests.import_graph shows why).
And the tests' own rule: no test module imports another, nor a conftest."""

from __future__ import annotations

import pytest

from tests.import_graph import (
    RULES_MAY_IMPORT,
    Graph,
    circles,
    import_graph,
    imported_test_modules,
    is_test_module,
    module_graph,
    outside_imports,
)

pytestmark = pytest.mark.fast  # `make test-fast`: pure, in-process


def test_the_rules_import_only_models() -> None:
    graph = import_graph()
    assert set(graph["rules"]) <= {"models"}, {p: sorted(m) for p, m in graph["rules"].items()}
    assert graph["models"] == {}
    # Nor any library but pydantic: no temporalio, no I/O (the standard library is theirs).
    assert outside_imports("rules", RULES_MAY_IMPORT) == {}


def test_no_circle_between_packages() -> None:
    assert circles(import_graph()) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        pytest.param({"a": {"b": {"a.x"}}, "b": {}}, [], id="a line"),
        pytest.param({"a": {"b": {"a.x"}}, "b": {"a": {"b.y"}}}, [["a", "b", "a"]], id="two packages"),
        pytest.param(
            {"a": {"b": {"a.x"}}, "b": {"c": {"b.y"}}, "c": {"a": {"c.z"}}},
            [["a", "b", "c", "a"]],
            id="three packages, reported once",
        ),
        pytest.param(
            {"a": {"b": {"a.x"}, "c": {"a.x"}}, "b": {"d": {"b.y"}}, "c": {"d": {"c.z"}}, "d": {}},
            [],
            id="a diamond is no circle",
        ),
    ],
)
def test_circles(graph: Graph, expected: list[list[str]]) -> None:
    assert circles(graph) == expected


def test_no_module_imports_itself_through_others() -> None:
    """Lazy imports inside functions count: they hide a circle (and break when the order of
    imports changes), they do not open it."""
    found = circles(module_graph())
    assert not found, "import circles:\n" + "\n".join(" -> ".join(chain) for chain in found)


def test_the_module_graph_sees_the_command_line_and_its_lazy_imports() -> None:
    graph = module_graph()
    assert "starter.upgrade_commands" in graph["starter.cli"]
    # `fleet serve` imports the emulator's server inside the command.
    assert "fleet.emulator.server" in graph["starter.fleet_commands"]


def test_no_test_module_imports_another_or_a_conftest() -> None:
    """What tests share lives in tests/helpers/ and the conftests: a test module imported by another
    runs its module-level code twice under two names, and ties the two files' moves together."""
    found = imported_test_modules()
    assert not found, "\n".join(
        f"{module} imports {', '.join(sorted(names))}" for module, names in found.items()
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("tests.cli.test_plan", True, id="a test module"),
        pytest.param("tests.conftest", True, id="the conftest"),
        pytest.param("tests.cli.conftest", True, id="a directory's conftest"),
        pytest.param("tests.helpers.commands", False, id="a helper"),
        pytest.param("tests.helpers.commands.call", False, id="a name in a helper"),
        pytest.param("tests.import_graph", False, id="a tool"),
        pytest.param("starter.test_data", False, id="outside tests"),
    ],
)
def test_what_counts_as_a_test_module(name: str, expected: bool) -> None:
    assert is_test_module(name) is expected
