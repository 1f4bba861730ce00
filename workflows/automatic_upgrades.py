"""AutomaticOSUpgradesWorkflow: who opted in to automatic upgrades, and the watcher that starts a
rollout when a new version of their image may be 'latest' (for sets with OS image upgrades on), or
a new minor or patch version of one of their enrolled extensions is published (each extension is
enrolled on its own, never one Azure upgrades itself: enableAutomaticUpgrade on).

One long-running workflow (`automatic-os-upgrades`): enrollments change through updates (who and
when stay in its history), and every poll interval it reads the enrolled scale sets and what
'latest' is for each image source in each of their regions (excludeFromLatest, end of life and
replication honoured by the back end's resolution). A newer version than the sets run starts a
RolloutWorkflow for it; a version newer than a rollout in flight supersedes it (the rollout
starts no further scale set and ends once its upgrades in flight finish, then the next look starts
the newer one). It continues as new before its history grows long, so it can run for years.

Extensions the same way, each on its own: per extension type and major version (a new major is
never automatic), the newest version published in the sets' regions rolls to every enrolled set
where some instance runs an older one, in a rollout of its own, so one extension's failure never
stops another's. A version that faulted on a set is tried there again after the retry interval
(`extensionRetryInterval`, Azure's "every few days"); a cancelled one is not.
"""

from __future__ import annotations

import contextlib

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ApplicationError, FailureError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from models import steps
    from models.automatic import (
        AUTOMATIC_UPGRADES_WORKFLOW,
        CHECK_NOW_SIGNAL,
        ENROLL_UPDATE,
        ENROLLMENTS_QUERY,
        PING_SIGNAL,
        ROLLOUT_ENDED_SIGNAL,
        ROLLOUTS_QUERY,
        SETTINGS_UPDATE,
        STATE_QUERY,
        SUPERSEDE_SIGNAL,
        WITHDRAW_UPDATE,
        WITHDRAWN_SIGNAL,
        AutomaticSettings,
        AutomaticState,
        Enrollment,
        EnrollRequest,
        ExtensionEnrollment,
        RolloutEnded,
        RolloutExtension,
        RolloutRequest,
        RolloutRetry,
        RolloutSet,
        RolloutSetState,
        RolloutState,
        RolloutSummary,
        SupersedeRequest,
        WithdrawnNotice,
        WithdrawRequest,
        extension_rollout_id,
        extension_rollout_key,
        image_source_key,
        rollout_workflow_id,
    )
    from models.change import major_of, version_key
    from models.errors import RefusalCode
    from models.fleet import ExtensionView, ScaleSetView
    from models.image import ImageReference
    from rules import watcher
    from rules.enrolled import automatic_extensions, by_image_source, enrolled_instances
    from rules.phases import check_phases, flat_phases, plan_phases
    from rules.refusals import max_surge_refusal
    from rules.surge import enrolled_surge
    from rules.watcher import details, enrolled_extensions, not_enrolled, os_upgrades_off, withdrawn_from
    from workflows import activity_calls
    from workflows.admission import (
        extension_enrollment_refusal,
        health_source_refusal,
        raised,
        rolled_by_azure,
    )
    from workflows.rollout import RolloutWorkflow

