"""The kinds of change (rules/change_kinds.py) as tables: each named case an instance or the
upgrade's sources, and what the kind says of them; milliseconds each."""

from __future__ import annotations

import pytest

from models.change import Change, ExtensionRequest, ExtensionTarget
from models.fleet import InstanceExtension, InstanceView
from models.image import ImageReference
from models.status import RollbackMethod
from models.upgrade import UpgradeRequest
from rules.change_kinds import ChangeKind, ExtensionChange, OsImageChange, kind_asked, kind_of
from tests.helpers.ledgers import AGENT, PROBE
from tests.helpers.upgrades import V1, V2

OS = OsImageChange(V2.at_version(V2.version))
AGENT_ONLY = ExtensionChange([AGENT])
BOTH = ExtensionChange([AGENT, PROBE])
NONE_YET = ExtensionChange([])  # an extension upgrade before admission resolved its extensions
OTHER_IMAGE = ImageReference.parse("Contoso:app-os:2024:2024.12.01")
FAILED = "ProvisioningState/failed/1"


def instance(image: ImageReference = V1, **extensions: tuple[str, str] | str) -> InstanceView:
    """An instance on `image` with these extensions: name=version, or name=(version, status)."""
    installed = [
        InstanceExtension(name=name, type_handler_version=found, status="ProvisioningState/succeeded")
        if isinstance(found, str)
        else InstanceExtension(name=name, type_handler_version=found[0], status=found[1])
        for name, found in extensions.items()
    ]
    return InstanceView.model_validate(
        {
            "instanceId": "0",
            "imageReference": image.to_json(),
            "osDisk": {"name": "d0", "imageReference": image.to_json()},
        }
    ).model_copy(update={"extensions": installed})


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(Change(image=V2), OsImageChange(V2), id="an image: the OS image"),
        pytest.param(Change(extensions=[AGENT]), AGENT_ONLY, id="extensions"),
        pytest.param(Change(), NONE_YET, id="neither yet: extensions not resolved"),
        pytest.param(Change(image=V2, extensions=[AGENT]), OsImageChange(V2), id="an image wins"),
    ],
)
def test_kind_of(change: Change, expected: ChangeKind) -> None:
    assert kind_of(change) == expected


@pytest.mark.parametrize(
    ("request_", "expected", "action"),
    [
        pytest.param(
            UpgradeRequest(scale_set="web", target_image=V2), OsImageChange(V2), "a reimage", id="image"
        ),
        pytest.param(
            UpgradeRequest(scale_set="web", extensions=[ExtensionRequest(name="agent")]),
            NONE_YET,
            "an install",
            id="extensions, not resolved yet",
        ),
    ],
)
def test_kind_asked(request_: UpgradeRequest, expected: ChangeKind, action: str) -> None:
    assert kind_asked(request_) == expected
    assert kind_asked(request_).action == action


@pytest.mark.parametrize(
    ("kind", "view", "on_target"),
    [
        pytest.param(OS, instance(V2), True, id="image: the target version"),
        pytest.param(OS, instance(V1), False, id="image: an older version"),
        pytest.param(OS, instance(OTHER_IMAGE), False, id="image: another image at the version"),
        pytest.param(AGENT_ONLY, instance(agent="1.3.0"), True, id="extension: installed at its version"),
        pytest.param(AGENT_ONLY, instance(agent="1.2.0"), False, id="extension: an older version"),
        pytest.param(AGENT_ONLY, instance(agent=("1.3.0", FAILED)), False, id="extension: failed install"),
        pytest.param(AGENT_ONLY, instance(), False, id="extension: not installed"),
        pytest.param(BOTH, instance(agent="1.3.0", probe="2.0.0"), False, id="extensions: one of two"),
        pytest.param(BOTH, instance(agent="1.3.0", probe="2.1.0"), True, id="extensions: both"),
    ],
)
def test_on_target(kind: ChangeKind, view: InstanceView, on_target: bool) -> None:
    assert kind.on_target(view) is on_target


