"""Alarm gates: alarms a policy names, which an upgrade reads before every batch and during its
health wait (docs/usage.md, "Alarm gates").

Each alarm has a name and one source: an HTTP endpoint answering a JSON state, a Prometheus
instant query compared with a threshold, or an Azure Monitor metric alert read through ARM. A
reading is Firing, Ok, or Unreachable (with why): an alarm that cannot be read is not firing.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from models.base import AzureModel

COMPARISONS = (">", ">=", "<", "<=", "==", "!=")
Comparison = Literal[">", ">=", "<", "<=", "==", "!="]
SOURCES = ("http", "prometheus", "azureMonitor")


def _web_url(value: Any) -> Any:
    if not isinstance(value, str) or not value.lower().startswith(("http://", "https://")):
        raise ValueError(f"must be an http:// or https:// URL (got {value!r})")
    return value


class HttpAlarm(AzureModel):
    """GET `url`; the JSON answer's `field` (a dotted path) says the state: one of `firing`, or
    one of `ok`. Any other answer (not JSON, another value, not 2xx) is Unreachable."""

    url: str
    field: str = "state"
    firing: list[str] = Field(default_factory=lambda: ["firing"])
    ok: list[str] = Field(default_factory=lambda: ["ok"])

    _url = field_validator("url", mode="before")(_web_url)

    @model_validator(mode="after")
    def _distinct(self) -> HttpAlarm:
        if not self.firing or not self.ok:
            raise ValueError("firing and ok must each list at least one value")
        if both := set(self.firing) & set(self.ok):
            raise ValueError(f"firing and ok may not share a value ({', '.join(sorted(both))})")
        return self


class PrometheusAlarm(AzureModel):
    """An instant query (GET `url`/api/v1/query): firing when a sample's value `comparison`
    `threshold` (any sample of a vector). No samples: Ok (no data is not an alarm)."""

    url: str = Field(description="the Prometheus server, e.g. http://prometheus:9090")
    query: str = Field(min_length=1)
    threshold: float
    comparison: Comparison = ">"

    _url = field_validator("url", mode="before")(_web_url)

    @field_validator("comparison", mode="before")
    @classmethod
    def _known(cls, value: Any) -> Any:
        if value not in COMPARISONS:
            raise ValueError(f"must be one of {' '.join(COMPARISONS)} (got {value!r})")
        return value


class AzureMonitorAlarm(AzureModel):
    """An Azure Monitor metric alert rule (Microsoft.Insights/metricAlerts), read through ARM:
    its status (.../metricAlerts/{name}/status), firing while any of its series is Unhealthy.
    `metricAlert`: the rule's name in the fleet's resource group, or its full resource id."""

    metric_alert: str = Field(min_length=1)

    @field_validator("metric_alert")
    @classmethod
    def _name_or_id(cls, value: str) -> str:
        if value.startswith("/") and "/providers/microsoft.insights/metricalerts/" not in value.lower():
            raise ValueError(
                "must be a metric alert rule's name or its resource id "
                "(/subscriptions/…/providers/Microsoft.Insights/metricAlerts/NAME)"
            )
        return value


class Alarm(AzureModel):
    """One alarm of a policy: a name and exactly one source."""

    name: str = Field(min_length=1, max_length=80)
    http: HttpAlarm | None = None
    prometheus: PrometheusAlarm | None = None
    azure_monitor: AzureMonitorAlarm | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Alarm:
        given = [s for s, v in zip(SOURCES, (self.http, self.prometheus, self.azure_monitor)) if v]
        if len(given) != 1:
            raise ValueError(
                f"alarm {self.name!r} needs exactly one source: http, prometheus or azureMonitor "
                f"(got {', '.join(given) or 'none'})"
            )
        return self

    @property
    def source(self) -> str:
        if self.http is not None:
            return f"http {self.http.url}"
        if self.prometheus is not None:
            p = self.prometheus
            return f"prometheus {p.query} {p.comparison} {p.threshold:g}"
        assert self.azure_monitor is not None
        return f"azure monitor metric alert {self.azure_monitor.metric_alert}"


def check_alarm_names(alarms: list[Alarm]) -> list[Alarm]:
    names = [a.name.lower() for a in alarms]
    if len(set(names)) != len(names):
        raise ValueError("each alarm needs a name of its own")
    return alarms


class AlarmState(StrEnum):
    FIRING = "Firing"
    OK = "Ok"
    UNREACHABLE = "Unreachable"  # could not be read: not firing (the upgrade holds)


class AlarmReading(AzureModel):
    """One alarm as last read: its state, its value (the answer's state, the query's value, the
    alert's status) and, when Unreachable, why."""

    name: str
    state: AlarmState
    value: str | None = None
    detail: str | None = None
    read_at: AwareDatetime | None = None


class MetricAlertSeries(AzureModel):
    """One entry of a metric alert rule's status (Metric Alerts Status - List): one per time
    series the rule watches (its dimensions), Healthy or Unhealthy."""

    status: str = ""
    timestamp: str | None = None
    dimensions: dict[str, str] | None = None


# The activity's input and output (activities/alarms.py).
READ_ALARMS = "read_alarms"


class ReadAlarmsInput(AzureModel):
    alarms: list[Alarm]


class ReadAlarmsResult(AzureModel):
    readings: list[AlarmReading]


class AlarmSignal(AzureModel):
    """The upgrade tells its batch children that an alarm fired (rollbackOnAlarm): they stop
    their health waits at once, and the upgrade rolls the batch back."""

    reason: str
