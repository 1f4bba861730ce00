"""Webhook notifications: signed, in order, and never in the upgrade's way."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from models.notifications import NotificationEvent
from models.status import RollingUpgradeStatusCode
from starter import processes
from tests.helpers.upgrades import finish, make_scale_set, upgrade
from worker.assembly import build_worker

SECRET = "webhook-secret-for-tests"


class Receiver:
    """A webhook endpoint that keeps what it was sent, and whether the signature held."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                receiver.received.append(
                    {
                        "event": self.headers["X-Upgrade-Event"],
                        "delivery": self.headers["X-Upgrade-Delivery"],
                        "signed": hmac.compare_digest(self.headers.get("X-Upgrade-Signature", ""), expected),
                        "body": json.loads(body),
                    }
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/upgrades"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture
async def signing_worker(ts_env, azure):
    async with build_worker(ts_env.client, azure, f"tq-{uuid.uuid4()}", webhook_secret=SECRET) as worker:
        yield worker


async def test_webhooks_get_the_three_events_in_order_signed(ts_env, signing_worker, fleet, receiver):
    name = await make_scale_set(fleet, 6, update_domains=1)
    handle, _ = await upgrade(
        ts_env.client, signing_worker.task_queue, name, notifications={"webhooks": [receiver.url]}
    )
    report = await finish(ts_env, handle)

    assert [r["event"] for r in receiver.received] == ["Submission", "SubmissionOutcome", "CompletionOutcome"]
    assert all(r["signed"] for r in receiver.received)
    assert len({r["delivery"] for r in receiver.received}) == 3
    submitted, admitted, completed = (r["body"] for r in receiver.received)
    assert (
        submitted["scaleSet"] == name
        and submitted["status"]["properties"]["progress"]["pendingInstanceCount"] == 0
    )
    assert admitted["status"]["properties"]["progress"]["pendingInstanceCount"] == 6
    assert completed["status"]["properties"]["runningStatus"]["code"] == "Completed"
    assert completed["status"]["properties"]["progress"]["successfulInstanceCount"] == 6
    assert [(n.event, n.delivered) for n in report.notifications] == [
        (NotificationEvent.SUBMISSION, True),
        (NotificationEvent.SUBMISSION_OUTCOME, True),
        (NotificationEvent.COMPLETION_OUTCOME, True),
    ]


async def test_per_batch_notifications_come_between_start_and_end(ts_env, signing_worker, fleet, receiver):
    name = await make_scale_set(fleet, 6, update_domains=1)
    handle, _ = await upgrade(
        ts_env.client,
        signing_worker.task_queue,
        name,
        notifications={"webhooks": [receiver.url], "perBatch": True},
    )
    await finish(ts_env, handle)
    events = [r["event"] for r in receiver.received]
    assert events == ["Submission", "SubmissionOutcome", *["BatchOutcome"] * 6, "CompletionOutcome"]
    batches = [
        r["body"]["status"]["properties"]["progress"]["successfulInstanceCount"]
        for r in receiver.received[2:8]
    ]
    assert batches == [1, 2, 3, 4, 5, 6]


async def test_an_unreachable_webhook_neither_blocks_nor_fails_the_upgrade(
    ts_env, signing_worker, fleet, receiver
):
    unreachable = f"http://127.0.0.1:{processes.free_port()}/nobody-listens"
    name = await make_scale_set(fleet, 6, update_domains=1)
    handle, _ = await upgrade(
        ts_env.client,
        signing_worker.task_queue,
        name,
        notifications={"webhooks": [unreachable, receiver.url]},
    )
    report = await finish(ts_env, handle)

    assert report.status.properties.running_status.code == RollingUpgradeStatusCode.COMPLETED
    failed = [n for n in report.notifications if n.url == unreachable]
    assert [n.event for n in failed] == ["Submission", "SubmissionOutcome", "CompletionOutcome"]
    assert not any(n.delivered for n in failed)
    assert all("WebhookUnreachable" in n.error or "Connect" in n.error for n in failed)
    # The reachable webhook got everything, in order, regardless.
    assert [r["event"] for r in receiver.received] == ["Submission", "SubmissionOutcome", "CompletionOutcome"]