# Continue as new past this many events: a look is about a dozen, so a few hundred looks a run.
HISTORY_LIMIT = 4_000
# 2026-11: each look first checks that the rollouts it started still run (a ping signal).
PING_ROLLOUTS = "ping-rollouts"
# 2026-11: automatic extension upgrades: a look with enrolled extensions also asks the newest
# version of each one's major (an activity) and starts their rollouts; a faulted one is retried
# after extensionRetryInterval (the watcher's wait ends in time for it).
EXTENSION_UPGRADES = "extension-upgrades"
# 2026-12: an extension upgrade that completed with instances rolled back (fewer than its policy
# stops at) counts as failed on the set, like a faulted one: its version is tried again there
# (on those instances: the others run it already) after extensionRetryInterval. Decided when such
# an end arrives: a watcher that took one in before it keeps it applied.
RETRY_ROLLED_BACK = "retry-rolled-back"
# 2026-12: staged derived phases (one canary region, the fewest enrolled instances, then up to 2,
# 4, ... regions) instead of every region without a geo-pair conflict in phase 1; and the rollout
# request carries maxSetsPerRegion, maxInstancesPerRegion, phaseBakeTime and replicationTimeout.
STAGED_PHASES = "staged-phases"
# 2026-12: runs bounded at fleet scale (1,000 enrollments, tests/workflows/test_watcher_scale.py):
# a look surveys the enrolled sets SURVEY_CHUNK at a time, one activity call each, instead of all
# in one call (whose result grew 0.85 KB a set, and whose 2 ARM reads a set outlast the call's
# one-minute attempt at the paced read budget past about 700 sets); and the run continues as new
# also when its history grew HISTORY_GROWTH bytes (each look of 1,000 sets adds 0.85 MB: the
# 4,000 events came only after some 250 looks, far past the 50 MB a history may hold), checked
# while it waits too (updates and signals grow it between looks).
BOUNDED_RUNS = "bounded-runs"
# One survey call: about 85 KB of result, 200 reads (the read budget's burst).
SURVEY_CHUNK = 100
# Continue as new once the run's history grew this much since its start (Temporal warns at 10 MB;
# a look and a rollout's request of 1,000 sets add about 2 MB more before the check).
HISTORY_GROWTH = 4 * 1024 * 1024
# (bounded-runs) A run whose updates never pause cannot drain its handlers to continue as new;
# past this many events it refuses new updates (TooManyRequests, try again) until it has.
HISTORY_REFUSE = 9_000


# Auto-upgrade: runs for months, so it moves to the current build at its next workflow task
# (changes to it go behind workflow.patched); each continue-as-new starts on the current build.