@pytest.mark.parametrize(
    ("kind", "view", "current", "before"),
    [
        pytest.param(OS, instance(V1, agent="1.2.0"), str(V1), None, id="image: the instance's image"),
        pytest.param(
            BOTH,
            instance(agent="1.2.0", probe=("2.1.0", FAILED)),
            "agent 1.2.0, probe 2.1.0",
            {"agent": "1.2.0"},
            id="extensions: a failed install is current, not a version to go back to",
        ),
        pytest.param(
            BOTH,
            instance(agent="1.2.0"),
            "agent 1.2.0, probe not installed",
            {"agent": "1.2.0"},
            id="missing",
        ),
    ],
)
def test_what_an_instance_has_and_a_rollback_brings_back(
    kind: ChangeKind, view: InstanceView, current: str, before: dict[str, str] | None
) -> None:
    assert kind.current(view) == current
    assert kind.versions_before(view) == before


@pytest.mark.parametrize(
    ("current", "versions"),
    [
        pytest.param(
            "agent 1.2.0, probe not installed", {"agent": "1.2.0", "probe": "not installed"}, id="both"
        ),
        pytest.param("agent 1.2.0", None, id="another change's text"),
        pytest.param(str(V1), None, id="an image"),
    ],
)
def test_versions_in_read_back_what_current_wrote(current: str, versions: dict[str, str] | None) -> None:
    assert BOTH.versions_in(current) == versions


@pytest.mark.parametrize(
    ("kind", "only", "target"),
    [
        pytest.param(OS, None, "2024.12.01", id="image: its version"),
        pytest.param(BOTH, None, "agent 1.3.0, probe 2.1.0", id="extensions: every one"),
        pytest.param(BOTH, [PROBE], "probe 2.1.0", id="extensions: those that moved"),
    ],
)
def test_target_is_what_an_instance_is_left_on(
    kind: ChangeKind, only: list[ExtensionTarget] | None, target: str
) -> None:
    assert kind.target(only) == target


@pytest.mark.parametrize(
    ("kind", "sources", "describe", "summary"),
    [
        pytest.param(
            OS,
            {str(V1): 3},
            "OS image Contoso:web-os:2024:2024.11.01 → 2024.12.01",
            "2024.11.01 → 2024.12.01",
            id="image: the same image, its version",
        ),
        pytest.param(
            OS,
            {str(OTHER_IMAGE): 2, str(V1): 1},
            f"OS image {OTHER_IMAGE} (+1 more) → {V2}",
            f"{OTHER_IMAGE} (+1 more) → 2024.12.01",
            id="image: from another image, the whole target",
        ),
        pytest.param(
            OS,
            {},
            f"OS image {V2} (nothing to upgrade)",
            "nothing to upgrade → 2024.12.01",
            id="image: nothing",
        ),
        pytest.param(
            BOTH,
            {"agent 1.2.0, probe 2.0.0": 2, "agent 1.2.1, probe not installed": 1},
            "extension agent 1.2.0/1.2.1 → 1.3.0, probe 2.0.0/not installed → 2.1.0",
            "extension agent 1.2.0, probe 2.0.0 (+1 more) → agent 1.3.0, probe 2.1.0",
            id="extensions: versions that differ listed with /",
        ),
        pytest.param(
            AGENT_ONLY,
            {},
            "extension agent 1.3.0 (nothing to upgrade)",
            "extension nothing to upgrade → agent 1.3.0",
            id="extensions: nothing",
        ),
        pytest.param(
            AGENT_ONLY,
            {"garbled": 1},
            "extension agent ? → 1.3.0",
            "extension garbled → agent 1.3.0",
            id="unread",
        ),
        pytest.param(
            NONE_YET,
            {},
            "extension: none admitted",
            "extension nothing to upgrade → ",
            id="extensions: none yet",
        ),
    ],
)
def test_describe_and_summary(kind: ChangeKind, sources: dict[str, int], describe: str, summary: str) -> None:
    assert kind.describe(sources) == describe
    assert kind.summary(list(sources)) == summary


