"""ARM reads paced per subscription (fleet/azure/read_pacing.py): the token bucket on a fake
clock, table-tested; then through the real path, AzureFleet (the Azure SDK) to the emulator over
HTTPS: a burst spread out, a 429 holding every read of the subscription, subscriptions apart, a
low remaining count slowing reads (through a proxy that adds Azure's headers, which the emulator
sends only with its 429s); and a waiting read keeping its activity alive with the same details."""

from __future__ import annotations

import asyncio
import contextvars
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from fleet.azure import AzureFleet, AzureSettings, AzureSettingsError, read_pacing
from fleet.azure.read_pacing import (
    KEEP_ALIVE_SECONDS,
    MAX_REMAINING_HOLD,
    ReadPacer,
    ReadPacers,
    TokenBucket,
    set_keep_alive,
)
from fleet.azure.set_reads import CoalescingReader
from fleet.emulator.admin import EmulatorAdmin
from fleet.errors import FleetError, FleetTransientError
from models.fleet import FaultSpec, HealthProbe, ScaleSetSpec
from models.image import ImageReference
from starter.processes import EmulatorAddress
from worker.keep_alive import HeartbeatMemory, heartbeat_again

OTHER_SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
IMAGE = ImageReference.parse("Canonical:ubuntu-24_04-lts:server:1.0.0")

# --- the bucket, on a fake clock ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("per_minute", "burst", "asks", "expected"),
    [
        # A burst goes at once; the rest one interval apart, in the order they asked.
        (60, 3, [0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 2, 3]),
        # Tokens come back at the rate: two seconds after the burst, two more go at once.
        (60, 3, [0, 0, 0, 2, 2, 2], [0, 0, 0, 2, 2, 3]),
        # Never more than the burst, however long the bucket was idle.
        (60, 2, [0, 100, 100, 100], [0, 100, 100, 101]),
        # 1,200 a minute: 20 a second.
        (1_200, 1, [0, 0, 0], [0, 0.05, 0.1]),
    ],
)
def test_bucket_spreads_reads_beyond_the_burst(
    per_minute: int, burst: int, asks: list[float], expected: list[float]
) -> None:
    bucket = TokenBucket(per_minute, burst, now=0)
    assert [bucket.reserve(at) for at in asks] == pytest.approx(expected)


def test_a_hold_lets_nothing_go_before_it_ends_and_empties_the_bucket() -> None:
    bucket = TokenBucket(60, 5, now=0)
    assert bucket.reserve(0) == 0
    epoch = bucket.epoch
    assert bucket.hold(10, now=1)
    assert bucket.epoch == epoch + 1  # reservations made before are void
    assert [bucket.reserve(2) for _ in range(3)] == [10, 11, 12]  # one token at 10, then the rate
    assert not bucket.hold(5, now=3)  # a shorter hold changes nothing
    assert bucket.tokens(12) == pytest.approx(0)
    assert bucket.tokens(100) == 5


def test_new_limits_keep_the_tokens_used() -> None:
    bucket = TokenBucket(60, 10, now=0)
    for _ in range(10):
        bucket.reserve(0)
    bucket.configure(120, 10, now=0)
    assert bucket.reserve(0) == pytest.approx(0.5)  # empty still, refilled twice as fast


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.on_sleep: list[Any] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.on_sleep:
            self.on_sleep.pop(0)()


def pacer(per_minute: int = 1_200, burst: int = 200) -> tuple[ReadPacer, FakeClock]:
    clock = FakeClock()
    return ReadPacer(per_minute, burst, clock=clock, sleep=clock.sleep), clock


