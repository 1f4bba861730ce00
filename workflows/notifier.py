"""Sending an upgrade's notifications without ever holding the upgrade up.

Each notification is delivered by an activity in a background task; deliveries to one URL are
chained so every receiver sees the events in order. The upgrade goes on meanwhile, and only its
very end waits for deliveries still under way (bounded by the activity's own deadline). Every
outcome, delivered or not, is recorded for the report.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models.notifications import NotificationEvent, NotificationRecord, Notifications, WebhookDelivery
    from workflows import activity_calls


class Notifier:
    def __init__(self, settings: Notifications, delivery_prefix: str) -> None:
        self.settings = settings
        self.prefix = delivery_prefix
        self.records: list[NotificationRecord] = []
        self._last: dict[str, asyncio.Future[None]] = {}

    def notify(self, event: NotificationEvent, body: dict[str, Any], key: str = "") -> None:
        if event == NotificationEvent.BATCH_OUTCOME and not self.settings.per_batch:
            return
        delivery_id = f"{self.prefix}/{event.value}{key}"
        text = json.dumps({"event": event.value, "deliveryId": delivery_id, **body})
        for url in self.settings.webhooks:
            delivery = WebhookDelivery(url=url, event=event, delivery_id=delivery_id, body=text)
            self._last[url] = asyncio.ensure_future(self._after(self._last.get(url), delivery))

    async def _after(self, previous: asyncio.Future[None] | None, delivery: WebhookDelivery) -> None:
        if previous is not None:
            await previous
        error = None
        try:
            await activity_calls.deliver_webhook(delivery)
        except ActivityError as err:
            error = str(err.cause or err)
            workflow.logger.warning(
                "notification %s to %s failed: %s", delivery.event.value, delivery.url, error
            )
        self.records.append(
            NotificationRecord(
                event=delivery.event,
                url=delivery.url,
                delivered=error is None,
                time=workflow.now(),
                error=error,
            )
        )

    async def drain(self) -> None:
        """Wait for deliveries still under way (each gives up within its deadline)."""
        if self._last:
            await asyncio.gather(*self._last.values())
