"""azure-core's exceptions as fleet errors: transient (worth a retry) or final, with Azure's code.

| raised by azure-core                               | fleet error                                   |
| -------------------------------------------------- | --------------------------------------------- |
| HttpResponseError 429, 5xx                         | FleetTransientError (retry_after)             |
| HttpResponseError 409 Conflict/AnotherOperation... | FleetTransientError (the instance is busy)    |
| HttpResponseError other 4xx (404: Azure's code)    | FleetRequestError                             |
| ServiceRequestError (never sent: refused, DNS)     | FleetTransientError, maybe_accepted=False     |
| ServiceResponseError (timeout, dropped after send) | FleetTransientError, maybe_accepted on action |
| IncompleteReadError (dropped in the answer's body)  | FleetTransientError, maybe_accepted on action |
| ClientAuthenticationError before any answer        | FleetRequestError AuthenticationFailed        |

An action (reimage, restore) answered 5xx, or whose answer was lost, may have been accepted:
maybe_accepted is set only for actions, so the caller reads the instance before resending.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)

from fleet.errors import RETRYABLE_CONFLICTS, FleetError, FleetRequestError, FleetTransientError


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Retry-After in seconds (Azure sends whole seconds; an HTTP date is ignored)."""
    if not headers:
        return None
    value = headers.get("Retry-After")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def error_of_body(text: str) -> tuple[str | None, str | None]:
    """Azure's {"error": {"code", "message"}}; (None, None) when the body is something else."""
    try:
        error = json.loads(text).get("error")
        return error.get("code"), error.get("message")
    except (ValueError, AttributeError):
        return None, None


def from_status(
    status: int, code: str | None, message: str | None, headers: Mapping[str, str] | None, *, action: bool
) -> FleetError:
    """The fleet error of an HTTP error answer."""
    code = code or f"HTTP{status}"
    message = message or f"HTTP {status}"
    retry_after = retry_after_seconds(headers)
    if status == 429 or (status == 409 and code in RETRYABLE_CONFLICTS):
        return FleetTransientError(code, message, status, retry_after=retry_after)
    if status >= 500:
        # Azure may have accepted an action before its answer failed.
        return FleetTransientError(code, message, status, retry_after=retry_after, maybe_accepted=action)
    return FleetRequestError(code, message, status, retry_after=retry_after)


def translate(err: Exception, *, action: bool) -> Exception:
    """The fleet error for an azure-core exception; anything else is returned as it is."""
    if isinstance(err, IncompleteReadError):  # the connection dropped in the middle of the answer
        return FleetTransientError("ConnectionDropped", str(err.message), maybe_accepted=action)
    if isinstance(err, HttpResponseError):
        status = err.status_code
        response = err.response
        if status is None or response is None:
            if isinstance(err, ClientAuthenticationError):  # the credential failed: nothing sent
                return FleetRequestError("AuthenticationFailed", str(err.message))
            # The answer could not be read: it may have been an acceptance.
            return FleetTransientError("ResponseError", str(err.message), maybe_accepted=action)
        if status < 400:  # an answer that began well and broke (an incomplete body)
            return FleetTransientError("IncompleteResponse", str(err.message), status, maybe_accepted=action)
        code = getattr(err.error, "code", None)
        message = getattr(err.error, "message", None)
        if not code:
            try:
                code, message = error_of_body(response.text())
            except Exception:  # noqa: BLE001 - the body may be unread or undecodable
                code = None
        headers = getattr(response, "headers", None)
        return from_status(status, code, message or str(err.message), headers, action=action)
    if isinstance(err, ServiceRequestError):
        return FleetTransientError("ConnectionError", f"not sent: {err.message}")
    if isinstance(err, ServiceResponseError):
        code = "Timeout" if isinstance(err, ServiceResponseTimeoutError) else "ConnectionError"
        return FleetTransientError(code, f"no answer: {err.message}", maybe_accepted=action)
    return err


@contextmanager
def arm_errors(*, action: bool = False) -> Iterator[None]:
    """Raise azure-core's exceptions inside as fleet errors."""
    try:
        yield
    except (HttpResponseError, ServiceRequestError, ServiceResponseError) as err:
        translated = translate(err, action=action)
        if translated is err:
            raise
        raise translated from err