@pytest.mark.parametrize(
    ("answers", "hold"),
    [
        ([(200, {"x-ms-ratelimit-remaining-subscription-reads": "249"})], 0),
        # ARM's bucket of 250: below 25 left, wait for our refill (20 a second) to bring it back.
        ([(200, {"x-ms-ratelimit-remaining-subscription-reads": "5"})], 1.0),
        ([(200, {"x-ms-ratelimit-remaining-subscription-reads": "25"})], 0),
        # Every principal's bucket: 15 times ARM's.
        ([(200, {"x-ms-ratelimit-remaining-subscription-global-reads": "100"})], (375 - 100) / 20),
        # A Compute policy seen full (1,080 over 3 minutes: 6 a second), then low.
        (
            [
                (200, {"x-ms-ratelimit-remaining-resource": "Microsoft.Compute/HighCostGet3Min;1079"}),
                (200, {"x-ms-ratelimit-remaining-resource": "Microsoft.Compute/HighCostGet3Min;8"}),
            ],
            (108 - 8) / 6,
        ),
        # Several policies in one header: the slowest to come back decides.
        (
            [
                (
                    200,
                    {
                        "x-ms-ratelimit-remaining-resource": "Microsoft.Compute/GetVMScaleSet3Min;197,"
                        "Microsoft.Compute/GetVMScaleSet30Min;1297"
                    },
                ),
                (
                    200,
                    {
                        "x-ms-ratelimit-remaining-resource": "Microsoft.Compute/GetVMScaleSet3Min;190,"
                        "Microsoft.Compute/GetVMScaleSet30Min;120"
                    },
                ),
            ],
            (130 - 120) / (1298 / 1800),
        ),
        # A policy never seen with room: too little to tell its pace (its 429 will say).
        ([(200, {"x-ms-ratelimit-remaining-resource": "Microsoft.Compute/HighCostGet3Min;0"})], 0),
        # A long window's hold is bounded.
        (
            [
                (200, {"x-ms-ratelimit-remaining-resource": "Microsoft.Compute/HighCostGet30Min;299"}),
                (200, {"x-ms-ratelimit-remaining-resource": "Microsoft.Compute/HighCostGet30Min;0"}),
            ],
            MAX_REMAINING_HOLD,
        ),
        # A 429: its Retry-After, whatever the counts say; without one, a second.
        ([(429, {"Retry-After": "7", "x-ms-ratelimit-remaining-subscription-reads": "0"})], 7),
        ([(429, {})], 1),
        # Garbage is ignored.
        ([(200, {"x-ms-ratelimit-remaining-subscription-reads": "many"})], 0),
        ([(200, {"x-ms-ratelimit-remaining-resource": "nonsense;;,;3,x;y"})], 0),
    ],
)
def test_answers_hold_reads(answers: list[tuple[int, dict[str, str]]], hold: float) -> None:
    paced, clock = pacer()
    for status, headers in answers:
        paced.observe(status, headers)
    held = max(0.0, paced.bucket.held_until - clock.now)
    assert held == pytest.approx(hold, rel=0.01)
    assert paced.holds == (1 if hold else 0)


async def test_acquire_waits_its_turn_and_keeps_the_caller_alive() -> None:
    paced, clock = pacer(per_minute=6, burst=1)  # one read every 10 s
    alive: list[float] = []
    set_keep_alive(lambda: alive.append(clock.now))
    try:
        assert await paced.acquire() == 0
        assert await paced.acquire() == pytest.approx(10)
    finally:
        set_keep_alive(None)
    # Every KEEP_ALIVE_SECONDS of the wait, never a gap longer.
    assert len(alive) == int(10 / KEEP_ALIVE_SECONDS)
    assert max(b - a for a, b in zip([0.0, *alive], [*alive, 10.0], strict=True)) <= KEEP_ALIVE_SECONDS
    assert (paced.reads, paced.waits) == (2, 1)


async def test_a_hold_during_a_wait_sends_the_reader_to_the_back_of_it() -> None:
    paced, clock = pacer(per_minute=60, burst=1)
    await paced.acquire()
    # While the next read waits for its token (1 s), a 429 holds reads for 20 s.
    clock.on_sleep.append(lambda: paced.observe(429, {"Retry-After": "20"}))
    waited = await paced.acquire()
    # Woken at 1 s, the reader finds its token void and queues again behind the hold (1 + 20).
    assert waited == pytest.approx(21)


async def test_callers_sharing_a_health_read_are_each_kept_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the caller that starts a coalesced read waits inside it (for its token): the others
    # wait for it, and each is kept alive in its own context.
    monkeypatch.setattr(read_pacing, "KEEP_ALIVE_SECONDS", 0.05)
    caller: contextvars.ContextVar[int] = contextvars.ContextVar("caller")
    alive: set[int] = set()

    async def slow_read(scale_set: str) -> dict[str, HealthProbe]:
        await asyncio.sleep(0.3)
        return {}

    async def probe(n: int) -> None:
        caller.set(n)
        await reader.get("web")

    reader = CoalescingReader(slow_read, gather_seconds=0.01)
    set_keep_alive(lambda: alive.add(caller.get()))
    try:
        await asyncio.gather(*(probe(n) for n in range(5)))
    finally:
        set_keep_alive(None)
    assert alive == set(range(5))