@workflow.defn(name=AUTOMATIC_UPGRADES_WORKFLOW, versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class AutomaticOSUpgradesWorkflow:
    @workflow.init
    def __init__(self, state: AutomaticState | None = None) -> None:
        self._state = state or AutomaticState()
        self._look_now = True
        self._superseding: dict[str, str] = {}  # source key -> version asked to supersede it
        self._bounded = False  # (decided when the run starts)
        self._started_size = 0

    # --- enrollments ------------------------------------------------------------------------

    @workflow.update(name=ENROLL_UPDATE)
    async def enroll(self, request: EnrollRequest) -> Enrollment:
        """Opt a scale set in, its OS image and/or extensions by name, with what it had enrolled
        already (again: its policy replaced, a failed version forgotten)."""
        [survey] = await activity_calls.survey_scale_sets([request.scale_set])
        if survey.view is None:
            raise ApplicationError(
                survey.error or f"scale set {request.scale_set!r} not found",
                type=RefusalCode.SCALE_SET_NOT_FOUND,
                non_retryable=True,
            )
        if refusal := rolled_by_azure(survey.view):
            raise refusal  # Azure would roll it at the same time
        if request.os_image and (refusal := health_source_refusal(survey.view)):
            raise refusal  # automatic OS image upgrades need one health source
        surge = enrolled_surge(request, survey.view)
        if request.os_image and (refusal := raised(max_surge_refusal(survey.view, surge))):
            raise refusal  # Azure: MaxSurge with automatic OS upgrades on Flexible, not yet
        for name in request.extensions or []:
            if refusal := extension_enrollment_refusal(survey.view, name):
                raise refusal  # not in the model, or Azure upgrades it itself
        previous = self._state.enrollments.get(request.scale_set)
        policy = request.policy.model_copy(deep=True)
        policy.automatic_os_upgrade_policy.enable_automatic_os_upgrade = request.os_image or (
            previous is not None and previous.os_upgrades
        )
        enrollment = Enrollment(
            scale_set=request.scale_set,
            policy=policy,
            enrolled_extensions=enrolled_extensions(previous, request, survey.view),
            not_before_timeout=request.not_before_timeout,
            policy_given=request.policy_given,
            maintenance_window=request.maintenance_window,
            enrolled_by=request.by,
            enrolled_at=workflow.now(),
            applied_version=previous.applied_version if previous else None,
            # What was applied is kept; a failed (or cancelled) version is forgotten: tried again.
            extensions={
                name: extension.model_copy().forgive()
                for name, extension in (previous.extensions if previous else {}).items()
            },
        )
        self._observe(enrollment, survey)
        self._state.enrollments[request.scale_set] = enrollment
        workflow.logger.info("enrolled %s by %s", request.scale_set, request.by)
        self._look_now = True
        return enrollment

    @enroll.validator
    def _check_enroll(self, request: EnrollRequest) -> None:
        self._refuse_when_full()
        previous = self._state.enrollments.get(request.scale_set)
        if not request.os_image and not request.extensions and (previous is None or not previous.enrolls_any):
            raise ApplicationError(
                "nothing to enroll: turn on os_image or name extensions",
                type="InvalidParameter",
                non_retryable=True,
            )

    def _refuse_when_full(self) -> None:
        """Updates are refused (before anything is written to history) while a run long past
        its limit waits for its handlers to finish: the way out of an endless stream of them."""
        length = workflow.info().get_current_history_length()
        if self._bounded and length > HISTORY_REFUSE:
            raise ApplicationError(
                f"the watcher is continuing as new ({length} events in this run's history): "
                "try again in a minute",
                type="TooManyRequests",
                non_retryable=True,
            )

    @workflow.update(name=WITHDRAW_UPDATE)
    async def withdraw(self, request: WithdrawRequest) -> Enrollment:
        """Opt out, of everything or of the parts named: no new automatic upgrade of them
        starts; the one in flight finishes, or is cancelled (its batch in flight finishes) when
        asked. A set left with nothing enrolled is no longer enrolled at all."""
        enrollment = self._state.enrollments.get(request.scale_set)
        if enrollment is None:
            raise ApplicationError(
                f"scale set {request.scale_set!r} is not enrolled in automatic upgrades",
                type="NotEnrolled",
                non_retryable=True,
            )
        parts = not request.everything
        if parts:
            withdraw_parts(enrollment, request)
        if not parts or not enrollment.enrolls_any:
            del self._state.enrollments[request.scale_set]
        notice = WithdrawnNotice(scale_set=request.scale_set, cancel_in_flight=request.cancel_in_flight)
        for running in list(self._state.running.values()):
            if request.scale_set in running.scale_sets and (
                request.scale_set not in self._state.enrollments or withdrawn_from(running, request)
            ):
                await self._signal(running.workflow_id, WITHDRAWN_SIGNAL, notice)
        workflow.logger.info("withdrew %s by %s", request.scale_set, request.by)
        return enrollment

    @withdraw.validator
    def _check_withdraw(self, request: WithdrawRequest) -> None:
        self._refuse_when_full()

    @workflow.update(name=SETTINGS_UPDATE)
    async def settings(self, settings: AutomaticSettings) -> AutomaticSettings:
        self._state.settings = settings
        self._look_now = True
        return settings

    @settings.validator
    def _check_settings(self, settings: AutomaticSettings) -> None:
        self._refuse_when_full()
        try:
            check_phases(settings.phases or [], settings.geo_pairs)
        except ValueError as err:
            raise ApplicationError(f"phases: {err}", type="InvalidParameter", non_retryable=True) from None

    @workflow.query(name=ENROLLMENTS_QUERY)
    def enrollments(self) -> list[Enrollment]:
        return [self._state.enrollments[name] for name in sorted(self._state.enrollments)]

    @workflow.query(name=ROLLOUTS_QUERY)
    def rollouts(self) -> list[RolloutSummary]:
        return [*self._state.recent, *self._state.running.values()]

    @workflow.query(name=STATE_QUERY)
    def state(self) -> AutomaticState:
        return self._state

    @workflow.signal(name=CHECK_NOW_SIGNAL)
    def check_now(self) -> None:
        self._look_now = True

    @workflow.signal(name=ROLLOUT_ENDED_SIGNAL)
    def rollout_ended(self, ended: RolloutEnded) -> None:
        if watcher.rollout_ended(
            self._state,
            ended,
            now=workflow.now(),
            retry_rolled_back=lambda: workflow.patched(RETRY_ROLLED_BACK),
        ):
            self._superseding.pop(ended.source_key, None)
        self._look_now = True

    # --- the watcher ------------------------------------------------------------------------

    @workflow.run
    async def run(self, state: AutomaticState | None = None) -> None:
        # Decided once a run: a run started before the patch keeps its old bounds to its end.
        self._bounded = workflow.patched(BOUNDED_RUNS)
        self._started_size = workflow.info().get_current_history_size()
        while True:
            self._look_now = False  # (before the look: a signal during it asks for another)
            if self._state.enrollments:
                await self._look()
            workflow.set_current_details(details(self._state, workflow.info().namespace))
            if self._history_long():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._state)
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._look_now or (self._bounded and self._history_long()),
                    timeout=watcher.next_look(self._state, workflow.now()),
                    timeout_summary="until the next look for new image versions",
                )

    def _history_long(self) -> bool:
        """Time to continue as new: past HISTORY_LIMIT events, or (bounded-runs) grown by
        HISTORY_GROWTH bytes since the run started (its input, the state, is not counted: a
        state that large alone must not make every run continue at once)."""
        info = workflow.info()
        if info.get_current_history_length() > HISTORY_LIMIT:
            return True
        return self._bounded and info.get_current_history_size() - self._started_size > HISTORY_GROWTH

    async def _look(self) -> None:
        """Read the enrolled sets, 'latest' of their images and the newest versions of their
        extensions; start or supersede rollouts."""
        if workflow.patched(PING_ROLLOUTS):
            await self._forget_vanished_rollouts()
        names = sorted(self._state.enrollments)
        chunk = SURVEY_CHUNK if self._bounded else len(names)
        for start in range(0, len(names), chunk):
            if self._bounded and self._history_long():
                return  # the next run looks again at once (a look grows a run by far less)
            for survey in await activity_calls.survey_scale_sets(names[start : start + chunk]):
                if (enrollment := self._state.enrollments.get(survey.scale_set)) is not None:
                    self._observe(enrollment, survey)
        await self._look_for_images()
        if self._automatic_extensions() and workflow.patched(EXTENSION_UPGRADES):
            await self._look_for_extensions()

    async def _look_for_images(self) -> None:
        queries = [
            steps.VersionQuery(source=sets[0].image_reference, region=region)
            for sets in self._by_source().values()
            for region in sorted({e.location for e in sets if e.location})
        ]
        if not queries:
            return
        newest: dict[str, str] = {}
        for latest in await activity_calls.latest_versions(queries):
            key = image_source_key(latest.source)
            if latest.version and version_key(latest.version) > version_key(newest.get(key, "")):
                newest[key] = latest.version
        # Enrollments may have changed during the reads: roll what is enrolled now (a region not
        # read yet is read by the rollout, which waits for the version to reach it).
        for key, sets in sorted(self._by_source().items()):
            if key in newest:
                await self._roll_image(key, sorted(sets, key=lambda e: e.scale_set), newest[key])

    async def _look_for_extensions(self) -> None:
        """The newest version of each enrolled extension's major in its sets' regions; each
        extension type and major rolls on its own."""
        wanted = {
            (extension.publisher, extension.type_, extension.major, (enrollment.location or "").lower())
            for enrollment, extension in self._automatic_extensions()
        }
        queries = [
            steps.ExtensionVersionQuery(publisher=publisher, type_=type_, major=major, region=region)
            for publisher, type_, major, region in sorted(wanted)
        ]
        newest: dict[str, str] = {}
        for found in await activity_calls.newest_extension_versions(queries):
            key = extension_rollout_key(f"{found.publisher}.{found.type_}", found.major)
            if found.newest and version_key(found.newest) > version_key(newest.get(key, "")):
                newest[key] = found.newest
        # As for images: roll to what is enrolled now.
        groups: dict[str, list[tuple[Enrollment, ExtensionEnrollment]]] = {}
        for enrollment, extension in self._automatic_extensions():
            groups.setdefault(extension_rollout_key(extension.full_type, extension.major), []).append(
                (enrollment, extension)
            )
        for key, members in sorted(groups.items()):
            if key in newest:
                await self._roll_extension(key, members, newest[key])

    def _automatic_extensions(self) -> list[tuple[Enrollment, ExtensionEnrollment]]:
        """The enrolled sets' extensions an automatic upgrade may reach. (Only a survey by this
        code reports what instances run, so a watcher that started before automatic extension
        upgrades, replayed, never asks for them in its old looks and takes them up at its first
        look after the deploy.)"""
        enrollments = self._state.enrollments
        return automatic_extensions(enrollments[name] for name in sorted(enrollments))

    def _by_source(self) -> dict[str, list[Enrollment]]:
        """The enrolled sets an automatic upgrade may reach, by image source."""
        return by_image_source(self._state.enrollments.values())

    async def _roll_image(self, key: str, sets: list[Enrollment], version: str) -> None:
        due = [e for e in sets if version not in (e.applied_version, e.failed_version)]
        source = due[0].image_reference if due else None
        request = None
        if source is not None:
            request = self._rollout_request(version, due, source=source)
        await self._roll(key, version, request)

    async def _roll_extension(
        self, key: str, members: list[tuple[Enrollment, ExtensionEnrollment]], version: str
    ) -> None:
        settings, now = self._state.settings, workflow.now()
        due = [(e, x) for e, x in members if x.due(version, now, settings.extension_retry_interval)]
        request = None
        if due:
            first = due[0][1]
            rolled = RolloutExtension(
                publisher=first.publisher,
                type_=first.type_,
                major=first.major,
                names={e.scale_set: x.name for e, x in due},
            )
            retries = {
                e.scale_set: RolloutRetry(attempt=x.attempts, failed_at=x.failed_at, reason=x.failure or "")
                for e, x in due
                if x.failed_version == version and x.failed_at is not None
            }
            request = self._rollout_request(version, [e for e, _ in due], extension=rolled, retries=retries)
        if await self._roll(key, version, request):
            for _, extension in due:
                extension.rollout_id = self._state.running[key].workflow_id
                extension.rolling_version = version

    def _rollout_request(
        self,
        version: str,
        due: list[Enrollment],
        *,
        source: ImageReference | None = None,
        extension: RolloutExtension | None = None,
        retries: dict[str, RolloutRetry] | None = None,
    ) -> RolloutRequest:
        settings = self._state.settings
        if not workflow.patched(STAGED_PHASES):
            return RolloutRequest(
                source=source,
                version=version,
                enrollments=due,
                phases=flat_phases(
                    {e.location for e in due if e.location}, settings.phases, settings.geo_pairs
                ),
                replication_poll_interval=settings.replication_poll_interval,
                extension=extension,
                retries=retries or {},
            )
        return RolloutRequest(
            source=source,
            version=version,
            enrollments=due,
            phases=plan_phases(enrolled_instances(due), settings.phases, settings.geo_pairs),
            replication_poll_interval=settings.replication_poll_interval,
            extension=extension,
            retries=retries or {},
            max_sets_per_region=settings.max_sets_per_region,
            max_instances_per_region=settings.max_instances_per_region,
            phase_bake_time=settings.phase_bake_time,
            replication_timeout=settings.replication_timeout,
            geo_pairs=settings.geo_pairs,
        )

    async def _roll(self, key: str, version: str, request: RolloutRequest | None) -> bool:
        """Start the rollout `request` of `key` (an image source, or an extension's type and
        major), or supersede the one in flight with a newer version. True if started."""
        running = self._state.running.get(key)
        if running is not None:
            newer = version_key(version) > version_key(running.version)
            if newer and self._superseding.get(key) != version:
                self._superseding[key] = version
                workflow.logger.info("%s supersedes rollout %s", version, running.workflow_id)
                await self._signal(running.workflow_id, SUPERSEDE_SIGNAL, SupersedeRequest(version=version))
            return False
        if request is None:
            return False
        retry = request.retry.attempt if request.retry else 0
        count = f"{len(request.enrollments)} scale set(s)" + (f" (retry {retry})" if retry else "")
        if request.extension is not None:
            full_type = request.extension.full_type
            workflow_id = extension_rollout_id(full_type, version, retry)
            source, summary = f"ext:{full_type}", f"rollout of extension {full_type} {version} to {count}"
        else:
            assert request.source is not None
            workflow_id = rollout_workflow_id(request.source, version)
            source = str(request.source.with_version(""))
            summary = f"rollout of {request.source.with_version(version)} to {count}"
        try:
            await workflow.start_child_workflow(
                RolloutWorkflow.run,
                request,
                id=workflow_id,
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,  # outlives continue-as-new
                static_summary=summary,
            )
        except WorkflowAlreadyStartedError:
            workflow.logger.warning("rollout %s is already running", workflow_id)
            return False
        names = [e.scale_set for e in request.enrollments]
        workflow.logger.info("rollout %s started for %s", workflow_id, ", ".join(names))
        self._state.running[key] = RolloutSummary(
            workflow_id=workflow_id,
            source=source,
            version=version,
            scale_sets=names,
            start_time=workflow.now(),
            extension=request.extension,
            retry=retry,
        )
        return True

    async def _forget_vanished_rollouts(self) -> None:
        """A rollout that ended without telling the watcher (terminated from the Web UI, say)
        would hold its image source forever: it counts as cancelled, so its version is not
        started again on its sets until a newer one (or `auto enable`)."""
        for key, running in list(self._state.running.items()):
            if await self._still_runs(running.workflow_id) or self._state.running.get(key) is not running:
                continue  # running, or its own word arrived meanwhile
            workflow.logger.warning("rollout %s ended without a word: cancelled", running.workflow_id)
            self.rollout_ended(
                RolloutEnded(
                    workflow_id=running.workflow_id,
                    source_key=key,
                    version=running.version,
                    state=RolloutState.CANCELLED,
                    sets=[
                        RolloutSet(scale_set=name, region="", state=RolloutSetState.SKIPPED)
                        for name in running.scale_sets
                    ],
                    message="ended without a word to the watcher (terminated?): counted as cancelled",
                    end_time=workflow.now(),
                    extension=running.extension,
                )
            )

    async def _still_runs(self, workflow_id: str) -> bool:
        try:
            await workflow.get_external_workflow_handle(workflow_id).signal(PING_SIGNAL)
        except FailureError:  # a signal to an ended workflow fails
            return False
        return True

    def _observe(self, enrollment: Enrollment, survey: steps.ScaleSetSurvey) -> None:
        """What the watcher read of a set; `note` says why its image is not upgraded
        automatically, each extension's why that extension is not."""
        view: ScaleSetView | None = survey.view
        if view is None:
            enrollment.note = survey.error or "not found"
            for extension in enrollment.extensions.values():
                extension.note = enrollment.note
            return
        enrollment.location = view.location
        enrollment.instance_count = survey.instance_count
        enrollment.assigned_maintenance_window = view.maintenance_window
        enrollment.image_reference = view.image_reference.model_copy(update={"exact_version": None})
        versions = survey.instance_versions
        refusal = rolled_by_azure(view)
        if refusal:
            enrollment.note = refusal.message
        elif not enrollment.os_upgrades:
            enrollment.note = os_upgrades_off(enrollment.scale_set)
        elif not enrollment.follows_latest:
            enrollment.note = (
                f"pinned to version {view.image_reference.version}: left alone (automatic OS upgrades "
                "follow only an image reference whose version is 'latest'; its enrolled extensions "
                "still follow their new minor and patch versions)"
            )
        else:
            enrollment.note = None
            if len(versions) == 1 and versions[0] != enrollment.applied_version:
                enrollment.applied_version = versions[0]  # every instance runs it already
        enrollment.extensions = observed_extensions(
            enrollment, view, survey.extension_versions, refusal.message if refusal else None
        )

    async def _signal(self, workflow_id: str, signal: str, arg: object) -> None:
        try:
            await workflow.get_external_workflow_handle(workflow_id).signal(signal, arg)
        except FailureError as err:  # it ended meanwhile
            workflow.logger.info("could not signal %s: %s", workflow_id, err)


