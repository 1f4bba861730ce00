"""ARM reads paced per subscription: a token bucket that every GET awaits before it is sent.

Azure Resource Manager refills reads at 25 a second per subscription, principal and region (a
bucket of 250: 1,500 a minute), and Compute adds limits of its own (High Cost Get VMSS: 360 a
minute per subscription). Twenty scale sets of 50 upgraded at once read about 6,600 times a
minute: on a real subscription most of that would come back 429, and the retries would make it
worse. So every GET a process sends to one subscription (instance reads, list pages, operation
polls, the SDK's own reads, each retry of them) first takes a token from one bucket, shared by
every AzureFleet and client of the process (`PACERS`): `AZURE_READS_PER_MINUTE` refilled (default
1,200), at most `AZURE_READ_BURST` at once (default 200), inside ARM's 1,500 and 250 with margin.
Actions (POST, PATCH, PUT, DELETE) are not paced: ARM counts writes in buckets of their own, and
an action is sent once, when the upgrade decides to.

When the budget runs short, a read that something waits for (the look before an action, a health
gate, a describe) goes ahead of reads that only watch (health probes, an instance's or an
operation's progress until done: `watching()`): watchers never take the last WATCHING_RESERVE of
the burst. Watchers ask again every fraction of a second, so a wave of scale sets that starts
while another wave's sets boot would otherwise queue its every first read behind their polls.

The answers tune the bucket to what Azure says is left, which is also what keeps several worker
processes of one subscription in line (each paces itself; ARM's counts are everyone's):
- `x-ms-ratelimit-remaining-subscription-reads` (and `-subscription-global-reads`, every
  principal's): below a tenth of ARM's bucket, reads stop until our refill would bring it back.
- `x-ms-ratelimit-remaining-resource` (`Microsoft.Compute/HighCostGet3Min;159,...`): the same for
  each of the provider's policies, refilled as fast as its window allows (the highest count seen
  over its minutes); such a hold lasts MAX_REMAINING_HOLD at most (a 429 then says how long).
- a 429: every read of the subscription waits out its Retry-After, not only the call that got
  it (the SDK's retry policy resends that one), and the bucket starts again empty.

A read that waits longer than KEEP_ALIVE_SECONDS calls the keep-alive hook every that often
(`set_keep_alive`; the worker heartbeats the waiting activity's last details), so a long wait
never looks like a dead worker to Temporal.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import AsyncHTTPPolicy

from fleet.azure.errors import retry_after_seconds

# Inside ARM's documented 1,500 reads a minute and bucket of 250, with margin.
DEFAULT_READS_PER_MINUTE = 1_200
DEFAULT_READ_BURST = 200
MAX_READS_PER_MINUTE = 1_000_000
MAX_READ_BURST = 1_000_000
# The environment of a process whose reads are not paced (benchmarks of the orchestration alone).
UNPACED = {"AZURE_READS_PER_MINUTE": str(MAX_READS_PER_MINUTE), "AZURE_READ_BURST": str(MAX_READ_BURST)}
# ARM's own buckets, the least capacity assumed for its remaining-count headers.
ARM_READ_BUCKET = 250
ARM_GLOBAL_READ_BUCKET = 15 * ARM_READ_BUCKET  # every principal of the subscription
# A count below this share of its capacity holds reads (at least LOW_FLOOR).
LOW_SHARE = 0.1
LOW_FLOOR = 2
# A provider policy's rate is inferred only from a capacity at least this large.
MIN_INFERRED_CAPACITY = 20
MAX_REMAINING_HOLD = 30.0
# The share of the burst that reads which only watch leave to the others: room for that many
# reads waited for ahead of every watcher in line (one a scale set at most: fleet/azure/set_reads.py).
WATCHING_RESERVE = 0.5
# A 429 without Retry-After holds reads this long.
DEFAULT_THROTTLE_HOLD = 1.0
# Far below every heartbeat timeout (10 s) less the liveness pace of activities/heartbeats.py.
KEEP_ALIVE_SECONDS = 2.0

READ_METHODS = frozenset({"GET", "HEAD"})
SUBSCRIPTION_READS = "x-ms-ratelimit-remaining-subscription-reads"
GLOBAL_READS = "x-ms-ratelimit-remaining-subscription-global-reads"
RESOURCE = "x-ms-ratelimit-remaining-resource"
_WINDOW = re.compile(r"(\d+)\s*min$", re.IGNORECASE)

T = TypeVar("T")
# The pacer whose token the task's next read already holds (ReadPacer.acquire_ahead).
_ahead: ContextVar[ReadPacer | None] = ContextVar("read_token_ahead", default=None)
# Whether the task's reads only watch (`watching()`).
_watching: ContextVar[bool] = ContextVar("reads_watching", default=False)
KeepAlive = Callable[[], None]
_keep_alive: KeepAlive | None = None


def set_keep_alive(hook: KeepAlive | None) -> None:
    """What a read calls while it waits for its token (in the caller's context), every
    KEEP_ALIVE_SECONDS; None: nothing."""
    global _keep_alive
    _keep_alive = hook


@contextmanager
def watching() -> Iterator[None]:
    """The reads sent inside only watch: they give way to the reads an action or gate waits for."""
    token = _watching.set(True)
    try:
        yield
    finally:
        _watching.reset(token)


def keep_alive() -> None:
    if _keep_alive is not None:
        _keep_alive()


async def kept_alive(task: asyncio.Future[T]) -> T:
    """Await `task` (shared: cancelling the caller leaves it running), calling the keep-alive
    hook every KEEP_ALIVE_SECONDS while it runs."""
    if _keep_alive is None:
        return await asyncio.shield(task)
    while True:
        done, _ = await asyncio.wait({task}, timeout=KEEP_ALIVE_SECONDS)
        if done:
            return task.result()
        keep_alive()


class TokenBucket:
    """A token bucket without a timer, in the form of the generic cell rate algorithm: it keeps
    when it would be full again (`full_at`). `reserve(now)` takes a token and says when its read
    may go; readers beyond the burst are spread one `interval` apart, in the order they asked.
    `reserve(now, keep)` never takes the last `keep` tokens: a later reader that may take them
    goes before it. (Every read still goes no earlier than full_at less the burst, so any window
    of t seconds lets at most burst + t / interval through, whatever the order.)
    `hold(until, now)` lets nothing go before `until` and empties the bucket there; reservations
    made before it are void (`epoch` changes; their readers reserve again)."""

    def __init__(self, per_minute: float, burst: int, now: float) -> None:
        self.interval = 60.0 / per_minute
        self.burst = burst
        self.full_at = now
        self.held_until = now
        self.epoch = 0

    def tokens(self, now: float) -> float:
        """Tokens left at `now` (negative: reservations waiting)."""
        return self.burst - max(0.0, self.full_at - now) / self.interval

    def reserve(self, now: float, keep: int = 0) -> float:
        self.full_at = max(self.full_at, now) + self.interval
        return max(now, self.full_at - (self.burst - keep) * self.interval, self.held_until)

    def hold(self, until: float, now: float) -> bool:
        """False when an earlier hold lasts as long already."""
        if until <= max(self.held_until, now):
            return False
        self.held_until = until
        self.full_at = until + (self.burst - 1) * self.interval  # one token at `until`
        self.epoch += 1
        return True

    def configure(self, per_minute: float, burst: int, now: float) -> None:
        """New limits, keeping the tokens used and any hold."""
        used = max(0.0, self.full_at - now) / self.interval
        self.interval, self.burst = 60.0 / per_minute, burst
        self.full_at = now + used * self.interval


@dataclass(frozen=True)
class Remaining:
    """One remaining-count an answer carried: of which policy, how many, over what window."""

    policy: str
    count: int
    window_seconds: float | None  # None: ARM's own bucket, refilled at our rate
    least_capacity: int  # what the documented bucket guarantees


def remaining_counts(headers: Mapping[str, str]) -> Iterator[Remaining]:
    """The x-ms-ratelimit-remaining-* counts of an answer that concern reads."""
    for header, least in ((SUBSCRIPTION_READS, ARM_READ_BUCKET), (GLOBAL_READS, ARM_GLOBAL_READ_BUCKET)):
        value = headers.get(header)
        if value is not None and value.strip().isdigit():
            yield Remaining(header, int(value), None, least)
    for entry in (headers.get(RESOURCE) or "").split(","):
        name, _, count = entry.strip().rpartition(";")
        if not name or not count.strip().isdigit():
            continue
        window = _WINDOW.search(name)
        yield Remaining(name, int(count), 60.0 * int(window.group(1)) if window else None, 0)


class ReadPacer:
    """The read budget of one subscription in this process: `await acquire()` before a read is
    sent, `observe(status, headers)` on its answer. `clock` and `sleep` are injectable."""

    def __init__(
        self,
        per_minute: float = DEFAULT_READS_PER_MINUTE,
        burst: int = DEFAULT_READ_BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._clock, self._sleep = clock, sleep
        self.per_minute, self.burst = per_minute, burst
        self.bucket = TokenBucket(per_minute, burst, clock())
        # The highest remaining count seen per policy, plus one: its capacity, as far as we know.
        self._capacity: dict[str, int] = {}
        self.reads = 0  # reads let through
        self.waits = 0  # of which waited for their token
        self.holds = 0  # holds that answers caused (429s, low remaining counts)

    def configure(self, per_minute: float, burst: int) -> None:
        if (per_minute, burst) != (self.per_minute, self.burst):
            self.per_minute, self.burst = per_minute, burst
            self.bucket.configure(per_minute, burst, self._clock())

    async def acquire(self, watching: bool | None = None) -> float:
        """Wait for a token; the seconds waited. Calls the keep-alive hook while waiting.
        `watching` (default: inside `watching()`): a read that gives way to the others."""
        if watching is None:
            watching = _watching.get()
        keep = int(self.bucket.burst * WATCHING_RESERVE) if watching else 0
        started = alive = self._clock()
        while True:
            now = self._clock()
            at, epoch = self.bucket.reserve(now, keep), self.bucket.epoch
            while now < at and self.bucket.epoch == epoch:
                await self._sleep(min(at - now, KEEP_ALIVE_SECONDS))
                now = self._clock()
                if now - alive >= KEEP_ALIVE_SECONDS:
                    keep_alive()
                    alive = now
            if self.bucket.epoch == epoch:
                break
        waited = self._clock() - started
        self.reads += 1
        if waited > 0:
            self.waits += 1
        return waited

    async def acquire_ahead(self, watching: bool = False) -> None:
        """Take the token of this task's next read now: it is sent without waiting again (a
        coalesced read lets callers join while it waits for its turn: fleet/azure/set_reads.py)."""
        await self.acquire(watching)
        _ahead.set(self)

    def take_ahead(self) -> bool:
        """Whether this task's read already holds its token (taken ahead); uses it up."""
        if _ahead.get() is not self:
            return False
        _ahead.set(None)
        return True

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """What a read's answer says about the budget: a 429 holds every read for its
        Retry-After; otherwise a remaining count below its low mark holds them until the refill
        would bring it back there."""
        now = self._clock()
        if status == 429:
            retry_after = retry_after_seconds(headers)
            self._hold(now + (DEFAULT_THROTTLE_HOLD if retry_after is None else retry_after), now)
            return
        for remaining in remaining_counts(headers):
            hold = self._remaining_hold(remaining)
            if hold > 0:
                self._hold(now + hold, now)

    def _remaining_hold(self, remaining: Remaining) -> float:
        capacity = max(self._capacity.get(remaining.policy, 0), remaining.count + 1)
        self._capacity[remaining.policy] = capacity
        capacity = max(capacity, remaining.least_capacity)
        low = max(LOW_FLOOR, math.ceil(LOW_SHARE * capacity))
        if remaining.count >= low:
            return 0.0
        if remaining.window_seconds is None:
            per_second = self.per_minute / 60.0
        elif capacity >= MIN_INFERRED_CAPACITY:
            per_second = capacity / remaining.window_seconds
        else:  # too little seen of this policy to tell its pace: its 429s will say
            return 0.0
        return min(MAX_REMAINING_HOLD, (low - remaining.count) / per_second)

    def _hold(self, until: float, now: float) -> None:
        if self.bucket.hold(until, now):
            self.holds += 1


