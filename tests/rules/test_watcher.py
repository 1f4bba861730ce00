"""The automatic upgrades watcher's bookkeeping (rules/watcher.py) as tables: what a rollout's end
means for each enrolled set and extension, and when the watcher looks next; milliseconds each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models.automatic import (
    AutomaticSettings,
    AutomaticState,
    Enrollment,
    EnrollRequest,
    ExtensionEnrollment,
    RolloutEnded,
    RolloutExtension,
    RolloutSet,
    RolloutSetState,
    RolloutState,
    RolloutSummary,
    WithdrawRequest,
)
from models.fleet import ScaleSetView
from models.policy import UpgradePolicy
from rules import watcher

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
ENDED_AT = NOW - timedelta(minutes=5)
SET = RolloutSetState
ROLLOUT = RolloutState


def agent(**fields: object) -> ExtensionEnrollment:
    base: dict[str, object] = {
        "name": "agent",
        "publisher": "Contoso",
        "type": "Agent",
        "model_version": "1.2",
        "installed": ["1.2.0"],
    }
    return ExtensionEnrollment.model_validate({**base, **fields})


def state_of(extension: ExtensionEnrollment | None = None, **fields: object) -> AutomaticState:
    """One enrolled set, web, on image 1.0 (failed 0.9 before), with `extension` as agent, and
    the rollout r1 in flight for its image source."""
    enrollment = Enrollment(
        scale_set="web",
        policy=UpgradePolicy(),
        location="westeurope",
        applied_version="1.0",
        failed_version="0.9",
        extensions={"agent": extension} if extension else {},
    )
    return AutomaticState.model_validate(
        {
            "enrollments": {"web": enrollment},
            "running": {"src": RolloutSummary(workflow_id="r1", source="src", version="2.0")},
            **fields,
        }
    )


def ended(
    state: RolloutState, set_state: RolloutSetState, *, extension: bool = False, **set_fields: object
) -> RolloutEnded:
    rolled = RolloutExtension(publisher="Contoso", type_="Agent", major="1", names={"web": "agent"})
    return RolloutEnded(
        workflow_id="r1",
        source_key="src",
        version="2.0" if not extension else "1.3.0",
        state=state,
        sets=[
            RolloutSet.model_validate(
                {"scale_set": "web", "region": "westeurope", "state": set_state, **set_fields}
            )
        ],
        message=f"rollout {state.value}",
        end_time=ENDED_AT,
        extension=rolled if extension else None,
    )


@pytest.mark.parametrize(
    ("end", "applied", "failed"),
    [
        pytest.param(
            ended(ROLLOUT.COMPLETED, SET.COMPLETED), "2.0", None, id="completed: applied, failure forgotten"
        ),
        pytest.param(ended(ROLLOUT.FAULTED, SET.FAULTED), "1.0", "2.0", id="faulted: not again until newer"),
        pytest.param(
            ended(ROLLOUT.CANCELLED, SET.CANCELLED), "1.0", "2.0", id="cancelled: not again until newer"
        ),
        pytest.param(ended(ROLLOUT.FAULTED, SET.SKIPPED), "1.0", "2.0", id="skipped by a faulted rollout"),
        pytest.param(
            ended(ROLLOUT.CANCELLED, SET.SKIPPED), "1.0", "2.0", id="skipped by a cancelled rollout"
        ),
        pytest.param(
            ended(ROLLOUT.SUPERSEDED, SET.SKIPPED), "1.0", "0.9", id="skipped by a superseded rollout"
        ),
        pytest.param(ended(ROLLOUT.COMPLETED, SET.SKIPPED), "1.0", "0.9", id="skipped (opted out)"),
    ],
)
def test_an_image_rollouts_end_per_set(end: RolloutEnded, applied: str, failed: str | None) -> None:
    state = state_of()
    assert watcher.rollout_ended(state, end, now=NOW, retry_rolled_back=lambda: True) is True
    web = state.enrollments["web"]
    assert (web.applied_version, web.failed_version) == (applied, failed)
    assert state.running == {}
    assert [(r.workflow_id, r.state, r.end_time) for r in state.recent] == [("r1", end.state, ENDED_AT)]


@pytest.mark.parametrize(
    ("running_id", "recent", "current", "kept"),
    [
        pytest.param("r1", 0, True, 1, id="the rollout in flight ends"),
        pytest.param("r2", 0, False, 1, id="an older rollout's word: the one in flight stays"),
        pytest.param(
            "r1", watcher.RECENT_ROLLOUTS, True, watcher.RECENT_ROLLOUTS, id="recent ones are bounded"
        ),
    ],
)
def test_which_rollout_ended(running_id: str, recent: int, current: bool, kept: int) -> None:
    state = state_of(
        running={"src": RolloutSummary(workflow_id=running_id, source="src", version="2.0")},
        recent=[RolloutSummary(workflow_id=f"old{i}", source="src", version="1.0") for i in range(recent)],
    )
    assert (
        watcher.rollout_ended(state, ended(ROLLOUT.COMPLETED, SET.COMPLETED), now=NOW, retry_rolled_back=bool)
        is current
    )
    assert ("src" in state.running) is not current
    assert len(state.recent) == kept


def test_a_set_no_longer_enrolled_is_left_alone() -> None:
    state = state_of()
    del state.enrollments["web"]
    watcher.rollout_ended(state, ended(ROLLOUT.FAULTED, SET.FAULTED), now=NOW, retry_rolled_back=bool)
    assert state.enrollments == {} and len(state.recent) == 1


ROLLING = {"rollout_id": "r1", "rolling_version": "1.3.0"}
FAILED_ONCE = {"failed_version": "1.3.0", "failed_at": NOW - timedelta(days=4), "attempts": 1, "failure": "x"}


@pytest.mark.parametrize(
    ("before", "end", "retry_rolled_back", "after"),
    [
        pytest.param(
            {**ROLLING, **FAILED_ONCE},
            ended(ROLLOUT.COMPLETED, SET.COMPLETED, extension=True),
            False,
            {
                "applied_version": "1.3.0",
                "failed_version": None,
                "attempts": 0,
                "retry": True,
                "rollout_id": None,
            },
            id="completed: applied, failure forgiven",
        ),
        pytest.param(
            ROLLING,
            ended(ROLLOUT.COMPLETED, SET.COMPLETED, extension=True, rolled_back=["3"], end_time=ENDED_AT),
            True,
            {
                "applied_version": None,
                "failed_version": "1.3.0",
                "attempts": 1,
                "retry": True,
                "failed_at": ENDED_AT,
            },
            id="completed with instances rolled back: tried again",
        ),
        pytest.param(
            ROLLING,
            ended(ROLLOUT.COMPLETED, SET.COMPLETED, extension=True, rolled_back=["3"]),
            False,
            {"applied_version": "1.3.0", "failed_version": None},
            id="completed with instances rolled back, before retry-rolled-back: applied",
        ),
        pytest.param(
            ROLLING,
            ended(ROLLOUT.FAULTED, SET.FAULTED, extension=True, message="boom"),
            False,
            {
                "failed_version": "1.3.0",
                "attempts": 1,
                "retry": True,
                "failure": "boom",
                "failed_at": ENDED_AT,
            },
            id="faulted: tried again after the interval",
        ),
        pytest.param(
            {**ROLLING, **FAILED_ONCE},
            ended(ROLLOUT.FAULTED, SET.FAULTED, extension=True),
            False,
            {"failed_version": "1.3.0", "attempts": 2, "retry": True, "failure": "rollout Faulted"},
            id="faulted again: the second attempt",
        ),
        pytest.param(
            ROLLING,
            ended(ROLLOUT.CANCELLED, SET.CANCELLED, extension=True),
            False,
            {"failed_version": "1.3.0", "attempts": 1, "retry": False},
            id="cancelled: not tried again",
        ),
        pytest.param(
            ROLLING,
            ended(ROLLOUT.FAULTED, SET.SKIPPED, extension=True),
            False,
            {"failed_version": "1.3.0", "retry": True},
            id="skipped by a faulted rollout: as faulted",
        ),
        pytest.param(
            ROLLING,
            ended(ROLLOUT.SUPERSEDED, SET.SKIPPED, extension=True),
            False,
            {"failed_version": None, "applied_version": None, "rollout_id": None},
            id="skipped by a superseded rollout: nothing",
        ),
        pytest.param(
            {**ROLLING, "model_version": "2.0"},
            ended(ROLLOUT.COMPLETED, SET.COMPLETED, extension=True),
            False,
            {"applied_version": None, "rollout_id": None, "rolling_version": None},
            id="another major under that name now: not its outcome",
        ),
        pytest.param(
            {"rollout_id": "r0", "rolling_version": "1.2.5"},
            ended(ROLLOUT.FAULTED, SET.FAULTED, extension=True),
            False,
            {"rollout_id": "r0", "failed_version": "1.3.0"},
            id="another rollout moves it now: kept",
        ),
    ],
)
def test_an_extension_rollouts_end_per_set(
    before: dict[str, object], end: RolloutEnded, retry_rolled_back: bool, after: dict[str, object]
) -> None:
    state = state_of(agent(**before))
    watcher.rollout_ended(state, end, now=NOW, retry_rolled_back=lambda: retry_rolled_back)
    extension = state.enrollments["web"].extensions["agent"]
    assert {name: getattr(extension, name) for name in after} == after
    assert state.enrollments["web"].applied_version == "1.0"  # the image's bookkeeping is apart


def test_a_failure_without_an_end_time_is_dated_now() -> None:
    state = state_of(agent(**ROLLING))
    end = ended(ROLLOUT.FAULTED, SET.FAULTED, extension=True).model_copy(update={"end_time": None})
    watcher.rollout_ended(state, end, now=NOW, retry_rolled_back=bool)
    assert state.enrollments["web"].extensions["agent"].failed_at == NOW


@pytest.mark.parametrize(
    ("set_state", "rolled_back", "asked"),
    [
        pytest.param(SET.COMPLETED, ["3"], 1, id="completed with instances rolled back: asked"),
        pytest.param(SET.COMPLETED, [], 0, id="completed cleanly: not asked"),
        pytest.param(SET.FAULTED, ["3"], 0, id="faulted: not asked"),
    ],
)
def test_the_retry_rolled_back_patch_is_asked_only_where_it_matters(
    set_state: RolloutSetState, rolled_back: list[str], asked: int
) -> None:
    # It is a workflow.patched call: asking it elsewhere would change the watcher's history.
    calls: list[None] = []

    def retry_rolled_back() -> bool:
        calls.append(None)
        return True

    end = ended(ROLLOUT.COMPLETED, set_state, extension=True, rolled_back=rolled_back)
    watcher.rollout_ended(state_of(agent(**ROLLING)), end, now=NOW, retry_rolled_back=retry_rolled_back)
    assert len(calls) == asked


HOURS = timedelta(hours=1)


@pytest.mark.parametrize(
    ("extension", "wait"),
    [
        pytest.param(None, timedelta(minutes=15), id="nothing failed: the poll interval"),
        pytest.param(agent(), timedelta(minutes=15), id="an extension following"),
        pytest.param(
            agent(failed_version="1.3.0", failed_at=NOW - 3 * HOURS + timedelta(minutes=5)),
            timedelta(minutes=5),
            id="a retry due sooner",
        ),
        pytest.param(
            agent(failed_version="1.3.0", failed_at=NOW - 4 * HOURS),
            timedelta(minutes=15),
            id="a retry due already",
        ),
        pytest.param(
            agent(failed_version="1.3.0", failed_at=NOW - 3 * HOURS + timedelta(minutes=5), retry=False),
            timedelta(minutes=15),
            id="cancelled: no retry",
        ),
    ],
)
def test_next_look(extension: ExtensionEnrollment | None, wait: timedelta) -> None:
    state = state_of(extension, settings=AutomaticSettings(extension_retry_interval=3 * HOURS))
    assert watcher.next_look(state, NOW) == wait


VIEW = ScaleSetView.model_validate(
    {
        "name": "web",
        "id": "/x/web",
        "location": "westeurope",
        "imageReference": {"publisher": "p", "offer": "o", "sku": "s", "version": "latest"},
        "extensions": [
            {"name": "Agent", "publisher": "Contoso", "type": "Agent", "typeHandlerVersion": "1.2"},
            {"name": "probe", "publisher": "Contoso", "type": "Probe", "typeHandlerVersion": "2.0"},
        ],
        "instances": [],
    }
)


@pytest.mark.parametrize(
    ("previous", "asked", "expected"),
    [
        pytest.param(None, None, None, id="a request from before extensions were enrolled by name"),
        pytest.param(None, [], [], id="none asked"),
        pytest.param(None, ["agent"], ["Agent"], id="spelled as in the model"),
        pytest.param(["Agent"], ["probe", "AGENT"], ["Agent", "probe"], id="added to those enrolled, once"),
    ],
)
def test_enrolled_extensions(
    previous: list[str] | None, asked: list[str] | None, expected: list[str] | None
) -> None:
    before = (
        Enrollment(scale_set="web", policy=UpgradePolicy(), enrolled_extensions=previous)
        if previous
        else None
    )
    request = EnrollRequest(scale_set="web", extensions=asked)
    assert watcher.enrolled_extensions(before, request, VIEW) == expected


@pytest.mark.parametrize(
    ("extension", "request_", "expected"),
    [
        pytest.param(
            None, WithdrawRequest(scale_set="web", os_image=True), True, id="an image rollout, image off"
        ),
        pytest.param(
            None, WithdrawRequest(scale_set="web", extensions=["agent"]), False, id="an image rollout"
        ),
        pytest.param(
            "agent", WithdrawRequest(scale_set="web", extensions=["AGENT"]), True, id="its extension"
        ),
        pytest.param(
            "agent", WithdrawRequest(scale_set="web", extensions=["probe"]), False, id="another extension"
        ),
        pytest.param(
            "agent",
            WithdrawRequest(scale_set="web", os_image=True),
            False,
            id="an extension rollout, image off",
        ),
    ],
)
def test_withdrawn_from(extension: str | None, request_: WithdrawRequest, expected: bool) -> None:
    rolled = (
        RolloutExtension(publisher="Contoso", type_="Agent", major="1", names={"web": extension})
        if extension
        else None
    )
    running = RolloutSummary(
        workflow_id="r1", source="src", version="2.0", scale_sets=["web"], extension=rolled
    )
    assert watcher.withdrawn_from(running, request_) is expected
