"""Errors of a fleet back end: transient ones are worth a retry, the others are final."""

from __future__ import annotations

# The codes of a resource that does not exist (deleted, or never was).
GONE = frozenset({"ResourceNotFound", "NotFound"})


class FleetError(Exception):
    """The back end refused or failed a request; `code` is its error code."""

    retryable = False

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        *,
        retry_after: float | None = None,
        maybe_accepted: bool = False,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        # Seconds the service asked us to wait (Retry-After), if it said.
        self.retry_after = retry_after
        # An action whose answer was lost (a 5xx, a timeout, a dropped connection) may have
        # been accepted all the same: read the instance before sending it again.
        self.maybe_accepted = maybe_accepted


class FleetTransientError(FleetError):
    """Throttling (429), a server error (5xx), a timeout or a dropped connection."""

    retryable = True


class FleetRequestError(FleetError):
    """The request itself was refused (4xx): retrying the same request cannot help."""


# Azure answers 409 Conflict / AnotherOperationInProgress while an instance is busy with another
# operation: the same request succeeds once that one is done.
RETRYABLE_CONFLICTS = frozenset({"Conflict", "AnotherOperationInProgress"})
