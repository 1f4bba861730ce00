"""ARM reads paced per subscription (fleet/azure/read_pacing.py) without the emulator: the token bucket
on a fake clock, table-tested, what Azure's answers make it hold, waits that keep their caller
alive, one pacer per endpoint and subscription, its settings; and callers joining a read that
waits for its turn. (Through the Azure SDK to the emulator: tests/fleet/test_read_pacing.py.)"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest

from fleet.azure import AzureSettings, AzureSettingsError, read_pacing
from fleet.azure.read_pacing import (
    KEEP_ALIVE_SECONDS,
    MAX_REMAINING_HOLD,
    ReadPacer,
    ReadPacers,
    TokenBucket,
    set_keep_alive,
)
from fleet.azure.set_reads import CoalescingReader
from models.fleet import HealthProbe
from tests.helpers.arm import OTHER_SUBSCRIPTION

pytestmark = pytest.mark.fast  # `make test-fast`: pure, in-process

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


def test_a_read_waited_for_goes_ahead_of_reads_that_only_watch() -> None:
    # Watchers never take the last half of the burst (WATCHING_RESERVE): four of them queued on
    # an empty bucket, a read an action waits for takes a token they left and goes first.
    bucket = TokenBucket(60, 4, now=0)
    assert [bucket.reserve(0) for _ in range(4)] == [0, 0, 0, 0]  # the burst, used up
    keep = int(4 * read_pacing.WATCHING_RESERVE)
    assert [bucket.reserve(0, keep) for _ in range(4)] == [3, 4, 5, 6]
    assert bucket.reserve(0) == 5  # ahead of the last two watchers in line
    # The watcher after it queues behind it: over any window of t seconds, still no more than
    # the burst plus t refills (here 9 reads by 6 s, 10 by 8 s).
    assert bucket.reserve(0, keep) == 8


async def test_a_watching_read_gives_way_in_the_pacer() -> None:
    paced, _ = pacer(per_minute=60, burst=10)
    for _ in range(10):
        await paced.acquire()  # the burst, used up
    # Inside watching(), reads keep the last half of the burst: the first one waits for it.
    with read_pacing.watching():
        assert await paced.acquire() == pytest.approx(6)
    assert await paced.acquire() == 0  # the next read waited for: a token the watcher left


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


async def test_callers_join_a_read_while_it_waits_for_its_turn() -> None:
    # A read waiting for its share of the budget is not sent yet: callers who ask meanwhile are
    # served by it (it starts after them), so a short budget makes reads fewer, not later.
    reads: list[str] = []
    turns = 0

    async def read(scale_set: str) -> list[str]:
        reads.append(scale_set)
        return list(reads)

    async def turn(watching: bool) -> None:
        nonlocal turns
        turns += 1
        await asyncio.sleep(0.4)

    reader: CoalescingReader[list[str]] = CoalescingReader(read, gather_seconds=0.01, turn=turn)
    first = asyncio.create_task(reader.get("web"))
    await asyncio.sleep(0.2)  # the first read is waiting for its turn
    second = await reader.get("web")
    assert await first == second == ["web"] and turns == 1
    assert await reader.get("web") == ["web", "web"]  # asked after it was sent: a read of its own


async def test_a_read_is_waited_for_when_any_caller_does_not_watch() -> None:
    # Callers with a min_gap only watch (probes, looks until done): their read gives way in the
    # budget, unless a caller without one (a look before an action) joined it before its turn.
    # The read's further GETs (next pages, a 202's Location) wait the same way (watching()).
    turns: list[bool] = []
    paced, clock = pacer(per_minute=60, burst=2)

    async def read(scale_set: str) -> float:
        return await paced.acquire()  # what a next page waits, inside the read

    async def turn(watching: bool) -> None:
        turns.append(watching)

    reader: CoalescingReader[float] = CoalescingReader(read, gather_seconds=0.01, turn=turn)
    clock.now = 100.0  # the bucket full
    assert await reader.get("web", min_gap=0.5) == 0  # a watcher's read: one of the two tokens
    assert list(await asyncio.gather(reader.get("web", min_gap=0.5), reader.get("web"))) == [0, 0]
    # Both tokens used, the fake clock standing still: a read waited for would wait 1 s for the
    # next token, a watcher waits 2 s, leaving that one to the others.
    assert await reader.get("api", min_gap=0.5) == pytest.approx(2)
    assert turns == [True, False, True]
