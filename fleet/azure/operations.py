"""Long-running operations without the SDK's poller: the accepted action's status URL, kept in a
FleetOperation (it travels in heartbeats), and what a GET of that URL says.

An accepted action answers 200/202 with `Azure-AsyncOperation` (…/operations/{id}, answering
{status, error}), else `Location` (202 until done), else nothing: a PATCH answered with the
resource itself, polled at its own URL until properties.provisioningState is final.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fleet.azure.errors import retry_after_seconds
from fleet.azure.views import arm_time, dig
from models.fleet import FleetOperation, OperationError, OperationKind, OperationStatus
from models.image import ImageReference

_STATUS = {
    "inprogress": OperationStatus.IN_PROGRESS,
    "succeeded": OperationStatus.SUCCEEDED,
    "failed": OperationStatus.FAILED,
    "canceled": OperationStatus.CANCELED,
    "cancelled": OperationStatus.CANCELED,
}


def _operation_id(status_url: str, fallback: str) -> str:
    last = urlsplit(status_url).path.rstrip("/").rsplit("/", 1)[-1]
    return last or fallback


def accepted(
    response: Any,
    *,
    kind: OperationKind,
    scale_set: str,
    instance_id: str,
    image: ImageReference | None = None,
    os_disk: str | None = None,
) -> FleetOperation:
    """The FleetOperation of an action's initial answer (an azure-core PipelineResponse)."""
    headers = response.http_response.headers
    request_id = headers.get("x-ms-request-id") or ""
    async_url = headers.get("Azure-AsyncOperation") or headers.get("Location")
    status_url = async_url or response.http_request.url  # poll the resource itself
    return FleetOperation(
        operation_id=_operation_id(async_url, request_id) if async_url else request_id or "unknown",
        kind=kind,
        scale_set=scale_set,
        instance_id=instance_id,
        status=OperationStatus.IN_PROGRESS,
        start_time=datetime.now(UTC),
        image_reference=image,
        os_disk=os_disk,
        status_url=status_url,
        retry_after_seconds=retry_after_seconds(headers),
    )


def polled(operation: FleetOperation, status_code: int, headers: Any, body: str) -> FleetOperation:
    """The operation after one successful (2xx) GET of its status URL."""
    try:
        document = json.loads(body) if body else {}
    except ValueError:
        document = {}
    if status_code == 202:
        status = OperationStatus.IN_PROGRESS
    elif isinstance(dig(document, "status"), str):  # Azure-AsyncOperation
        status = _STATUS.get(document["status"].lower(), OperationStatus.IN_PROGRESS)
    elif isinstance(dig(document, "properties", "provisioningState"), str):  # the resource
        status = _STATUS.get(document["properties"]["provisioningState"].lower(), OperationStatus.IN_PROGRESS)
    else:  # Location answered with the result
        status = OperationStatus.SUCCEEDED
    error = dig(document, "error")
    end_time = None
    if status != OperationStatus.IN_PROGRESS:
        end_time = arm_time(dig(document, "endTime")) or datetime.now(UTC)
    return operation.model_copy(
        update={
            "status": status,
            "end_time": end_time,
            "error": (
                OperationError(
                    code=str(error.get("code") or "Failed"), message=str(error.get("message") or "")
                )
                if isinstance(error, dict)
                else None
            ),
            "retry_after_seconds": retry_after_seconds(headers),
        }
    )
