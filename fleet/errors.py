"""Errors of a fleet back end: transient ones are worth a retry, the others are final."""

from __future__ import annotations


class FleetError(Exception):
    """The back end refused or failed a request; `code` is its error code."""

    retryable = False

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class FleetTransientError(FleetError):
    """Throttling (429), a server error (5xx), a timeout or a dropped connection."""

    retryable = True


class FleetRequestError(FleetError):
    """The request itself was refused (4xx): retrying the same request cannot help."""
