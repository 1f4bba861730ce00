"""How Azure's Application Health extension reads one answer of an instance's health endpoint.

One pure function, free of any HTTP client, so the worker's prober and an emulated extension
read answers the same way:

| protocol   | mode   | answer                                                | state     |
| ---------- | ------ | ----------------------------------------------------- | --------- |
| http/https | binary | 2xx                                                   | Healthy   |
| http/https | binary | anything else, a timeout, no connection               | Unhealthy |
| http/https | rich   | 2xx, body `{"ApplicationHealthState": "Healthy"}`     | Healthy   |
| http/https | rich   | 2xx, body `{"ApplicationHealthState": "Unhealthy"}`   | Unhealthy |
| http/https | rich   | non-2xx, a timeout, no connection, a body without a   | Unknown   |
|            |        | valid ApplicationHealthState                          |           |
| tcp        | either | the connect succeeded                                 | Healthy   |
| tcp        | either | the connect was refused, failed or timed out          | Unhealthy |

Initializing is never an answer: the extension reports it itself from its start until
numberOfProbes Healthy answers in a row or until the grace period ends (the prober's job).
Custom metrics come only with rich states, as a JSON *string* in the body's `customMetrics`:
`{"rollingUpgrade": {"PhaseOrderingNumber": 1, "SkipUpgrade": false}}`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import ValidationError

from models.fleet import CustomMetrics, HealthProbe, HealthState

Protocol = Literal["http", "https", "tcp"]
Mode = Literal["rich", "binary"]
RICH_STATES = {"Healthy": HealthState.HEALTHY, "Unhealthy": HealthState.UNHEALTHY}


def interpret(protocol: Protocol, mode: Mode, status: int | None, body: str | None) -> HealthProbe:
    """One probe's health state.

    `status` is the HTTP status code, or None when there was no answer: a refused or failed
    connect, an unreachable endpoint, a timeout. For TCP any status means the connect
    succeeded. `body` is the answer's text (None or "" when there is none).
    """
    if protocol == "tcp":
        if status is None:
            return HealthProbe(state=HealthState.UNHEALTHY, detail="TCP connect failed")
        return HealthProbe(state=HealthState.HEALTHY, detail="TCP connect succeeded")
    if status is None:
        silent = HealthState.UNKNOWN if mode == "rich" else HealthState.UNHEALTHY
        return HealthProbe(state=silent, detail="no answer (refused, unreachable or timed out)")
    success = 200 <= status < 300
    if mode == "binary":
        return HealthProbe(
            state=HealthState.HEALTHY if success else HealthState.UNHEALTHY,
            detail=f"HTTP {status}",
        )
    if not success:
        return HealthProbe(state=HealthState.UNKNOWN, detail=f"HTTP {status} (not 2xx)")
    document = _json_object(body)
    if document is None:
        return HealthProbe(state=HealthState.UNKNOWN, detail=f"HTTP {status} without a JSON object body")
    reported = document.get("ApplicationHealthState")
    state = RICH_STATES.get(reported) if isinstance(reported, str) else None
    if state is None:
        return HealthProbe(
            state=HealthState.UNKNOWN,
            detail=f"HTTP {status} with an invalid ApplicationHealthState ({reported!r})",
        )
    metrics, problem = _custom_metrics(document.get("customMetrics"))
    said = document.get("detail")  # not Azure's; the emulator says why
    note = "; ".join(str(part) for part in (f"HTTP {status}: {reported}", said, problem) if part)
    return HealthProbe(state=state, custom_metrics=metrics, detail=note)


def _json_object(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _custom_metrics(raw: Any) -> tuple[CustomMetrics, str | None]:
    """The `rollingUpgrade` metrics of a `customMetrics` JSON string; unreadable ones are
    ignored (the state stands), with the reason."""
    if raw is None or raw == "":
        return CustomMetrics(), None
    if not isinstance(raw, str):
        return CustomMetrics(), "customMetrics ignored: it must be a JSON string"
    try:
        document = json.loads(raw)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        return CustomMetrics.model_validate(document.get("rollingUpgrade") or {}), None
    except (ValueError, ValidationError) as err:
        reason = "invalid rollingUpgrade" if isinstance(err, ValidationError) else str(err)
        return CustomMetrics(), f"customMetrics ignored: {reason}"
