"""Reading alarm gates: each alarm of a policy, all at once, through its source (an HTTP endpoint
or a Prometheus server with httpx; an Azure Monitor metric alert through the fleet back end's
paced ARM reads). What an answer means is rules/alarms.py's.

An alarm that cannot be read is a reading (Unreachable, with why), not a failed activity: the
upgrade decides what to do about it (hold, then fault after alarmUnreachableTimeout), and its
history keeps one result per read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio import activity

from fleet.errors import FleetError
from fleet.protocol import FleetBackend
from models.alarms import READ_ALARMS, Alarm, AlarmReading, ReadAlarmsInput, ReadAlarmsResult
from rules import alarms as rules

# One answer, at most: an alarm slower than this is Unreachable for this read.
ALARM_TIMEOUT = 10.0


class AlarmActivities:
    def __init__(self, fleet: FleetBackend, timeout: float = ALARM_TIMEOUT) -> None:
        self.fleet = fleet
        self.timeout = timeout

    def all(self) -> list[Callable[..., Any]]:
        return [self.read_alarms]

    @activity.defn(name=READ_ALARMS)
    async def read_alarms(self, request: ReadAlarmsInput) -> ReadAlarmsResult:
        async with httpx.AsyncClient(timeout=self.timeout) as http:
            readings = await asyncio.gather(*(self._read(http, alarm) for alarm in request.alarms))
        now = datetime.now(UTC)
        return ReadAlarmsResult(readings=[r.model_copy(update={"read_at": now}) for r in readings])

    async def _read(self, http: httpx.AsyncClient, alarm: Alarm) -> AlarmReading:
        try:
            if alarm.http is not None:
                response = await http.get(alarm.http.url, headers={"Accept": "application/json"})
                return rules.read_http(alarm, response.status_code, response.text)
            if alarm.prometheus is not None:
                url = alarm.prometheus.url.rstrip("/") + "/api/v1/query"
                response = await http.get(url, params={"query": alarm.prometheus.query})
                return rules.read_prometheus(alarm, response.status_code, response.text)
            assert alarm.azure_monitor is not None
            series = await asyncio.wait_for(
                self.fleet.read_metric_alert(alarm.azure_monitor.metric_alert), timeout=6 * self.timeout
            )
            return rules.read_metric_alert(alarm, series)
        except httpx.HTTPError as err:
            return rules.unreachable(alarm, f"{type(err).__name__}: {err}".rstrip(": "))
        except FleetError as err:
            return rules.unreachable(alarm, f"{err.code}: {err.message}")
        except TimeoutError:
            return rules.unreachable(alarm, "ARM did not answer in time")
