"""Alarm gates, the pure part: what an alarm's answer means (Firing, Ok or Unreachable, with its
value), when alarms are read, and the words and errors of an alarm that stops or holds an upgrade.

An alarm that cannot be read is not firing: an answer that says nothing clear (an HTTP error, a
value neither firing nor ok, a Prometheus error) is Unreachable with why, and the upgrade holds
before its next batch rather than stop or go on blind.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from models.alarms import Alarm, AlarmReading, AlarmState, HttpAlarm, MetricAlertSeries, PrometheusAlarm
from models.errors import AlarmErrorCode
from models.policy import ApplicationHealthSettings, format_duration
from models.status import ApiError, ApiErrorBase

# Alarms are read at least this far apart during a health wait: each read is a durable timer and
# an activity in the upgrade's history (about 7 events), so a 5-minute wait costs ~200 events at
# most, and no alarm system evaluates much faster (Azure Monitor: every minute at best).
MIN_READ_INTERVAL = timedelta(seconds=10)
# An answer's text kept in a reading's detail, at most.
DETAIL_LIMIT = 200


def read_interval(health: ApplicationHealthSettings) -> timedelta:
    """How often alarms are read during a batch and while they hold the upgrade: the health
    probe interval, but at least MIN_READ_INTERVAL."""
    return max(MIN_READ_INTERVAL, timedelta(seconds=health.interval_in_seconds))


def reading(
    alarm: Alarm, state: AlarmState, value: str | None = None, detail: str | None = None
) -> AlarmReading:
    return AlarmReading(name=alarm.name, state=state, value=value, detail=detail)


def unreachable(alarm: Alarm, why: str) -> AlarmReading:
    return reading(alarm, AlarmState.UNREACHABLE, detail=why[:DETAIL_LIMIT])


def _number(value: float) -> str:
    return f"{value:g}"


def _answer(status: int, body: str) -> tuple[Any, str | None]:
    """The JSON document of a 2xx answer, or why there is none."""
    if not 200 <= status < 300:
        return None, f"answered HTTP {status}: {body.strip()[:80]}".rstrip(": ")
    try:
        return json.loads(body), None
    except ValueError:
        return None, f"answered HTTP {status} with a body that is not JSON: {body.strip()[:80]}"


def dig(document: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(document, dict) or key not in document:
            return None
        document = document[key]
    return document


def read_http(alarm: Alarm, status: int, body: str) -> AlarmReading:
    """An HTTP alarm's answer: its `field` names the state, one of `firing` or `ok`."""
    source = alarm.http
    assert isinstance(source, HttpAlarm)
    document, why = _answer(status, body)
    if why is not None:
        return unreachable(alarm, why)
    value = dig(document, source.field)
    if value is None:
        return unreachable(alarm, f"the answer has no {source.field!r} field")
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if text in source.firing:
        return reading(alarm, AlarmState.FIRING, text)
    if text in source.ok:
        return reading(alarm, AlarmState.OK, text)
    return unreachable(
        alarm,
        f"{source.field} is {text!r}, neither firing ({', '.join(source.firing)}) nor ok "
        f"({', '.join(source.ok)})",
    )


def compare(value: float, comparison: str, threshold: float) -> bool:
    return {
        ">": value > threshold,
        ">=": value >= threshold,
        "<": value < threshold,
        "<=": value <= threshold,
        "==": value == threshold,
        "!=": value != threshold,
    }[comparison]


def _sample(raw: Any) -> float | None:
    """A Prometheus sample [time, "value"] as a number (NaN: no number)."""
    try:
        value = float(raw[1])
    except (TypeError, ValueError, IndexError):
        return None
    return None if math.isnan(value) else value


