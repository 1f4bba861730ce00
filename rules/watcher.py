"""The automatic upgrades watcher's bookkeeping (pure): what a rollout's end means for each
enrolled set and extension, when the watcher looks next, what an enrollment enrolls, and the Web
UI's current details. AutomaticOSUpgradesWorkflow keeps one `AutomaticState` and calls these with
the time (`now`) and its patch decisions, so they are table-tested in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from models.automatic import (
    AutomaticState,
    Enrollment,
    EnrollRequest,
    ExtensionEnrollment,
    RolloutEnded,
    RolloutSet,
    RolloutSetState,
    RolloutState,
    RolloutSummary,
    WithdrawRequest,
    image_source_key,
)
from models.fleet import ScaleSetView
from models.markdown import table
from models.policy import format_duration
from rules.presentation import escaped, workflow_link

# Ended rollouts kept for `upgradectl rollout list`.
RECENT_ROLLOUTS = 50


def rollout_ended(
    state: AutomaticState, ended: RolloutEnded, *, now: datetime, retry_rolled_back: Callable[[], bool]
) -> bool:
    """What a rollout came to, per set: the version applied, or failed (not again until a newer
    version; an extension's faulted one after the retry interval); the rollout joins the recent
    ones. `retry_rolled_back` is the retry-rolled-back patch's decision, asked only where it
    matters (an extension completed with instances rolled back). True if it was the rollout in
    flight for its source (which no longer holds it)."""
    running = state.running.get(ended.source_key)
    current = running is not None and running.workflow_id == ended.workflow_id
    if current:
        del state.running[ended.source_key]
    if ended.extension is not None:
        extension_ended(state, ended, now=now, retry_rolled_back=retry_rolled_back)
    stopped = ended.state in (RolloutState.FAULTED, RolloutState.CANCELLED)
    for done in ended.sets if ended.extension is None else []:
        enrollment = state.enrollments.get(done.scale_set)
        if enrollment is None:
            continue
        if done.state == RolloutSetState.COMPLETED:
            enrollment.applied_version = ended.version
            enrollment.failed_version = None
        elif done.state in (RolloutSetState.FAULTED, RolloutSetState.CANCELLED) or (
            stopped and done.state == RolloutSetState.SKIPPED
        ):
            enrollment.failed_version = ended.version  # not again until a newer version
    summary = (running or RolloutSummary(workflow_id=ended.workflow_id, source="", version="")).model_copy(
        update={"state": ended.state, "message": ended.message, "end_time": ended.end_time}
    )
    state.recent = [*state.recent, summary][-RECENT_ROLLOUTS:]
    return current


def extension_ended(
    state: AutomaticState, ended: RolloutEnded, *, now: datetime, retry_rolled_back: Callable[[], bool]
) -> None:
    """Per set, what an extension rollout came to: applied; faulted (tried again after the
    retry interval); cancelled (not tried again until a newer version or `auto enable`)."""
    rolled = ended.extension
    assert rolled is not None
    for done in ended.sets:
        enrollment = state.enrollments.get(done.scale_set)
        name = rolled.names.get(done.scale_set)
        extension = enrollment.extension(name) if enrollment is not None and name else None
        if extension is None:
            continue
        if extension.rollout_id == ended.workflow_id:
            extension.rollout_id = extension.rolling_version = None
        if extension.full_type.lower() != rolled.full_type.lower() or extension.major != rolled.major:
            continue  # the model changed meanwhile: another extension under that name now
        completed = done.state == RolloutSetState.COMPLETED
        if completed and done.rolled_back and retry_rolled_back():
            failed_on(extension, ended, done, retry=True, now=now)  # its rolled-back instances
            continue
        if completed:
            extension.applied_version = ended.version
            extension.forgive()
            continue
        faulted = done.state == RolloutSetState.FAULTED or (
            ended.state == RolloutState.FAULTED and done.state == RolloutSetState.SKIPPED
        )
        cancelled = done.state == RolloutSetState.CANCELLED or (
            ended.state == RolloutState.CANCELLED and done.state == RolloutSetState.SKIPPED
        )
        if faulted or cancelled:
            failed_on(extension, ended, done, retry=faulted, now=now)


def failed_on(
    extension: ExtensionEnrollment, ended: RolloutEnded, done: RolloutSet, *, retry: bool, now: datetime
) -> None:
    """An extension rollout failed on this set (faulted, cancelled, or completed with instances
    rolled back): when, why, the how-many-th time, and whether it is tried again (after the
    retry interval)."""
    again = extension.failed_version == ended.version and extension.retry
    extension.attempts = extension.attempts + 1 if again else 1
    extension.failed_version = ended.version
    extension.failed_at = done.end_time or ended.end_time or now
    extension.failure = done.message or ended.message or ended.state.value
    extension.retry = retry


def next_look(state: AutomaticState, now: datetime) -> timedelta:
    """The poll interval, or less when a failed extension version is due to be tried again
    sooner."""
    settings = state.settings
    wait = settings.poll_interval
    for enrollment in state.enrollments.values():
        for extension in enrollment.extensions.values():
            retry_at = extension.retry_at(settings.extension_retry_interval)
            if retry_at is not None and retry_at > now:
                wait = min(wait, retry_at - now)
    return wait


def enrolled_extensions(
    previous: Enrollment | None, request: EnrollRequest, view: ScaleSetView
) -> list[str] | None:
    """The extensions an enrollment enrolls by name: those enrolled already and those asked for
    (spelled as in the model). None for a request from before extensions were enrolled one by
    one: then those with enableAutomaticUpgrade follow, as they did."""
    if request.extensions is None:
        return None
    names = list(previous.enrolled_extensions or []) if previous is not None else []
    for asked in request.extensions:
        model = next(e.name for e in view.extensions if e.name.lower() == asked.lower())
        if not any(n.lower() == model.lower() for n in names):
            names.append(model)
    return names


def withdrawn_from(running: RolloutSummary, request: WithdrawRequest) -> bool:
    """Does the rollout in flight move a part of the set the request withdraws?"""
    if running.extension is None:
        return request.os_image
    name = running.extension.names.get(request.scale_set, "")
    return name.lower() in {n.lower() for n in request.extensions}


def not_enrolled(scale_set: str, extension: str) -> str:
    return f"not enrolled (upgradectl auto enable {scale_set} --extension {extension})"


def os_upgrades_off(scale_set: str) -> str:
    return (
        "automatic OS image upgrades are off: only extensions are enrolled "
        f"(upgradectl auto enable {scale_set} turns them on)"
    )


def details(state: AutomaticState, namespace: str) -> str:
    """The Web UI's current details: who is enrolled, what the watcher last saw, and the
    rollouts in flight with a link to each."""
    every = format_duration(state.settings.poll_interval)
    lines = [f"**{len(state.enrollments)} scale set(s) enrolled**, a look for new versions every {every}", ""]
    rows = [
        (
            escaped(e.scale_set),
            escaped(e.location or "?"),
            escaped(image_source_key(e.image_reference) if e.image_reference else "?"),  # short
            escaped(e.applied_version or "-"),
            escaped(e.note or "upgraded automatically"),
        )
        for e in (state.enrollments[name] for name in sorted(state.enrollments))
    ]
    if rows:
        lines.append(table(("scale set", "region", "image", "applied", "note"), rows))
    interval = state.settings.extension_retry_interval
    extensions = [
        (
            escaped(e.scale_set),
            escaped(x.name),
            escaped(f"{x.full_type} {x.model_version}"),
            escaped(x.state_text(interval)),
        )
        for e in (state.enrollments[name] for name in sorted(state.enrollments))
        for x in sorted(e.extensions.values(), key=lambda x: x.name)
    ]
    if extensions:
        lines += ["", table(("scale set", "extension", "type", "automatic upgrade"), extensions)]
    for summary in state.running.values():
        link = workflow_link(namespace, summary.workflow_id)
        lines += ["", f"Rollout in flight: [{escaped(summary.workflow_id)}]({link})"]
    return "\n".join(lines)