@pytest.mark.parametrize(
    ("kind", "points", "method"),
    [
        pytest.param(OS, [], None, id="image: no instance read yet"),
        pytest.param(OS, [None, "image:x"], RollbackMethod.REIMAGE_TO_PREVIOUS_VERSION, id="image: Uniform"),
        pytest.param(OS, ["/disks/d0"], RollbackMethod.OS_DISK_SWAP, id="image: Flexible"),
        pytest.param(AGENT_ONLY, [], RollbackMethod.REINSTALL_PREVIOUS_VERSIONS, id="extensions: reinstall"),
        pytest.param(NONE_YET, ["/disks/d0"], None, id="extensions: none resolved yet"),
    ],
)
def test_rollback_method(kind: ChangeKind, points: list[str | None], method: RollbackMethod | None) -> None:
    assert kind.rollback_method(points) == method


@pytest.mark.parametrize(
    ("previous", "only", "missing", "back"),
    [
        pytest.param(
            {"agent": "1.2.0", "probe": "2.0.0"}, None, [], ["agent 1.2.0", "probe 2.0.0"], id="every one"
        ),
        pytest.param(
            {"agent": "1.2.0", "probe": "2.0.0"}, [PROBE], [], ["probe 2.0.0"], id="only those named"
        ),
        pytest.param(
            {"agent": "1.3.0", "probe": "2.0.0"}, None, [], ["probe 2.0.0"], id="one was on its target"
        ),
        pytest.param({"agent": "1.2.0"}, None, ["probe"], ["agent 1.2.0"], id="no previous version of one"),
        pytest.param(None, None, ["agent", "probe"], [], id="nothing read before"),
    ],
)
def test_reinstalls(
    previous: dict[str, str] | None, only: list[ExtensionTarget] | None, missing: list[str], back: list[str]
) -> None:
    names, targets = BOTH.reinstalls(previous, only)
    assert (names, [str(t) for t in targets]) == (missing, back)


@pytest.mark.parametrize(
    ("request_", "asked"),
    [
        pytest.param(UpgradeRequest(scale_set="web", target_image=V2), f"OS upgrade to {V2}", id="image"),
        pytest.param(
            UpgradeRequest(scale_set="web", extensions=[ExtensionRequest(name="agent", version="1.3.0")]),
            "extension upgrade of agent to 1.3.0",
            id="an extension",
        ),
    ],
)
def test_asked(request_: UpgradeRequest, asked: str) -> None:
    assert kind_asked(request_).asked(request_) == asked


LATEST = ImageReference.parse("Contoso:web-os:2024:latest")


@pytest.mark.parametrize(
    ("kind", "line", "all_done", "minutes"),
    [
        pytest.param(
            OS, f"target image: {OS.image}", "every instance is on the target image or skipped", 3, id="image"
        ),
        pytest.param(
            OsImageChange(LATEST.at_version("2024.12.01")),
            "target image: Contoso:web-os:2024:2024.12.01 ('latest' resolved)",
            "every instance is on the target image or skipped",
            3,
            id="latest, resolved",
        ),
        pytest.param(
            AGENT_ONLY,
            "change: agent 1.2.0 → 1.3.0 (asked: agent)",
            "every instance has these versions or is skipped",
            1,
            id="extensions",
        ),
    ],
)
def test_what_plan_says_of_each_kind(kind: ChangeKind, line: str, all_done: str, minutes: int) -> None:
    assert kind.plan_line("agent 1.2.0 → 1.3.0", "agent") == line
    assert kind.all_done == all_done
    assert kind.typical.total_seconds() == minutes * 60