def test_one_pacer_per_endpoint_and_subscription() -> None:
    pacers = ReadPacers()
    sub = "00000000-0000-0000-0000-000000000000"
    first = pacers.of("https://management.azure.com", sub, 1_200, 200)
    assert pacers.of("https://management.azure.com/", sub.upper(), 1_200, 200) is first
    assert pacers.of("https://management.azure.com", OTHER_SUBSCRIPTION, 1_200, 200) is not first
    assert pacers.of("https://127.0.0.1:8780", sub, 1_200, 200) is not first
    # The process's limits are the newest asked for.
    assert pacers.of("https://management.azure.com", sub, 600, 50) is first
    assert (first.per_minute, first.burst) == (600, 50)


# --- settings -----------------------------------------------------------------------------------


def test_the_budget_is_configured_by_environment() -> None:
    default = AzureSettings.from_env({})
    assert (default.reads_per_minute, default.read_burst) == (1_200, 200)
    settings = AzureSettings.from_env({"AZURE_READS_PER_MINUTE": "300", "AZURE_READ_BURST": "50"})
    assert (settings.reads_per_minute, settings.read_burst) == (300, 50)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AZURE_READS_PER_MINUTE", "0"),
        ("AZURE_READS_PER_MINUTE", "-5"),
        ("AZURE_READS_PER_MINUTE", "fast"),
        ("AZURE_READS_PER_MINUTE", "2000000"),
        ("AZURE_READ_BURST", "0"),
        ("AZURE_READ_BURST", "12.5"),
    ],
)
def test_budget_errors_name_the_variable_and_range(variable: str, value: str) -> None:
    with pytest.raises(AzureSettingsError) as caught:
        AzureSettings.from_env({variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable} must be a whole number") and "from 1 to 1,000,000" in message
    assert value in message and "\n" not in message


# --- through the Azure SDK to the emulator ------------------------------------------------------


def settings_of(address: EmulatorAddress, **env: str) -> AzureSettings:
    return AzureSettings.from_env({**address.env(), **env})


async def new_set(admin: EmulatorAdmin, capacity: int = 2) -> str:
    name = f"paced-{uuid.uuid4().hex[:8]}"
    await admin.create_scale_set(ScaleSetSpec(name=name, capacity=capacity, image_reference=IMAGE))
    return name


async def timed(call: Any) -> float:
    started = time.monotonic()
    await call
    return time.monotonic() - started


async def test_a_burst_of_reads_is_spread_as_the_bucket_says(
    emulator: EmulatorAddress, fleet: EmulatorAdmin
) -> None:
    name = await new_set(fleet)
    settings = settings_of(emulator, AZURE_READS_PER_MINUTE="600", AZURE_READ_BURST="5")
    async with AzureFleet(settings, pacers=ReadPacers()) as azure:
        await azure.read_health(name)  # the scale set's mode and its instances: two tokens
        started = time.monotonic()
        done: list[float] = []

        async def read(n: int) -> None:
            await azure.read_health(name)
            done.append(time.monotonic() - started)

        await asyncio.gather(*(read(n) for n in range(25)))
        pacer = azure.read_pacer
    # 10 a second after the burst: 25 reads take at least 2 s less the tokens refilled meanwhile.
    assert max(done) >= 1.8
    assert sum(1 for t in done if t < 0.4) <= 10  # the burst (3 left) and what 0.4 s refilled
    assert pacer.reads == 27 and pacer.waits >= 19
    assert (await fleet.calls(name)).reads == 27  # every read reached ARM, none was dropped


async def test_callers_join_a_read_while_it_waits_for_its_turn() -> None:
    # A read waiting for its share of the budget is not sent yet: callers who ask meanwhile are
    # served by it (it starts after them), so a short budget makes reads fewer, not later.
    reads: list[str] = []
    turns = 0

    async def read(scale_set: str) -> list[str]:
        reads.append(scale_set)
        return list(reads)

    async def turn() -> None:
        nonlocal turns
        turns += 1
        await asyncio.sleep(0.4)

    reader: CoalescingReader[list[str]] = CoalescingReader(read, gather_seconds=0.01, turn=turn)
    first = asyncio.create_task(reader.get("web"))
    await asyncio.sleep(0.2)  # the first read is waiting for its turn
    second = await reader.get("web")
    assert await first == second == ["web"] and turns == 1
    assert await reader.get("web") == ["web", "web"]  # asked after it was sent: a read of its own


async def test_a_shared_read_takes_one_token_however_many_join_it(
    emulator: EmulatorAddress, fleet: EmulatorAdmin
) -> None:
    name = await new_set(fleet, capacity=3)
    settings = settings_of(emulator, AZURE_READS_PER_MINUTE="60", AZURE_READ_BURST="1")
    async with AzureFleet(settings, pacers=ReadPacers()) as azure:
        await azure.read_health(name)  # the mode and the list: the second waits a second
        first = asyncio.create_task(azure.get_instance(name, "0"))
        await asyncio.sleep(0.5)  # it waits for its token, about a second
        later = await asyncio.gather(*(azure.get_instance(name, str(n)) for n in (1, 2, 0)))
        assert [i.instance_id for i in (await first, *later)] == ["0", "1", "2", "0"]
        assert azure.read_pacer.reads == 3  # the token taken ahead is not taken again
    assert (await fleet.calls(name)).reads == 3


async def test_a_429_holds_every_read_of_the_subscription_for_its_retry_after(
    emulator: EmulatorAddress, fleet: EmulatorAdmin
) -> None:
    throttled, other = await new_set(fleet), await new_set(fleet)
    pacers = ReadPacers()
    settings = settings_of(emulator)
    # Two back ends of one process (and one subscription) share the budget.
    async with (
        AzureFleet(settings, pacers=pacers, retry_total=0) as first,
        AzureFleet(settings, pacers=pacers) as second,
    ):
        await first.read_health(throttled)
        await second.read_health(other)
        await fleet.set_faults(throttled, FaultSpec(throttle_calls=1, retry_after_seconds=2))
        with pytest.raises(FleetTransientError) as caught:
            await first.read_health(throttled)
        assert caught.value.status == 429
        # Another scale set, another client: it waits out the Retry-After too.
        assert await timed(second.read_health(other)) >= 1.5
        assert first.read_pacer is second.read_pacer and first.read_pacer.holds == 1
        assert first.read_pacer.reads == 6  # each fleet's mode read and two list reads


async def test_subscriptions_do_not_share_a_budget(emulator: EmulatorAddress, fleet: EmulatorAdmin) -> None:
    throttled = await new_set(fleet)
    pacers = ReadPacers()
    async with (
        AzureFleet(settings_of(emulator), pacers=pacers, retry_total=0) as ours,
        AzureFleet(
            settings_of(emulator, AZURE_SUBSCRIPTION_ID=OTHER_SUBSCRIPTION), pacers=pacers, retry_total=0
        ) as theirs,
    ):
        await ours.read_health(throttled)
        await fleet.set_faults(throttled, FaultSpec(throttle_calls=1, retry_after_seconds=5))
        with pytest.raises(FleetTransientError):
            await ours.read_health(throttled)

        async def elsewhere() -> None:
            with pytest.raises(FleetError) as caught:  # the emulator knows one subscription only
                await theirs.get_scale_set("anything")
            assert caught.value.status == 404

        assert await timed(elsewhere()) < 2.5  # not held by our subscription's 429
        assert ours.read_pacer is not theirs.read_pacer
        assert (ours.read_pacer.holds, theirs.read_pacer.holds) == (1, 0)


@dataclass
class HeaderProxy:
    """An HTTPS proxy in front of the emulator adding Azure's remaining-count headers."""

    url: str
    ca_file: Path
    headers: dict[str, str]


@pytest.fixture
def proxy_tls(tmp_path: Path) -> Iterator[tuple[ssl.SSLContext, Path]]:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.configure_cert(context)
    ca_file = tmp_path / "proxy-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    yield context, ca_file


@pytest.fixture
async def header_proxy(
    emulator: EmulatorAddress, proxy_tls: tuple[ssl.SSLContext, Path]
) -> AsyncIterator[HeaderProxy]:
    context, ca_file = proxy_tls
    added: dict[str, str] = {}
    upstream = ssl.create_default_context(cafile=str(emulator.ca_file))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=upstream)) as session:

        async def forward(request: web.Request) -> web.Response:
            async with session.request(
                request.method,
                f"{emulator.url}{request.rel_url}",
                headers={"Authorization": request.headers.get("Authorization", "")},
                data=await request.read(),
            ) as answer:
                body = await answer.read()
                headers = {"Content-Type": answer.headers.get("Content-Type", "application/json")}
                return web.Response(body=body, status=answer.status, headers={**headers, **added})

        app = web.Application()
        app.router.add_route("*", "/{path:.*}", forward)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = runner.addresses[0][1]
        try:
            yield HeaderProxy(f"https://127.0.0.1:{port}", ca_file, added)
        finally:
            await runner.cleanup()


