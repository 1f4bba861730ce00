"""The emulator's HTTP API.

- `/subscriptions/...`: Azure Resource Manager's Compute API (fleet/emulator/arm.py), with
  Azure's faults (fleet/emulator/faults.py). Served over HTTPS (fleet/emulator/tls.py).
- `/vm/<scale set>/<instance>/<path>`: each instance's Application Health endpoint, answering
  as its scale set's `appEndpoint` (rich or binary) says; `/vm/.../tcp/<port>` is a TCP probe.
  An instance that does not accept the connection (stopped, booting, gone, or a TCP port of an
  unhealthy application) answers 502 with `X-Emulated-Connection: refused`: clients read that
  as no connection at all.
- `/admin/...`: setting up scenarios (scale sets, images, faults, scale-out, an operation from
  outside, scripted health answers, core quotas) and reading the operations log and every
  instance's life (created, ready, deleted); Azure Monitor metric alert rules to fire and reset.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from fastapi import Body, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from fleet.emulator.arm import arm_router
from fleet.emulator.cloud import Cloud, CloudError, EndpointAnswer
from fleet.emulator.faults import ArmFaults, FaultInjector
from fleet.emulator.insights import metric_alert, set_metric_alert
from fleet.emulator.store import open_database
from fleet.protocol import NO_CONNECTION_HEADER, NO_CONNECTION_VALUE
from models.base import describe_validation_error
from models.fleet import FaultSpec, HealthState, QuotaUsage, ScaleSetSpec
from models.image import ImageReference


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class ArmCallCounter:
    """Counts every ARM request that reaches the emulator (from any client process, throttled or
    not), per scale set: reads (GET, HEAD) and actions (anything else), and by request shape,
    e.g. "GET virtualMachineScaleSets/*/virtualMachines" (a page of the instance list). Operation
    status polls count for the scale set whose action started them. A plain ASGI middleware, so
    counting costs next to nothing on the emulator's critical path."""

    def __init__(self, app: ASGIApp, faults: FaultInjector, counts: dict[str, Counter[str]]) -> None:
        self.app, self.faults, self.counts = app, faults, counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/subscriptions/"):
            name, _ = self.faults.scale_set_of_call(scope)
            if name is not None:
                method = scope["method"].upper()
                counts = self.counts.setdefault(name, Counter())
                counts["reads" if method in ("GET", "HEAD") else "actions"] += 1
                counts[f"{method} {arm_shape(scope['path'])}"] += 1
        await self.app(scope, receive, send)


def arm_shape(path: str) -> str:
    """The path after `providers/Microsoft.Compute/`, names replaced by `*`."""
    parts = path.strip("/").split("/")
    try:
        rest = parts[parts.index("Microsoft.Compute") + 1 :]
    except ValueError:
        return path
    return "/".join(part if i % 2 == 0 else "*" for i, part in enumerate(rest))