def observed_extensions(
    enrollment: Enrollment, view: ScaleSetView, installed: dict[str, list[str]], blocked: str | None
) -> dict[str, ExtensionEnrollment]:
    """Each extension of the model as the watcher read it now, with what it did before (unless
    the name now holds another extension type or major: then that history no longer applies)."""
    observed: dict[str, ExtensionEnrollment] = {}
    for model in view.extensions:
        known = enrollment.extension(model.name)
        same = (
            known is not None
            and known.full_type.lower() == model.full_type.lower()
            and known.major == major_of(model.type_handler_version)
        )
        extension = known if known is not None and same else ExtensionEnrollment(name=model.name)
        extension.publisher, extension.type_ = model.publisher, model.type_
        extension.model_version = model.type_handler_version
        extension.automatic = model.enable_automatic_upgrade
        extension.installed = installed.get(model.name, [])
        extension.note = blocked or extension_note(enrollment, view, model)
        versions = set(extension.installed)
        if len(versions) == 1 and "" not in versions:  # every instance runs it already
            [extension.applied_version] = versions
            if extension.failed_version == extension.applied_version:
                extension.forgive()
        observed[model.name] = extension
    return observed


def extension_note(enrollment: Enrollment, view: ScaleSetView, model: ExtensionView) -> str | None:
    """Why an extension of the model is not upgraded automatically (None: it is)."""
    if enrollment.enrolled_extensions is None:  # enrolled before extensions were, one by one
        return None if model.enable_automatic_upgrade else "enableAutomaticUpgrade is off: left alone"
    if not enrollment.enrolls(model.name):
        return not_enrolled(enrollment.scale_set, model.name)
    refusal = extension_enrollment_refusal(view, model.name)  # turned on since it was enrolled
    return refusal.message if refusal else None