async def test_a_low_remaining_count_slows_the_reads_after_it(
    emulator: EmulatorAddress, fleet: EmulatorAdmin, header_proxy: HeaderProxy
) -> None:
    name = await new_set(fleet)
    settings = settings_of(
        emulator,
        AZURE_ARM_ENDPOINT=header_proxy.url,
        AZURE_CA_BUNDLE=str(header_proxy.ca_file),
        AZURE_READS_PER_MINUTE="600",
    )
    remaining = "x-ms-ratelimit-remaining-subscription-reads"
    async with AzureFleet(settings, pacers=ReadPacers()) as azure:
        header_proxy.headers[remaining] = "240"
        await azure.read_health(name)
        assert await timed(azure.read_health(name)) < 1.0  # plenty left: no wait
        # ARM says 5 left (its bucket: 250): below 25, reads wait until 10 a second bring it back.
        header_proxy.headers[remaining] = "5"
        await azure.read_health(name)
        header_proxy.headers[remaining] = "240"
        assert await timed(azure.read_health(name)) >= 1.5  # (25 - 5) / 10 a second
        assert azure.read_pacer.holds == 1
        assert await timed(azure.read_health(name)) < 1.0


# --- a waiting read keeps its activity alive, with the details it had --------------------------

# Per workflow: whether attempt 1 came to the end of its wait (before attempt 2 started).
FINISHED_WAITING: dict[str, bool] = {}