def create_app(db_path: str | Path) -> FastAPI:
    cloud = Cloud(open_database(db_path))
    app = FastAPI(title="Fleet emulator", version="1")
    app.state.cloud = cloud
    api_versions: Counter[str] = Counter()
    arm_faults = FaultInjector(cloud)
    injected = arm_faults.injected
    app.include_router(arm_router(cloud, api_versions))
    app.add_middleware(ArmFaults, injector=arm_faults)
    # Added after the fault injector, so outside it: it sees every request, faults or not.
    arm_calls: dict[str, Counter[str]] = {}
    app.add_middleware(ArmCallCounter, faults=arm_faults, counts=arm_calls)

    @app.exception_handler(CloudError)
    async def cloud_error(_: Request, err: CloudError) -> JSONResponse:
        return error_response(err.status, err.code, err.message)

    @app.exception_handler(ValidationError)
    async def invalid_body(_: Request, err: ValidationError) -> JSONResponse:
        return error_response(400, "InvalidParameter", describe_validation_error(err))

    @app.exception_handler(KeyError)
    async def missing_field(_: Request, err: KeyError) -> JSONResponse:
        return error_response(400, "InvalidParameter", f"{err.args[0]}: is required")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # --- per-instance health endpoints ------------------------------------------------------

    @app.get("/vm/{name}/{instance_id}/{path:path}")
    async def app_health(name: str, instance_id: str, path: str) -> Response:
        try:
            answer = cloud.app_health(name, instance_id, path)
        except CloudError as err:  # no such scale set: nothing listens there either
            answer = EndpointAnswer(None, err.message)
        if answer.status is None:
            return Response(
                answer.body,
                status_code=502,
                media_type="text/plain",
                headers={NO_CONNECTION_HEADER: NO_CONNECTION_VALUE},
            )
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)

    # --- administration ---------------------------------------------------------------------

    @app.get("/admin/scaleSets")
    async def list_scale_sets() -> list[str]:
        return cloud.scale_set_names()

    @app.put("/admin/scaleSets/{name}")
    async def create_scale_set(name: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        spec = ScaleSetSpec.from_user({**body, "name": name})
        return cloud.create_scale_set(spec).to_json()

    @app.get("/admin/scaleSets/{name}")
    async def show_scale_set(name: str) -> dict[str, Any]:
        return cloud.scale_set_view(name).to_json()

    @app.delete("/admin/scaleSets/{name}", status_code=204)
    async def delete_scale_set(name: str) -> None:
        cloud.delete_scale_set(name)

    @app.put("/admin/scaleSets/{name}/faults", status_code=204)
    async def set_faults(name: str, body: dict[str, Any] = Body(...)) -> None:
        faults = FaultSpec.from_user(body)
        cloud.set_faults(name, faults)
        arm_faults.faults_set(name, faults)

    @app.get("/admin/apiVersions")
    async def seen_api_versions() -> dict[str, int]:
        """Every api-version ARM calls carried, with how many calls carried it."""
        return dict(api_versions)

    @app.post("/admin/extensionVersions", status_code=204)
    async def publish_extension_version(body: dict[str, Any] = Body(...)) -> None:
        """{"publisher", "type", "version", "regions": optional, default everywhere}."""
        regions = body.get("regions") or ["*"]
        cloud.publish_extension_version(body["publisher"], body["type"], body["version"], regions)

    @app.get("/admin/extensionVersions")
    async def list_extension_versions() -> list[dict[str, Any]]:
        """Every published extension version: {publisher, type, version, regions}."""
        return cloud.all_extension_versions()

    @app.post("/admin/extensionVersions/fix")
    async def fix_extension_version(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        """{"publisher", "type", "version"}: the publisher fixed it; no scale set's faults name
        it any more (failingExtensionVersions, unhealthyExtensionVersions). The sets changed."""
        changed = cloud.fix_extension_version(body["publisher"], body["type"], body["version"])
        return {"scaleSets": changed}

    @app.get("/admin/scaleSets/{name}/faults")
    async def get_faults(name: str) -> dict[str, Any]:
        """The scale set's faults and how many were injected since the emulator started."""
        return {"faults": cloud.spec(name).faults.to_json(), "injected": injected.get(name, 0)}

    @app.get("/admin/scaleSets/{name}/calls")
    async def arm_calls_of(name: str) -> dict[str, Any]:
        """ARM requests about the scale set since the emulator started, from every client:
        {"reads", "actions", "requests": {"<METHOD> <shape>": count}} (ArmCallCounter)."""
        counts = arm_calls.get(name, Counter())
        shapes = {k: v for k, v in sorted(counts.items()) if k not in ("reads", "actions")}
        return {"reads": counts["reads"], "actions": counts["actions"], "requests": shapes}

    @app.get("/admin/scaleSets/{name}/operations")
    async def operations(name: str) -> list[dict[str, Any]]:
        return [op.to_json() for op in cloud.operations_log(name)]

    @app.get("/admin/scaleSets/{name}/instanceRecords")
    async def instance_records(name: str) -> list[dict[str, Any]]:
        """Every instance the set ever had: created, provisioned, ready, deleteStarted, deleted."""
        return [record.to_json() for record in cloud.instance_records(name)]

    @app.get("/admin/quotas/{location}")
    async def quotas(location: str) -> list[dict[str, Any]]:
        """The region's vCPU usage and limits, as the usages API counts them."""
        return [
            QuotaUsage(name=name, current_value=current, limit=limit).to_json()
            for name, current, limit in cloud.usages(location)
        ]

    @app.put("/admin/quotas/{location}/{family}", status_code=204)
    async def set_quota(location: str, family: str, body: dict[str, Any] = Body(...)) -> None:
        """{"limit": vCPUs} of a VM family (or `cores`, the region's total); null: the default."""
        cloud.set_core_limit(location, family, body.get("limit"))

    @app.delete("/admin/scaleSets/{name}/instances/{instance_id}", status_code=204)
    async def delete_instance(name: str, instance_id: str) -> None:
        cloud.delete_instance(name, instance_id)

    @app.put("/admin/scaleSets/{name}/instances/{instance_id}/health", status_code=204)
    async def force_health(name: str, instance_id: str, body: dict[str, Any] = Body(...)) -> None:
        state = HealthState(body["state"]) if body.get("state") else None
        cloud.force_health(name, instance_id, state)

    @app.post("/admin/scaleSets/{name}/scaleOut")
    async def scale_out(name: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        """Add instances: {"count": n, "imageReference": optional, default the model's}."""
        count = body["count"]
        if isinstance(count, bool) or not isinstance(count, int):
            raise CloudError(400, "InvalidParameter", f"count: must be a whole number (got {count!r})")
        image = body.get("imageReference")
        image = ImageReference.from_user(image) if image else None
        return cloud.scale_out(name, count, image).to_json()

    @app.post("/admin/scaleSets/{name}/instances/{instance_id}/restart")
    async def restart(name: str, instance_id: str, body: dict[str, Any] = Body(...)) -> JSONResponse:
        """Keep an instance busy with an operation of its own: {"seconds": s, "operationId"}."""
        seconds = float(body.get("seconds", 1.0))
        operation_id = body.get("operationId") or f"restart-{name}-{instance_id}-{uuid.uuid4().hex[:8]}"
        operation = cloud.begin_restart(name, instance_id, seconds, operation_id)
        return JSONResponse(operation.to_json(), status_code=202)

    @app.put("/admin/scaleSets/{name}/instances/{instance_id}/probeAnswers", status_code=204)
    async def probe_answers(name: str, instance_id: str, body: dict[str, Any] = Body(...)) -> None:
        """The endpoint's next answers, one per probe: Healthy, Unhealthy, Unknown or Down."""
        cloud.set_probe_answers(name, instance_id, list(body["answers"]))

    @app.post("/admin/images")
    async def publish_image(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        image = ImageReference.from_user(body["imageReference"])
        regions = body.get("regions") or ["*"]
        version = cloud.publish_image(
            image,
            regions,
            bool(body.get("excludeFromLatest")),
            body.get("endOfLifeDate"),
            body.get("excludedFromLatestIn"),
        )
        return version.to_json()

    @app.put("/admin/metricAlerts/{name}")
    async def put_metric_alert(name: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        """An Azure Monitor metric alert rule (alarm gates): {"status": "Healthy"|"Unhealthy",
        "answers": the next status reads' answers, "throttleCalls", "failCalls"}."""
        return set_metric_alert(cloud, name, body)

    @app.get("/admin/metricAlerts/{name}")
    async def get_metric_alert(name: str) -> dict[str, Any]:
        """The rule's status, answers left and how many times its status was read."""
        return metric_alert(cloud, name)

    @app.get("/admin/images")
    async def list_images() -> list[dict[str, Any]]:
        return [version.to_json() for version in cloud.images()]

    return app
