"""Webhook notifications of an upgrade, after Azure's three: submission, the submission's
outcome, the completion's outcome (and, when asked for, each batch's outcome)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field

from models.base import AzureModel

WebhookUrl = Annotated[str, Field(pattern=r"^https?://[^\s]+$")]
SIGNATURE_HEADER = "X-Upgrade-Signature"
EVENT_HEADER = "X-Upgrade-Event"
DELIVERY_HEADER = "X-Upgrade-Delivery"


class NotificationEvent(StrEnum):
    SUBMISSION = "Submission"
    SUBMISSION_OUTCOME = "SubmissionOutcome"
    BATCH_OUTCOME = "BatchOutcome"
    COMPLETION_OUTCOME = "CompletionOutcome"


class Notifications(AzureModel):
    """Where to send an upgrade's notifications. The signing secret is the worker's
    (UPGRADE_WEBHOOK_SECRET), so it never appears in workflow history."""

    webhooks: list[WebhookUrl] = Field(default_factory=list)
    per_batch: bool = False


class WebhookDelivery(AzureModel):
    """The input of the delivery activity: one event to one URL."""

    url: str
    event: NotificationEvent
    delivery_id: str
    body: str


class NotificationRecord(AzureModel):
    """How one delivery went, as the upgrade's report shows it."""

    event: NotificationEvent
    url: str
    delivered: bool
    time: AwareDatetime
    error: str | None = None
