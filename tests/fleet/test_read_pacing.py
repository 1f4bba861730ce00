"""ARM reads paced per subscription (fleet/azure/read_pacing.py) through the real path, AzureFleet
(the Azure SDK) to the emulator over HTTPS: a burst spread out, a look before an action going
ahead of the probes in line, a 429 holding every read of the subscription, subscriptions apart,
a low remaining count slowing reads (through a proxy that adds Azure's headers, which the
emulator sends only with its 429s); and a waiting read keeping its activity alive with the same
details."""

from __future__ import annotations

import asyncio
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

from fleet.azure import AzureFleet, AzureSettings
from fleet.azure.read_pacing import ReadPacer, ReadPacers, set_keep_alive
from fleet.emulator.admin import EmulatorAdmin
from fleet.errors import FleetError, FleetTransientError
from models.fleet import FaultSpec, ScaleSetSpec
from models.image import ImageReference
from starter.processes import EmulatorAddress
from tests.helpers.arm import OTHER_SUBSCRIPTION
from worker.keep_alive import HeartbeatMemory, heartbeat_again

IMAGE = ImageReference.parse("Canonical:ubuntu-24_04-lts:server:1.0.0")


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


async def test_a_look_before_an_action_goes_ahead_of_the_probes_in_line(
    emulator: EmulatorAddress, fleet: EmulatorAdmin
) -> None:
    # A wave of sets starting while another wave's sets boot: their looks before the reimage
    # must not queue behind every probe of the booting sets when the budget runs short.
    watched = [await new_set(fleet, capacity=1) for _ in range(5)]
    starting = await new_set(fleet, capacity=1)
    settings = settings_of(emulator, AZURE_READS_PER_MINUTE="600", AZURE_READ_BURST="10")
    async with AzureFleet(settings, pacers=ReadPacers()) as azure:
        for name in [*watched, starting]:  # each set's mode and one list: the burst, used up
            await azure.get_instance(name, "0")
        done: list[str] = []

        async def look(name: str, watching: bool) -> None:
            await azure.get_instance(name, "0", watching=watching)
            done.append(name)

        probes = [asyncio.create_task(look(name, watching=True)) for name in watched]
        await asyncio.sleep(0.02)  # the probes are in line for their tokens
        await look(starting, watching=False)
        await asyncio.gather(*probes)
    # Without precedence it would wait its turn behind probes that asked before it (0.1 s a token).
    assert done[0] == starting, done
    assert (await fleet.calls(starting)).reads == 3


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