@activity.defn(name="paced-read")
async def paced_read(wait_seconds: float) -> dict[str, Any]:
    """Attempt 1 heartbeats the operation it sent, then waits for a read token longer than its
    heartbeat timeout, then fails; attempt 2 says what attempt 1's heartbeats left it and whether
    attempt 1 lived to the end of its wait (a timed-out attempt is still waiting then)."""
    info = activity.info()
    if info.attempt > 1:
        return {
            "details": list(info.heartbeat_details),
            "first_finished": FINISHED_WAITING.get(info.workflow_id, False),
        }
    activity.heartbeat({"operation": "op-1"})
    paced = ReadPacer(60 / wait_seconds, 1)
    await paced.acquire()
    await paced.acquire()  # waits `wait_seconds`, heartbeating through the keep-alive hook
    FINISHED_WAITING[info.workflow_id] = True
    raise RuntimeError("after the wait")


@workflow.defn(name="paced-read-workflow", sandboxed=False)
class PacedReadWorkflow:
    @workflow.run
    async def run(self, wait_seconds: float) -> dict[str, Any]:
        result: dict[str, Any] = await workflow.execute_activity(
            "paced-read",
            wait_seconds,
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=3),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=2),
        )
        return result


async def run_paced_read(env: WorkflowEnvironment, interceptors: list[Any]) -> dict[str, Any]:
    async with Worker(
        env.client,
        task_queue=f"tq-{uuid.uuid4()}",
        workflows=[PacedReadWorkflow],
        activities=[paced_read],
        interceptors=interceptors,
    ) as worker:
        result: dict[str, Any] = await env.client.execute_workflow(
            PacedReadWorkflow.run, 7.0, id=f"paced-{uuid.uuid4()}", task_queue=worker.task_queue
        )
        return result


async def test_a_waiting_read_heartbeats_its_activitys_last_details(local_env: WorkflowEnvironment) -> None:
    set_keep_alive(heartbeat_again)
    try:
        result = await run_paced_read(local_env, [HeartbeatMemory()])
    finally:
        set_keep_alive(None)
    # Attempt 1 waited twice its heartbeat timeout and lived; its heartbeats while it waited
    # kept the operation it had sent, where attempt 2 found it.
    assert result == {"details": [{"operation": "op-1"}], "first_finished": True}


async def test_without_the_keep_alive_such_a_wait_times_out(local_env: WorkflowEnvironment) -> None:
    result = await run_paced_read(local_env, [])
    assert result == {"details": [{"operation": "op-1"}], "first_finished": False}
