"""Maintenance windows: the hours in which a scale set's automatic OS image upgrades may run, in the
shape of Azure's maintenance configuration (`Microsoft.Maintenance/maintenanceConfigurations` with
`maintenanceScope: OSImage`, assigned to the set by a configuration assignment) and with Azure's
rules for that scope: a window of at least 5 hours that recurs every day.

Fields are spelled, and take values, as `az maintenance configuration create` does:
`startDateTime` "2025-01-31 22:00" (local time in `timeZone`), `duration` "05:00", `recurEvery`
"Day", `timeZone` a Windows name such as "Pacific Standard Time", optional `expirationDateTime`.
Each is kept as Azure writes it (canonical spelling); the properties read them. Where the window
falls on a given day, across daylight saving changes, is rules/maintenance_windows.py.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Self

from pydantic import BeforeValidator, Field, model_validator

from models.base import AzureModel
from models.time_zones import WINDOWS_TIME_ZONES, windows_name

OS_IMAGE = "OSImage"  # the maintenanceScope of OS image upgrades of a scale set
DAY = "Day"
MIN_DURATION = timedelta(hours=5)  # Azure's least for OSImage
MAX_DURATION = timedelta(hours=23, minutes=59)  # a daily window: shorter than a day
DATE_TIME_FORMAT = "%Y-%m-%d %H:%M"  # Azure's "yyyy-MM-dd hh:mm" (24-hour)

_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}")
_DURATION = re.compile(r"(\d{1,2}):(\d{2})")
# What Azure takes for a daily recurrence: [frequency]Day(s), frequency 1 when left out.
_DAILY = re.compile(r"(1)?days?", re.IGNORECASE)
# The spellings a user may mean by an IANA name: its Windows name, for the refusal's hint.
_WINDOWS_OF_IANA = {iana.lower(): name for name, iana in reversed(WINDOWS_TIME_ZONES.items())}


def parse_duration(text: str) -> timedelta:
    """`hh:mm` as a timedelta (ValueError otherwise)."""
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match.group(2)) > 59:
        raise ValueError(text)
    return timedelta(hours=int(match.group(1)), minutes=int(match.group(2)))


def format_hours(value: timedelta) -> str:
    """A duration as Azure writes it: hh:mm."""
    minutes = int(value.total_seconds() // 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _local_date_time(value: Any) -> str:
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and _DATE_TIME.fullmatch(text):
        try:
            return datetime.strptime(text, DATE_TIME_FORMAT).strftime(DATE_TIME_FORMAT)
        except ValueError:
            pass
    raise ValueError(
        "must be a local date and time as yyyy-MM-dd hh:mm (24-hour), such as 2025-01-31 22:00 "
        f"(got {value!r})"
    )


def _duration(value: Any) -> str:
    allowed = f"must be hh:mm from {format_hours(MIN_DURATION)} to {format_hours(MAX_DURATION)}"
    if not isinstance(value, str):  # YAML reads an unquoted 5:00 as the number 300
        raise ValueError(f"{allowed}, as text (quote it in YAML: '05:00') (got {value!r})")
    try:
        duration = parse_duration(value)
    except ValueError:
        raise ValueError(f"{allowed}, such as 05:00 (got {value!r})") from None
    if not MIN_DURATION <= duration <= MAX_DURATION:
        raise ValueError(f"{allowed}: Azure's OSImage windows last at least 5 hours (got {value!r})")
    return format_hours(duration)


def _recurrence(value: Any) -> str:
    if isinstance(value, str) and _DAILY.fullmatch(value.strip()):
        return DAY
    raise ValueError(f"must be Day (or 1Day): OSImage windows recur every day (got {value!r})")


def _time_zone(value: Any) -> str:
    name = windows_name(value) if isinstance(value, str) else None
    if name is not None:
        return name
    hint = _WINDOWS_OF_IANA.get(value.strip().lower()) if isinstance(value, str) else None
    said = f"; Windows calls {value.strip()} '{hint}'" if hint else ""
    raise ValueError(
        "must be a Windows time zone name such as Pacific Standard Time, W. Europe Standard Time, "
        "AUS Eastern Standard Time or UTC (Windows lists them: Get-TimeZone -ListAvailable)"
        f"{said} (got {value!r})"
    )


def _scope(value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() == OS_IMAGE.lower():
        return OS_IMAGE
    raise ValueError(f"must be {OS_IMAGE}: the scope of a scale set's OS image upgrades (got {value!r})")


LocalDateTime = Annotated[str, BeforeValidator(_local_date_time)]


class MaintenanceWindow(AzureModel):
    """properties.maintenanceWindow of an OSImage maintenance configuration."""

    start_date_time: LocalDateTime = Field(
        description="the first window's start, local time in timeZone; each day's starts at its time of day"
    )
    duration: Annotated[str, BeforeValidator(_duration)] = Field(description="hh:mm, 05:00 to 23:59")
    time_zone: Annotated[str, BeforeValidator(_time_zone)] = Field(description="a Windows time zone name")
    recur_every: Annotated[str, BeforeValidator(_recurrence)] = DAY
    expiration_date_time: LocalDateTime | None = Field(
        default=None, description="local time in timeZone; no window starts from then on"
    )

    @model_validator(mode="after")
    def _expires_after_start(self) -> Self:
        if self.local_expiration is not None and self.local_expiration <= self.local_start:
            raise ValueError(
                f"expirationDateTime ({self.expiration_date_time}) must be after startDateTime "
                f"({self.start_date_time})"
            )
        return self

    @property
    def local_start(self) -> datetime:
        """The first window's start, as a wall clock time in the window's time zone."""
        return datetime.strptime(self.start_date_time, DATE_TIME_FORMAT)

    @property
    def local_expiration(self) -> datetime | None:
        if self.expiration_date_time is None:
            return None
        return datetime.strptime(self.expiration_date_time, DATE_TIME_FORMAT)

    @property
    def length(self) -> timedelta:
        return parse_duration(self.duration)

    @property
    def iana_time_zone(self) -> str:
        return WINDOWS_TIME_ZONES[self.time_zone]

    def text(self) -> str:
        """The window in one line: `daily 22:00 for 05:00 (Pacific Standard Time) from 2025-01-31`."""
        expires = f", until {self.expiration_date_time}" if self.expiration_date_time else ""
        start = self.local_start
        return f"daily {start:%H:%M} for {self.duration} ({self.time_zone}) from {start:%Y-%m-%d}{expires}"


class _ResourceFields(AzureModel):
    """What ARM writes of any resource: read and left alone."""

    id: str | None = None
    name: str | None = None
    type_: str | None = Field(default=None, alias="type")
    location: str | None = None
    tags: dict[str, str] | None = None
    system_data: dict[str, Any] | None = None


class _OtherProperties(AzureModel):
    """What Azure writes of a configuration besides its scope and window: read and left alone."""

    namespace: str | None = None
    visibility: str | None = None
    extension_properties: dict[str, str] | None = None
    install_patches: dict[str, Any] | None = None


class OSImageScoped(AzureModel):
    """maintenanceScope, which must be OSImage here."""

    maintenance_scope: Annotated[str, BeforeValidator(_scope)]


class MaintenanceConfigurationProperties(_OtherProperties, OSImageScoped):
    maintenance_window: MaintenanceWindow


class MaintenanceConfiguration(_ResourceFields):
    """A `Microsoft.Maintenance/maintenanceConfigurations` resource, as its REST body has it."""

    properties: MaintenanceConfigurationProperties


class _PropertiesOnTop(_ResourceFields, MaintenanceConfigurationProperties):
    """A configuration with its properties on the top level (as the Azure CLI prints one)."""


class _WindowOnTop(_ResourceFields, _OtherProperties, OSImageScoped, MaintenanceWindow):
    """A configuration with its window's fields on the top level too (the SDK's flattened model,
    as older Azure CLI versions print one)."""

    @property
    def window(self) -> MaintenanceWindow:
        return MaintenanceWindow.model_validate(self.model_dump(include=set(MaintenanceWindow.model_fields)))


def window_from_user(document: dict[str, Any]) -> MaintenanceWindow:
    """The window a user's document holds: a whole OSImage maintenance configuration as its REST
    body has it ({"properties": {"maintenanceScope": "OSImage", "maintenanceWindow": {...}}}) or
    as the Azure CLI prints it (properties, or the window's fields too, on the top level), or just
    the window. Unknown fields are refused; a pydantic ValidationError names each bad field by its
    path in the document."""
    if "properties" in document:
        return MaintenanceConfiguration.from_user(document).properties.maintenance_window
    if "maintenanceWindow" in document:
        return _PropertiesOnTop.from_user(document).maintenance_window
    if "maintenanceScope" in document:
        return _WindowOnTop.from_user(document).window
    return MaintenanceWindow.from_user(document)
