"""Faults on ARM calls, as harsh as Azure's: throttling, errors before and after a request took
effect, dropped connections, slow answers, malformed bodies. Never on /admin or /healthz.

Each ARM call of a scale set (its instances, its operations' status URLs) draws once from a
seeded generator, so a run repeats. A 429 never lets the request through; a 5xx may come after
the action was accepted (`afterAcceptShare`); a dropped connection always comes after.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet.emulator.cloud import Cloud, CloudError
from models.fleet import FaultSpec

# Where a call's scope keeps the scale set it concerns (FaultInjector.scale_set_of_call).
CALL_SCALE_SET = "emulator.scale_set"


@dataclass
class Storm:
    """A 429 storm: calls left, and until when (monotonic seconds)."""

    calls: int = 0
    until: float = 0.0


class Recorded:
    """An answer the app gave, kept instead of sent: an answer that is lost, late or cut."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def start(self) -> Message:
        """The answer's status line and headers."""
        return next(m for m in self.messages if m["type"] == "http.response.start")


@dataclass
class FaultInjector:
    cloud: Cloud
    chance: random.Random = field(default_factory=lambda: random.Random(0))
    injected: dict[str, int] = field(default_factory=dict)
    storms: dict[str, Storm] = field(default_factory=dict)

    def faults_set(self, name: str, faults: FaultSpec) -> None:
        """New faults start their storm now."""
        self.storms[name] = Storm(faults.throttle_calls, time.monotonic() + faults.throttle_seconds)

    def scale_set_of(self, path: str) -> tuple[str | None, bool]:
        """The scale set an ARM path concerns, and whether it is an operation-status poll."""
        parts = path.strip("/").split("/")
        try:
            if "virtualMachineScaleSets" in parts:
                return parts[parts.index("virtualMachineScaleSets") + 1], False
            if "virtualMachines" in parts:
                return self.cloud.flexible_scale_set_of(parts[parts.index("virtualMachines") + 1]), False
            if "operations" in parts:
                return self.cloud.scale_set_of_arm_operation(parts[parts.index("operations") + 1]), True
        except (IndexError, CloudError):
            pass
        return None, False

    def scale_set_of_call(self, scope: Scope) -> tuple[str | None, bool]:
        """scale_set_of the call's path, worked out once per call: the call counter and the
        fault injector both ask, and for a Flexible VM or an operation it is a database read."""
        if CALL_SCALE_SET not in scope:
            scope[CALL_SCALE_SET] = self.scale_set_of(scope["path"])
        found: tuple[str | None, bool] = scope[CALL_SCALE_SET]
        return found

    def count(self, name: str) -> None:
        self.injected[name] = self.injected.get(name, 0) + 1

    def faults_of(self, scope: Scope) -> tuple[str, FaultSpec] | None:
        """The scale set a call concerns and its faults, if this call may get one."""
        name, poll = self.scale_set_of_call(scope)
        if name is None:
            return None
        try:
            faults = self.cloud.spec(name).faults
        except CloudError:
            return None
        if faults is None or (poll and not faults.faults_on_polls):
            return None
        return name, faults


class ArmFaults:
    """Draws each ARM call's fault (FaultInjector) and answers with it. A plain ASGI middleware:
    a call of a scale set without faults costs a path check, not a Request and a task group."""

    def __init__(self, app: ASGIApp, injector: FaultInjector) -> None:
        self.app, self.injector = app, injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        arm = scope["type"] == "http" and scope["path"].startswith("/subscriptions/")
        at = self.injector.faults_of(scope) if arm else None
        if at is None:
            return await self.app(scope, receive, send)
        name, faults = at
        injector, chance = self.injector, self.injector.chance
        storm = injector.storms.get(name)
        if storm and (storm.calls > 0 or time.monotonic() < storm.until):
            storm.calls = max(0, storm.calls - 1)
            injector.count(name)
            return await throttled(faults)(scope, receive, send)
        if chance.random() < faults.transient_error_share:
            injector.count(name)
            status = chance.choice(faults.transient_status_codes)
            if status == 429:
                return await throttled(faults)(scope, receive, send)
            if chance.random() < faults.after_accept_share:
                await self.app(scope, receive, Recorded())  # it took effect; the answer is lost
            code = "InternalServerError" if status == 500 else "ServiceUnavailable"
            return await error(status, code)(scope, receive, send)
        if chance.random() < faults.dropped_connection_share:
            injector.count(name)
            answer = Recorded()
            await self.app(scope, receive, answer)
            return await dropped(answer)(scope, receive, send)
        if chance.random() < faults.timeout_share:
            injector.count(name)
            answer = Recorded()
            await self.app(scope, receive, answer)
            await asyncio.sleep(faults.timeout_seconds)
            for message in answer.messages:
                await send(message)
            return None
        if chance.random() < faults.malformed_share:
            injector.count(name)
            await self.app(scope, receive, Recorded())
            truncated = Response(
                b'{"value": [{"name": "trunc', status_code=200, media_type="application/json"
            )
            return await truncated(scope, receive, send)
        return await self.app(scope, receive, send)


def error(status: int, code: str) -> JSONResponse:
    message = f"injected HTTP {status}: the server had an error while processing the request"
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def throttled(faults: FaultSpec) -> JSONResponse:
    answer = error(429, "TooManyRequests")
    answer.headers["Retry-After"] = str(faults.retry_after_seconds)
    answer.headers["x-ms-ratelimit-remaining-resource"] = "Microsoft.Compute/HighCostGet3Min;0"
    return answer


def dropped(answer: Recorded) -> Response:
    """An answer whose body stops short of its Content-Length: the server closes the
    connection mid-body and the client sees a payload or connection error, no status."""
    start = answer.start
    headers = {
        k.decode("latin-1"): v.decode("latin-1")
        for k, v in start["headers"]
        if k.lower() != b"content-length"
    }
    headers["content-length"] = "4096"
    return Response(b'{"partial": ', status_code=start["status"], headers=headers)
