"""Alarm gates' decisions (rules/alarms.py) as tables: what each source's answer means (Firing, Ok,
or Unreachable with why), the read interval, and the errors that name the alarm and its value."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from models.alarms import Alarm, AlarmReading, AlarmState, MetricAlertSeries
from models.errors import AlarmErrorCode, FailureCause
from models.policy import ApplicationHealthSettings
from models.upgrade import InstanceOutcome, InstanceState
from rules import alarms, presentation, reporting
from tests.helpers.ledgers import ledger_of, run_batch, succeeded

FIRING, OK, UNREACHABLE = AlarmState.FIRING, AlarmState.OK, AlarmState.UNREACHABLE
HTTP = Alarm.model_validate({"name": "app", "http": {"url": "http://alarms/app"}})
HTTP_CUSTOM = Alarm.model_validate(
    {
        "name": "app",
        "http": {"url": "http://a", "field": "status.level", "firing": ["red"], "ok": ["green", "amber"]},
    }
)
PROMETHEUS = Alarm.model_validate(
    {"name": "errors", "prometheus": {"url": "http://prom:9090", "query": "rate(x[5m])", "threshold": 0.05}}
)
BELOW = Alarm.model_validate(
    {
        "name": "success",
        "prometheus": {"url": "http://prom", "query": "q", "threshold": 0.99, "comparison": "<"},
    }
)
AZURE = Alarm.model_validate({"name": "cpu", "azureMonitor": {"metricAlert": "high-cpu"}})


def vector(*values: str) -> str:
    result = [{"metric": {"job": "web"}, "value": [1700000000.0, v]} for v in values]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})


@pytest.mark.parametrize(
    ("alarm", "status", "body", "state", "value", "why"),
    [
        pytest.param(HTTP, 200, '{"state": "ok"}', OK, "ok", None, id="ok"),
        pytest.param(HTTP, 200, '{"state": "firing"}', FIRING, "firing", None, id="firing"),
        pytest.param(
            HTTP, 200, '{"state": "pending"}', UNREACHABLE, None, "neither firing", id="another value"
        ),
        pytest.param(HTTP, 200, '{"other": 1}', UNREACHABLE, None, "no 'state' field", id="no field"),
        pytest.param(HTTP, 200, "<html>", UNREACHABLE, None, "not JSON", id="not JSON"),
        pytest.param(HTTP, 503, '{"state": "ok"}', UNREACHABLE, None, "HTTP 503", id="an error answer"),
        pytest.param(
            HTTP_CUSTOM, 200, '{"status": {"level": "amber"}}', OK, "amber", None, id="dotted field"
        ),
        pytest.param(HTTP_CUSTOM, 200, '{"status": {"level": "red"}}', FIRING, "red", None, id="own words"),
    ],
)
def test_http_answers(alarm, status, body, state, value, why):
    reading = alarms.read_http(alarm, status, body)
    assert (reading.state, reading.value) == (state, value)
    assert (why is None and reading.detail is None) or why in reading.detail


@pytest.mark.parametrize(
    ("alarm", "status", "body", "state", "value", "why"),
    [
        pytest.param(PROMETHEUS, 200, vector("0.01"), OK, "0.01", None, id="below the threshold"),
        pytest.param(PROMETHEUS, 200, vector("0.05"), OK, "0.05", None, id="at the threshold is not above"),
        pytest.param(
            PROMETHEUS, 200, vector("0.01", "0.2"), FIRING, "0.2", None, id="any sample of a vector"
        ),
        pytest.param(PROMETHEUS, 200, vector(), OK, "no data", None, id="no samples: no data"),
        pytest.param(PROMETHEUS, 200, vector("NaN"), OK, "no data", None, id="NaN is no number"),
        pytest.param(
            BELOW,
            200,
            json.dumps({"status": "success", "data": {"resultType": "scalar", "result": [1, "0.9"]}}),
            FIRING,
            "0.9",
            None,
            id="a scalar below a < threshold",
        ),
        pytest.param(
            PROMETHEUS,
            400,
            json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"}),
            UNREACHABLE,
            None,
            "bad_data: parse error",
            id="a bad query",
        ),
        pytest.param(
            PROMETHEUS,
            200,
            json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}),
            UNREACHABLE,
            None,
            "a matrix result",
            id="a range result",
        ),
        pytest.param(PROMETHEUS, 502, "bad gateway", UNREACHABLE, None, "HTTP 502", id="an error answer"),
    ],
)
def test_prometheus_answers(alarm, status, body, state, value, why):
    reading = alarms.read_prometheus(alarm, status, body)
    assert (reading.state, reading.value) == (state, value)
    assert (why is None and reading.detail is None) or why in reading.detail


@pytest.mark.parametrize(
    ("statuses", "state", "says"),
    [
        pytest.param(["Healthy"], OK, "Healthy", id="healthy"),
        pytest.param([], OK, "not evaluated yet", id="no status yet"),
        pytest.param(
            ["Healthy", "Unhealthy", "Healthy"], FIRING, "Unhealthy (1 of 3 series)", id="one series"
        ),
        pytest.param(["Degraded"], UNREACHABLE, "Degraded, neither", id="an unknown status"),
    ],
)
def test_metric_alert_statuses(statuses, state, says):
    reading = alarms.read_metric_alert(AZURE, [MetricAlertSeries(status=s) for s in statuses])
    assert reading.state == state
    assert says in (reading.value or reading.detail or "")


@pytest.mark.parametrize(
    ("comparison", "value", "fires"),
    [
        (">", 2, True),
        (">", 1, False),
        (">=", 1, True),
        ("<", 0, True),
        ("<=", 2, False),
        ("==", 1, True),
        ("!=", 1, False),
    ],
)
def test_comparisons_against_a_threshold_of_one(comparison, value, fires):
    assert alarms.compare(value, comparison, 1) is fires


@pytest.mark.parametrize(
    ("interval", "every"),
    [(1, 10), (5, 10), (10, 10), (30, 30), (60, 60)],
)
def test_alarms_are_read_every_probe_interval_but_at_least_ten_seconds_apart(interval, every):
    health = ApplicationHealthSettings(interval_in_seconds=interval)
    assert alarms.read_interval(health) == timedelta(seconds=every)


def test_a_fired_alarm_is_named_with_its_value_and_says_what_became_of_the_batch():
    fired = [AlarmReading(name="errors", state=FIRING, value="0.2")]
    rolled = alarms.fired_error(fired, 3, rolled_back=True)
    assert rolled.code == AlarmErrorCode.FIRED
    assert "alarm errors (value 0.2) fired while batch 3 was in flight" in rolled.message
    assert "rolled back (rollbackOnAlarm)" in rolled.message
    assert "rollbackOnAlarm is false" in alarms.fired_error(fired, 3, rolled_back=False).message
    before = alarms.fired_error(fired, None, rolled_back=False).message
    assert "before the next batch started; no instance of it was touched" in before


def test_unreachable_alarms_hold_then_fault_naming_the_alarm_and_the_error():
    since = datetime(2027, 2, 1, 12, tzinfo=UTC)
    readings = [
        AlarmReading(name="app", state=UNREACHABLE, detail="ConnectError: refused"),
        AlarmReading(name="errors", state=OK, value="0.01"),
    ]
    reason = alarms.unreachable_reason(readings, since + timedelta(minutes=10))
    assert reason.startswith("holding: alarm app (ConnectError: refused) could not be read")
    assert "errors" not in reason
    error = alarms.unreachable_error(readings, since, timedelta(minutes=10))
    assert error.code == AlarmErrorCode.UNREACHABLE
    assert (
        "alarm app (ConnectError: refused) could not be read since 2027-02-01T12:00:00+00:00" in error.message
    )
    assert "alarmUnreachableTimeout of PT10M" in error.message
    assert [d.target for d in error.details] == ["app"]


def test_the_status_and_the_web_ui_show_each_alarm_as_last_read():
    ledger = ledger_of(4)
    read_at = datetime(2026, 12, 1, 12, tzinfo=UTC)
    ledger.observe_alarms(
        [
            AlarmReading(name="app", state=OK, value="ok", read_at=read_at),
            AlarmReading(name="cpu", state=UNREACHABLE, detail="ResourceNotFound: gone", read_at=read_at),
        ]
    )
    ledger.observe_alarms([AlarmReading(name="app", state=FIRING, value="firing", read_at=read_at)])
    shown = reporting.status(ledger).to_json()["properties"]["alarms"]
    at = "2026-12-01T12:00:00Z"
    assert shown == [
        {"name": "app", "state": "Firing", "value": "firing", "readAt": at},
        {
            "name": "cpu",
            "state": "Unreachable",
            "detail": "ResourceNotFound: gone",
            "readAt": "2026-12-01T12:00:00Z",
        },
    ]
    details = presentation.current_details(ledger)
    assert "| app | Firing at 2026-12-01T12:00:00+00:00 | firing |" in details
    assert "| cpu | Unreachable at 2026-12-01T12:00:00+00:00 | ResourceNotFound: gone |" in details
    assert "alarms" not in reporting.status(ledger_of(4)).to_json()["properties"]


def failed_by(instance_id: str, cause: FailureCause) -> InstanceOutcome:
    return InstanceOutcome(instance_id=instance_id, state=InstanceState.FAILED, cause=cause)


@pytest.mark.parametrize(
    ("outcomes", "struck"),
    [
        pytest.param([succeeded("2"), succeeded("3")], ["2", "3"], id="healthy instances too"),
        pytest.param(
            [
                succeeded("2"),
                InstanceOutcome(instance_id="3", state=InstanceState.FAILED, cause=FailureCause.ALARM),
            ],
            ["2", "3"],
            id="one cut short by the alarm",
        ),
        pytest.param(
            [succeeded("2"), InstanceOutcome(instance_id="3", state=InstanceState.ROLLED_BACK)],
            ["2"],
            id="one rolled back already",
        ),
        pytest.param(
            [
                succeeded("2"),
                InstanceOutcome(
                    instance_id="3", state=InstanceState.FAILED, cause=FailureCause.INFRASTRUCTURE
                ),
            ],
            ["2"],
            id="one the fleet failed: nothing to undo",
        ),
    ],
)
def test_an_alarm_strikes_exactly_the_batch_in_flight(outcomes, struck):
    ledger = ledger_of(6)
    run_batch(ledger, [succeeded("0"), succeeded("1")])
    run_batch(ledger, outcomes)
    hit = ledger.struck_by_alarm(2, "an alarm fired")
    assert [p.instance_id for p in hit] == struck
    assert all(p.state == InstanceState.FAILED and p.cause in (FailureCause.ALARM,) for p in hit)
    assert [ledger.instances[i].state for i in ("0", "1")] == [InstanceState.SUCCEEDED] * 2
