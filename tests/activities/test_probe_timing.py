"""The probers' timing, in-process: a heartbeat says news at once and otherwise only keeps the
activity alive, the last look at the deadline has time for every probe, and probes keep their
cadence whatever each read takes. (Against the emulator: tests/activities/test_health_probes.py.)"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from temporalio.testing import ActivityEnvironment

from activities.fleet_activities import on_cadence
from activities.heartbeats import LIVENESS_SECONDS, Heartbeat
from models.policy import ApplicationHealthSettings

pytestmark = pytest.mark.fast  # `make test-fast`: pure, in-process


def test_heartbeats_say_news_at_once_and_otherwise_only_keep_the_activity_alive():
    """Each heartbeat is a write on the Temporal server (a billed action on Temporal Cloud): the
    same details again go out only every LIVENESS_SECONDS, well inside the 10 s timeout."""
    now = [100.0]
    sent: list[dict[str, object]] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: sent.append(details[0])

    def probing() -> None:
        beat = Heartbeat(clock=lambda: now[0])
        for probes, state, step in [
            (1, "Initializing", 0.0),  # the first: sent
            (2, "Initializing", 1.0),  # nothing new: not sent
            (3, "Initializing", 1.0),
            (4, "Initializing", LIVENESS_SECONDS - 2.0),  # the last is LIVENESS_SECONDS old: sent
            (5, "Unhealthy", 0.1),  # news: sent at once
            (6, "Unhealthy", 0.1),
        ]:
            now[0] += step
            beat({"probes": probes, "state": state}, news=state)

    env.run(probing)
    assert [(b["probes"], b["state"]) for b in sent] == [
        (1, "Initializing"),
        (4, "Initializing"),
        (5, "Unhealthy"),
    ]
    assert LIVENESS_SECONDS <= 10 / 2  # two chances inside the shortest heartbeat timeout


def test_the_last_look_has_time_for_every_probe():
    from workflows.activity_calls import probe_timeouts

    for interval, probes in [(1, 1), (5, 1), (5, 3), (60, 24)]:
        settings = ApplicationHealthSettings(
            interval_in_seconds=interval, number_of_probes=probes, health_wait_timeout=timedelta(hours=1)
        )
        start_to_close, heartbeat = probe_timeouts(settings)
        assert start_to_close >= timedelta(seconds=(probes - 1) * interval + probes * 10)
        assert heartbeat > timedelta(seconds=interval)


async def test_probes_keep_their_cadence_whatever_each_read_takes():
    # The extension probes every intervalInSeconds; a wait of a full interval after each answer
    # would add every read's duration to every probe, and to the time an instance is seen healthy.
    start = time.monotonic()
    due = await on_cadence(start - 0.8, 1.0)  # the last probe began 0.8 s ago (its read took that)
    assert due == pytest.approx(start + 0.2, abs=0.01)
    assert time.monotonic() >= due  # slept until it was due, not a full interval
    # A read slower than the interval: the next probe is due at once, on a cadence from now.
    start = time.monotonic()
    due = await on_cadence(start - 1.5, 1.0)
    assert start <= due <= time.monotonic()