def read_prometheus(alarm: Alarm, status: int, body: str) -> AlarmReading:
    """An instant query's answer (GET /api/v1/query): firing when a sample (any of a vector, or
    the scalar) compares true with the threshold; the value shown is the one that fired, else
    the highest. No samples: Ok, "no data"."""
    source = alarm.prometheus
    assert isinstance(source, PrometheusAlarm)
    document, why = _answer(status, body)
    if document is None:  # Prometheus answers its errors (a bad query: 400) in JSON too
        try:
            document = json.loads(body)
        except ValueError:
            return unreachable(alarm, why or "no answer")
    if isinstance(document, dict) and document.get("status") == "error":
        return unreachable(alarm, f"Prometheus: {document.get('errorType')}: {document.get('error')}")
    if why is not None or not isinstance(document, dict) or document.get("status") != "success":
        return unreachable(alarm, why or f"Prometheus answered {str(document)[:80]}")
    data = document.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        samples = [result]
    elif kind == "vector" and isinstance(result, list):
        samples = [s.get("value") for s in result if isinstance(s, dict)]
    else:
        return unreachable(alarm, f"the query answered a {kind or 'missing'} result, not a vector or scalar")
    values = [v for v in (_sample(s) for s in samples) if v is not None]
    if not values:
        return reading(alarm, AlarmState.OK, "no data")
    breaching = [v for v in values if compare(v, source.comparison, source.threshold)]
    if breaching:
        return reading(alarm, AlarmState.FIRING, _number(breaching[0]))
    return reading(alarm, AlarmState.OK, _number(max(values)))


def read_metric_alert(alarm: Alarm, series: Sequence[MetricAlertSeries]) -> AlarmReading:
    """A metric alert rule's status: firing while any series it watches is Unhealthy; the value
    says how many are. A rule with no status yet has not evaluated: Ok."""
    statuses = [s.status for s in series]
    unhealthy = [s for s in statuses if s.lower() == "unhealthy"]
    if unhealthy:
        return reading(alarm, AlarmState.FIRING, f"Unhealthy ({len(unhealthy)} of {len(statuses)} series)")
    unknown = sorted({s for s in statuses if s.lower() != "healthy"})
    if unknown:
        return unreachable(
            alarm, f"the alert's status is {', '.join(unknown)}, neither Healthy nor Unhealthy"
        )
    return reading(alarm, AlarmState.OK, "Healthy" if statuses else "not evaluated yet")


def fired(readings: Sequence[AlarmReading]) -> list[AlarmReading]:
    return [r for r in readings if r.state == AlarmState.FIRING]


def unreachable_ones(readings: Sequence[AlarmReading]) -> list[AlarmReading]:
    return [r for r in readings if r.state == AlarmState.UNREACHABLE]


def described(r: AlarmReading) -> str:
    if r.state == AlarmState.UNREACHABLE:
        return f"{r.name} ({r.detail or 'no answer'})"
    return f"{r.name} ({r.value})" if r.value else r.name


def fired_error(firing: Sequence[AlarmReading], batch: int | None, rolled_back: bool) -> ApiError:
    """AlarmFired: the alarms that fired, with their values, and what became of the batch."""
    names = ", ".join(f"{r.name} (value {r.value})" if r.value else r.name for r in firing)
    if batch is None:
        when = "before the next batch started; no instance of it was touched"
    elif rolled_back:
        when = f"while batch {batch} was in flight; its instances are rolled back (rollbackOnAlarm)"
    else:
        when = f"while batch {batch} was in flight; it finished (rollbackOnAlarm is false)"
    return ApiError(
        code=AlarmErrorCode.FIRED,
        message=f"alarm {names} fired {when}. The upgrade stops: no new batch starts.",
        details=[ApiErrorBase(code=AlarmErrorCode.FIRED, target=r.name, message=r.value) for r in firing],
    )


def unreachable_reason(readings: Sequence[AlarmReading], until: datetime) -> str:
    """Why no batch starts while alarms cannot be read."""
    which = "; ".join(described(r) for r in unreachable_ones(readings))
    return (
        f"holding: alarm {which} could not be read (an alarm that cannot be read is not firing); "
        f"reading again, and faulting at {until.isoformat()} if it still cannot be read"
    )


def unreachable_error(readings: Sequence[AlarmReading], since: datetime, timeout: timedelta) -> ApiError:
    """AlarmUnreachable: alarms could not be read for alarmUnreachableTimeout."""
    gone = unreachable_ones(readings)
    return ApiError(
        code=AlarmErrorCode.UNREACHABLE,
        message=(
            f"alarm {'; '.join(described(r) for r in gone)} could not be read since "
            f"{since.isoformat()}, for the alarmUnreachableTimeout of {format_duration(timeout)}. "
            "The upgrade stops: no new batch starts."
        ),
        details=[
            ApiErrorBase(code=AlarmErrorCode.UNREACHABLE, target=r.name, message=r.detail) for r in gone
        ],
    )