class ReadPacers:
    """A process's pacers, one per ARM endpoint and subscription, whatever the number of
    AzureFleets and clients. Asked again with other limits, a pacer takes the new ones."""

    def __init__(self) -> None:
        self._pacers: dict[tuple[str, str], ReadPacer] = {}

    def of(self, endpoint: str, subscription_id: str, per_minute: int, burst: int) -> ReadPacer:
        key = (endpoint.rstrip("/").lower(), subscription_id.lower())
        pacer = self._pacers.get(key)
        if pacer is None:
            pacer = self._pacers[key] = ReadPacer(per_minute, burst)
        else:
            pacer.configure(per_minute, burst)
        return pacer


# The process's pacers (every AzureFleet's unless given others).
PACERS = ReadPacers()


class ReadPacingPolicy(AsyncHTTPPolicy[Any, Any]):
    """A per-retry policy of a client (after the retry policy: every attempt of a read takes a
    token): GETs wait for the subscription's pacer and tell it what their answer says."""

    def __init__(self, pacer: ReadPacer) -> None:
        super().__init__()
        self.pacer = pacer

    async def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        if request.http_request.method.upper() not in READ_METHODS:
            return await self.next.send(request)
        if not self.pacer.take_ahead():
            await self.pacer.acquire()
        response = await self.next.send(request)
        answer = response.http_response
        self.pacer.observe(answer.status_code, answer.headers)
        return response
