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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from fleet.emulator.cloud import Cloud, CloudError
from models.fleet import FaultSpec

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Storm:
    """A 429 storm: calls left, and until when (monotonic seconds)."""

    calls: int = 0
    until: float = 0.0


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

    def count(self, name: str) -> None:
        self.injected[name] = self.injected.get(name, 0) + 1

    async def __call__(self, request: Request, call_next: Handler) -> Response:
        if not request.url.path.startswith("/subscriptions/"):
            return await call_next(request)
        name, poll = self.scale_set_of(request.url.path)
        try:
            faults = self.cloud.spec(name).faults if name else None
        except CloudError:
            faults = None
        if name is None or faults is None or (poll and not faults.faults_on_polls):
            return await call_next(request)
        storm = self.storms.get(name)
        if storm and (storm.calls > 0 or time.monotonic() < storm.until):
            storm.calls = max(0, storm.calls - 1)
            self.count(name)
            return throttled(faults)
        if self.chance.random() < faults.transient_error_share:
            self.count(name)
            status = self.chance.choice(faults.transient_status_codes)
            if status == 429:
                return throttled(faults)
            if self.chance.random() < faults.after_accept_share:
                await call_next(request)  # it took effect; the answer is lost
            return error(status, "InternalServerError" if status == 500 else "ServiceUnavailable")
        if self.chance.random() < faults.dropped_connection_share:
            self.count(name)
            answer = await call_next(request)
            return dropped(answer)
        if self.chance.random() < faults.timeout_share:
            self.count(name)
            answer = await call_next(request)
            await asyncio.sleep(faults.timeout_seconds)
            return answer
        if self.chance.random() < faults.malformed_share:
            self.count(name)
            await call_next(request)
            return Response(b'{"value": [{"name": "trunc', status_code=200, media_type="application/json")
        return await call_next(request)


def error(status: int, code: str) -> JSONResponse:
    message = f"injected HTTP {status}: the server had an error while processing the request"
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def throttled(faults: FaultSpec) -> JSONResponse:
    answer = error(429, "TooManyRequests")
    answer.headers["Retry-After"] = str(faults.retry_after_seconds)
    answer.headers["x-ms-ratelimit-remaining-resource"] = "Microsoft.Compute/HighCostGet3Min;0"
    return answer


def dropped(answer: Response) -> Response:
    """An answer whose body stops short of its Content-Length: the server closes the
    connection mid-body and the client sees a payload or connection error, no status."""
    headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}
    headers["content-length"] = "4096"
    return Response(b'{"partial": ', status_code=answer.status_code, headers=headers)
