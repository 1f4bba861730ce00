"""A maintenance window as a user gives it (models/maintenance.py): the shapes accepted (a whole
OSImage maintenance configuration, its properties, the window alone), Azure's spellings made
canonical, and every refusal naming its field and what it allows."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from models.automatic import Enrollment, EnrollRequest
from models.base import describe_validation_error
from models.fleet import ScaleSetView
from models.maintenance import MaintenanceWindow, window_from_user

WINDOW = {"startDateTime": "2025-01-31 22:00", "duration": "05:00", "timeZone": "Pacific Standard Time"}
CANONICAL = {**WINDOW, "recurEvery": "Day"}


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        pytest.param(WINDOW, CANONICAL, id="the window alone, recurEvery Day by default"),
        pytest.param(
            {"properties": {"maintenanceScope": "OSImage", "maintenanceWindow": WINDOW}},
            CANONICAL,
            id="the whole configuration",
        ),
        pytest.param(
            {
                "id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Maintenance/"
                "maintenanceConfigurations/c",
                "name": "c",
                "type": "Microsoft.Maintenance/maintenanceConfigurations",
                "location": "westus2",
                "tags": {},
                "properties": {
                    "namespace": "Microsoft.Maintenance",
                    "visibility": "Custom",
                    "extensionProperties": {},
                    "maintenanceScope": "osimage",
                    "maintenanceWindow": {**WINDOW, "expirationDateTime": "9999-12-31 00:00"},
                },
            },
            {**CANONICAL, "expirationDateTime": "9999-12-31 00:00"},
            id="as Azure's GET answers it",
        ),
        pytest.param(
            {"maintenanceScope": "OSImage", "maintenanceWindow": WINDOW}, CANONICAL, id="its properties"
        ),
        pytest.param(
            {"name": "c", "location": "westus2", "maintenanceScope": "OSImage", "maintenanceWindow": WINDOW},
            CANONICAL,
            id="as the Azure CLI prints it: properties on top",
        ),
        pytest.param(
            {
                "name": "c",
                "location": "westus2",
                "maintenanceScope": "OSImage",
                "namespace": "Microsoft.Maintenance",
                "systemData": None,
                **WINDOW,
                "recurEvery": "Day",
            },
            CANONICAL,
            id="as older Azure CLIs print it: the window's fields on top too",
        ),
        pytest.param(
            {**WINDOW, "recurEvery": "1Day", "duration": "5:00", "timeZone": "pacific standard time"},
            CANONICAL,
            id="Azure's other spellings",
        ),
        pytest.param({**WINDOW, "recurEvery": "days"}, CANONICAL, id="Days"),
        pytest.param({**WINDOW, "duration": "23:59"}, {**CANONICAL, "duration": "23:59"}, id="the longest"),
    ],
)
def test_accepted(document: dict[str, Any], expected: dict[str, Any]) -> None:
    assert window_from_user(document).to_json() == expected


def refusal(document: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        window_from_user(document)
    return describe_validation_error(caught.value)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        pytest.param(
            {**WINDOW, "duration": "04:59"},
            "duration: must be hh:mm from 05:00 to 23:59: Azure's OSImage windows last at least 5 hours "
            "(got '04:59')",
            id="shorter than 5 hours",
        ),
        pytest.param(
            {**WINDOW, "duration": "24:00"},
            "duration: must be hh:mm from 05:00 to 23:59: Azure's OSImage windows last at least 5 hours "
            "(got '24:00')",
            id="a day or more",
        ),
        pytest.param(
            {**WINDOW, "duration": "PT5H"},
            "duration: must be hh:mm from 05:00 to 23:59, such as 05:00 (got 'PT5H')",
            id="not hh:mm",
        ),
        pytest.param(
            {**WINDOW, "duration": 300},
            "duration: must be hh:mm from 05:00 to 23:59, as text (quote it in YAML: '05:00') (got 300)",
            id="YAML's sexagesimal number",
        ),
        pytest.param(
            {**WINDOW, "recurEvery": "Week Saturday,Sunday"},
            "recurEvery: must be Day (or 1Day): OSImage windows recur every day (got 'Week Saturday,Sunday')",
            id="weekly",
        ),
        pytest.param(
            {**WINDOW, "recurEvery": "2Days"},
            "recurEvery: must be Day (or 1Day): OSImage windows recur every day (got '2Days')",
            id="every other day",
        ),
        pytest.param(
            {**WINDOW, "timeZone": "Mars Standard Time"},
            "timeZone: must be a Windows time zone name such as Pacific Standard Time, W. Europe "
            "Standard Time, AUS Eastern Standard Time or UTC (Windows lists them: Get-TimeZone "
            "-ListAvailable) (got 'Mars Standard Time')",
            id="unknown time zone",
        ),
        pytest.param(
            {**WINDOW, "timeZone": "Australia/Sydney"},
            "Windows calls Australia/Sydney 'AUS Eastern Standard Time' (got 'Australia/Sydney')",
            id="an IANA name: its Windows name suggested",
        ),
        pytest.param(
            {**WINDOW, "startDateTime": "2025-01-31T22:00"},
            "startDateTime: must be a local date and time as yyyy-MM-dd hh:mm (24-hour), such as "
            "2025-01-31 22:00 (got '2025-01-31T22:00')",
            id="ISO 8601 T",
        ),
        pytest.param(
            {**WINDOW, "startDateTime": "2025-02-30 22:00"},
            "startDateTime: must be a local date and time as yyyy-MM-dd hh:mm (24-hour)",
            id="no such date",
        ),
        pytest.param(
            {**WINDOW, "startDateTime": "2025-01-31 10:00 PM"},
            "(got '2025-01-31 10:00 PM')",
            id="12-hour clock",
        ),
        pytest.param(
            {**WINDOW, "expirationDateTime": "2025-01-31"},
            "expirationDateTime: must be a local date and time as yyyy-MM-dd hh:mm",
            id="expiration without a time",
        ),
        pytest.param(
            {**WINDOW, "expirationDateTime": "2025-01-31 22:00"},
            "expirationDateTime (2025-01-31 22:00) must be after startDateTime (2025-01-31 22:00)",
            id="expires before it starts",
        ),
        pytest.param(
            {"properties": {"maintenanceScope": "InGuestPatch", "maintenanceWindow": WINDOW}},
            "properties.maintenanceScope: must be OSImage: the scope of a scale set's OS image upgrades "
            "(got 'InGuestPatch')",
            id="another scope",
        ),
        pytest.param(
            {"properties": {"maintenanceWindow": WINDOW}},
            "properties.maintenanceScope: is required",
            id="no scope",
        ),
        pytest.param(
            {**WINDOW, "startTime": "22:00"}, "startTime: is not a known field", id="an unknown field"
        ),
        pytest.param(
            {"maintenanceScope": "OSImage", **WINDOW, "duration": "03:55"},
            "duration: must be hh:mm from 05:00",
            id="flattened, named by its field",
        ),
        pytest.param(
            {"maintenanceScope": "InGuestPatch", **WINDOW},
            "maintenanceScope: must be OSImage",
            id="flattened, another scope",
        ),
        pytest.param(
            {"duration": "05:00"}, "startDateTime: is required\ntimeZone: is required", id="missing"
        ),
        pytest.param(
            {"properties": {"maintenanceScope": "OSImage", "maintenanceWindow": {**WINDOW, "duration": "1"}}},
            "properties.maintenanceWindow.duration: must be hh:mm",
            id="named by its path in the configuration",
        ),
    ],
)
def test_refused_by_field(document: dict[str, Any], expected: str) -> None:
    assert expected in refusal(document)


def test_payloads_without_a_window_still_parse() -> None:
    # Recorded before maintenance windows: the new fields default to None.
    enrollment = Enrollment.model_validate({"scaleSet": "web", "policy": {}})
    assert enrollment.maintenance_window is None and enrollment.assigned_maintenance_window is None
    assert enrollment.effective_maintenance_window is None
    assert EnrollRequest.model_validate({"scaleSet": "web"}).maintenance_window is None
    image = {"publisher": "p", "offer": "o", "sku": "s"}
    document = {"name": "web", "id": "x", "location": "eastus", "imageReference": image}
    view = ScaleSetView.model_validate(document)
    assert view.maintenance_window is None and "maintenanceWindow" not in view.to_json()


def test_the_set_s_assigned_window_governs_the_enrollment() -> None:
    given = MaintenanceWindow.model_validate(WINDOW)
    assigned = MaintenanceWindow.model_validate({**WINDOW, "timeZone": "UTC"})
    enrollment = Enrollment(scale_set="web", policy={}, maintenance_window=given)
    assert enrollment.effective_maintenance_window == given
    enrollment.assigned_maintenance_window = assigned
    assert enrollment.effective_maintenance_window == assigned
    again = Enrollment.model_validate(enrollment.to_json())  # a payload round trip
    assert (again.maintenance_window, again.assigned_maintenance_window) == (given, assigned)