def withdraw_parts(enrollment: Enrollment, request: WithdrawRequest) -> None:
    """Turn off what the request names (OS image upgrades, extensions by name); NotEnrolled if
    one of them is not enrolled."""

    def refused(what: str) -> ApplicationError:
        return ApplicationError(
            f"scale set {enrollment.scale_set!r}: {what}", type="NotEnrolled", non_retryable=True
        )

    if request.os_image and not enrollment.os_upgrades:
        raise refused("automatic OS image upgrades are off already")
    if request.extensions and enrollment.enrolled_extensions is None:
        raise refused(
            "enrolled before extensions were enrolled one by one (its extensions with "
            "enableAutomaticUpgrade follow): enroll it again with `upgradectl auto enable "
            f"{enrollment.scale_set} --extension NAME` to choose them"
        )
    for name in request.extensions:
        if not enrollment.enrolls(name):
            enrolled = ", ".join(enrollment.enrolled_extensions or []) or "none"
            raise refused(f"extension {name!r} is not enrolled (enrolled: {enrolled})")
    if request.os_image:
        enrollment.policy.automatic_os_upgrade_policy.enable_automatic_os_upgrade = False
        enrollment.note = os_upgrades_off(enrollment.scale_set)
    withdrawn = {name.lower() for name in request.extensions}
    if withdrawn:  # (enrolled by name: checked above)
        names = enrollment.enrolled_extensions or []
        enrollment.enrolled_extensions = [n for n in names if n.lower() not in withdrawn]
    for extension in enrollment.extensions.values():
        if extension.name.lower() in withdrawn:
            extension.note = not_enrolled(enrollment.scale_set, extension.name)
