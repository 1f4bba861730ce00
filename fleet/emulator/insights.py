"""Microsoft.Insights metric alert rules in the emulator, for alarm gates: GET a rule
(`.../providers/Microsoft.Insights/metricAlerts/{name}`) and its status (`.../status`: Metric
Alerts Status - List, one series, Healthy or Unhealthy), on the ARM router (its token,
api-version and scope checks). A rule that does not exist is 404 ResourceNotFound.

Tests set rules up through the admin API (`PUT /admin/metricAlerts/{name}`): the status, the
next answers one per status read (then the status), and faults of the rule's own reads: the next
`throttleCalls` are 429 TooManyRequests with Retry-After, the next `failCalls` 500.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from fleet.emulator.cloud import RESOURCE_GROUP, SUBSCRIPTION, Cloud, CloudError

INSIGHTS = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Insights/metricAlerts/{name}"
RULE_TYPE = "Microsoft.Insights/metricAlerts"
STATUSES = ("Healthy", "Unhealthy")


def rule_id(name: str) -> str:
    return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/{RULE_TYPE}/{name}"


def _status(value: Any) -> str:
    if value not in STATUSES:
        raise CloudError(400, "InvalidParameter", f"status: must be Healthy or Unhealthy (got {value!r})")
    return str(value)


def _count(body: dict[str, Any], key: str) -> int:
    value = body.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CloudError(400, "InvalidParameter", f"{key}: must be a whole number from 0 (got {value!r})")
    return value


def set_metric_alert(cloud: Cloud, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """The admin PUT: {"status", "answers": optional, "throttleCalls", "failCalls"}."""
    status = _status(body.get("status", "Healthy"))
    answers = [_status(a) for a in body.get("answers") or []]
    cloud.db.execute(
        "INSERT OR REPLACE INTO metric_alerts (name, display_name, status, answers, throttle_calls,"
        " fail_calls, reads, changed_at) VALUES (?, ?, ?, ?, ?, ?,"
        " COALESCE((SELECT reads FROM metric_alerts WHERE name = ?), 0), ?)",
        (
            name.lower(),
            name,
            status,
            json.dumps(answers),
            _count(body, "throttleCalls"),
            _count(body, "failCalls"),
            name.lower(),
            time.time(),
        ),
    )
    return metric_alert(cloud, name)


def metric_alert(cloud: Cloud, name: str) -> dict[str, Any]:
    """The admin GET: the rule's status, answers left and status reads so far."""
    row = _row(cloud, name)
    return {
        "name": row["display_name"],
        "status": row["status"],
        "answers": json.loads(row["answers"]),
        "reads": row["reads"],
    }


def _row(cloud: Cloud, name: str) -> Any:
    row = cloud.db.execute("SELECT * FROM metric_alerts WHERE name = ?", (name.lower(),)).fetchone()
    if row is None:
        raise CloudError(
            404,
            "ResourceNotFound",
            f"The Resource '{RULE_TYPE}/{name}' under resource group '{RESOURCE_GROUP}' was not found.",
        )
    return row


def add_insights_routes(router: APIRouter, cloud: Cloud) -> None:
    def rule(name: str) -> dict[str, Any]:
        row = _row(cloud, name)
        return {
            "id": rule_id(row["display_name"]),
            "name": row["display_name"],
            "type": RULE_TYPE,
            "location": "global",
            "properties": {
                "severity": 3,
                "enabled": True,
                "scopes": [],
                "evaluationFrequency": "PT1M",
                "windowSize": "PT5M",
            },
        }

    def faulted(name: str) -> JSONResponse | None:
        """The rule's own faults, one per read: 429s first, then 500s."""
        row = _row(cloud, name)
        if row["throttle_calls"]:
            cloud.db.execute(
                "UPDATE metric_alerts SET throttle_calls = throttle_calls - 1 WHERE name = ?", (name.lower(),)
            )
            return JSONResponse(
                {"error": {"code": "TooManyRequests", "message": "The request was throttled."}},
                status_code=429,
                headers={"Retry-After": "1"},
            )
        if row["fail_calls"]:
            cloud.db.execute(
                "UPDATE metric_alerts SET fail_calls = fail_calls - 1 WHERE name = ?", (name.lower(),)
            )
            return JSONResponse(
                {"error": {"code": "InternalServerError", "message": "An internal error occurred."}},
                status_code=500,
            )
        return None

    @router.get(INSIGHTS, response_model=None)
    async def get_rule(name: str) -> dict[str, Any] | JSONResponse:
        return faulted(name) or rule(name)

    @router.get(INSIGHTS + "/status", response_model=None)
    async def list_status(name: str) -> dict[str, Any] | JSONResponse:
        if (fault := faulted(name)) is not None:
            return fault
        row = _row(cloud, name)
        answers = json.loads(row["answers"])
        status = answers.pop(0) if answers else row["status"]
        cloud.db.execute(
            "UPDATE metric_alerts SET answers = ?, reads = reads + 1 WHERE name = ?",
            (json.dumps(answers), name.lower()),
        )
        return {
            "value": [
                {
                    "id": rule_id(row["display_name"]),
                    "name": "c2VyaWVzLTE",  # Azure names each series by its encoded dimensions
                    "type": f"{RULE_TYPE}/status",
                    "properties": {
                        "dimensions": {"resourceId": rule_id(row["display_name"])},
                        "status": status,
                        "timestamp": datetime.now(UTC).isoformat(),
                    },
                }
            ]
        }
