"""Delivering webhook notifications: a signed JSON POST, retried by the activity's policy."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from models import steps
from models.notifications import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, WebhookDelivery


def sign(secret: str, body: bytes) -> str:
    """HMAC-SHA256 of the body, as `sha256=<hex>` (what receivers recompute to verify)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookActivities:
    def __init__(self, secret: str | None = None, timeout: float = 10.0) -> None:
        self.secret = secret if secret is not None else os.environ.get("UPGRADE_WEBHOOK_SECRET")
        self.timeout = timeout

    def all(self) -> list[Callable[..., Any]]:
        return [self.deliver_webhook]

    @activity.defn(name=steps.DELIVER_WEBHOOK)
    async def deliver_webhook(self, delivery: WebhookDelivery) -> None:
        body = delivery.body.encode()
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: delivery.event.value,
            DELIVERY_HEADER: delivery.delivery_id,  # the same on every retry: receivers dedupe
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                response = await http.post(delivery.url, content=body, headers=headers)
        except httpx.HTTPError as err:
            raise ApplicationError(
                f"{delivery.url}: {type(err).__name__}: {err}", type="WebhookUnreachable"
            ) from err
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise ApplicationError(
                f"{delivery.url} answered {response.status_code}", type="WebhookRetryLater"
            )
        if not response.is_success:
            raise ApplicationError(
                f"{delivery.url} refused the notification: HTTP {response.status_code}",
                type="WebhookRefused",
                non_retryable=True,
            )
