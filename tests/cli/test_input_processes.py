"""`upgradectl` and the worker run as separate processes against bad input and against servers that
refuse, are absent, finished or restarting: one line naming the option or field, the documented
exit code, nothing echoed that can drive a terminal, never a traceback. The fleet's refusals use
the session's emulator; the absent and finished upgrades, the admission wait and the Temporal
restart use real dev servers and workers. (The checks that need no server run in-process:
tests/cli/test_input.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

import pytest
from temporalio.client import WorkflowExecutionStatus

from models.fleet import TimingSpec
from models.upgrade import ROLLING_UPGRADE_WORKFLOW, UpgradeRequest, upgrade_workflow_id
from starter import processes
from starter.upgrades import final_report
from tests.helpers.commands import Result, assert_harmless
from tests.helpers.upgrades import (
    CLOSED,
    QUICK_HEALTH,
    V1,
    V2,
    WorkerProcesses,
    make_scale_set,
    product_worker,
)
from worker.connection import connect

# --- the fleet ---------------------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str]) -> Result:
    done = subprocess.run(
        [sys.executable, "-m", "starter.cli", *args],
        env={**os.environ, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def test_fleet_refusals_exit_three_with_the_fleets_message_and_unreachable_exits_four(emulator, tmp_path):
    env = {**emulator.env(), "TEMPORAL_ADDRESS": CLOSED}
    name = f"refusals-{uuid.uuid4().hex[:8]}"
    cases = [
        (
            # 'latest' of an image with no version at all
            ["fleet", "create", name, "--instances", "2", "--image", "Contoso:no-such-os:2024:latest"],
            "the fleet refused: ",
        ),
        (["fleet", "publish", "Contoso:web-os:2024:latest"], "the fleet refused: "),
        (["fleet", "show", "nowhere"], "the fleet refused: "),
        (["fleet", "show", "nowhere\x1b[2J"], "NAME: 'nowhere\\x1b[2J' is not a scale set name"),
        (["fleet", "ops", "nowhere"], "the fleet refused: "),
    ]
    for args, message in cases:
        result = run_cli(*args, env=env)
        assert result.code == 3, (args, result.err)
        assert result.err.startswith(f"error: {message}") and len(result.err.splitlines()) == 1, result.err
        assert_harmless(result)

    for args in (
        ["fleet", "show", "web"],
        ["fleet", "ops", "web"],
        ["fleet", "publish", str(V2)],
        ["fleet", "create", name, "--image", str(V1)],
    ):
        result = run_cli(*args, env={**emulator.env(), "FLEET_URL": f"https://{CLOSED}"})
        assert result.code == 4, (args, result.err)
        assert result.err.startswith("error: cannot reach the fleet: "), result.err
        assert f"https://{CLOSED}/admin/" in result.err and "FLEET_URL" in result.err, result.err
        assert len(result.err.splitlines()) == 1 and "Traceback" not in result.err

    # The admin API is HTTPS with the emulator's CA: a missing CA file or a plain-http URL is a
    # usage error naming the variable, before any call.
    misconfigured = [
        ({"FLEET_CA": str(tmp_path / "nowhere.pem")}, "error: FLEET_CA must name the emulator's CA file"),
        (
            {"FLEET_URL": emulator.url.replace("https://", "http://")},
            "error: FLEET_URL must be an https:// URL",
        ),
    ]
    for changed, message in misconfigured:
        result = run_cli("fleet", "show", "web", env={**emulator.env(), **changed})
        assert result.code == 2, (changed, result.err)
        assert result.err.startswith(message) and len(result.err.splitlines()) == 1, result.err
        assert_harmless(result)


def test_temporal_unreachable_exits_four(emulator):
    for args in (
        ["status", "web"],
        ["watch", "web"],
        ["cancel", "web"],
        ["history", "web"],
        ["start", "--scale-set", "web", "--image", str(V2)],
    ):
        result = run_cli(*args, env={"TEMPORAL_ADDRESS": CLOSED, **emulator.env()})
        assert result.code == 4, (args, result.err)
        assert result.err.startswith("error: cannot reach Temporal"), result.err
        assert "Traceback" not in result.err


# --- no upgrade, a finished upgrade ------------------------------------------------------------------


async def test_no_upgrade_and_a_finished_one_exit_five_in_one_line(upgradectl, fleet):
    name = await make_scale_set(fleet, 2)
    for command in ("status", "watch", "cancel"):
        result = await upgradectl(command, name)
        assert result.code == 5, (command, result.err)
        assert result.err == f"error: scale set '{name}' has no upgrade\n"
    hostile = await upgradectl("status", "web\x1b[2J[/]:b:")
    assert hostile.code == 5 and "web\\x1b[2J[/]:b:" in hostile.err
    assert_harmless(hostile)

    done = await upgradectl(
        "start",
        "--scale-set",
        name,
        "--image",
        str(V2),
        "--wait",
        "--health-interval",
        "1",
        "--health-wait-timeout",
        "PT2S",
    )
    assert done.code == 0, done.err
    cancelled = await upgradectl("cancel", name)
    assert cancelled.code == 5
    assert cancelled.err.startswith(f"error: the latest upgrade of '{name}' already ended (completed at ")
    assert cancelled.err.rstrip().endswith("nothing to cancel") and len(cancelled.err.splitlines()) == 1
    assert (await upgradectl("status", name)).code == 0  # a finished upgrade still answers


# --- status waits for admission ------------------------------------------------------------------------


async def test_status_right_after_the_start_counts_every_instance(local_env, fleet, azure, emulator):
    """The upgrade starts with no worker polling, so admission waits for one: `status` must
    wait for it too, not answer a status that counts nothing."""
    name = await make_scale_set(fleet, 4, update_domains=1)
    task_queue = f"tq-{uuid.uuid4()}"
    request = UpgradeRequest(
        scale_set=name, target_image=V2, health=QUICK_HEALTH, policy={"pauseTimeBetweenBatches": "PT1H"}
    )
    handle = await local_env.client.start_workflow(
        ROLLING_UPGRADE_WORKFLOW, request, id=upgrade_workflow_id(name), task_queue=task_queue
    )
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": local_env.client.service_client.config.target_host,
        **emulator.env(),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "starter.cli",
        "status",
        name,
        "--json",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await asyncio.sleep(3)  # status is waiting; now a worker comes
        async with product_worker(local_env, azure, task_queue):
            out, err = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 0, err.decode()
            progress = json.loads(out)["properties"]["progress"]
            assert sum(progress.values()) == 4, progress
            await handle.signal("cancel")
            await final_report(handle)
    finally:
        if process.returncode is None:
            process.kill()


# --- watch rides out a Temporal restart ------------------------------------------------------------------


async def test_watch_rides_out_a_temporal_restart(fleet, emulator, tmp_path):
    port, ui_port = processes.free_port(), processes.free_port()
    database = tmp_path / "temporal.db"
    server = processes.start_dev_server(port, ui_port, database, tmp_path / "server-1.log")
    workers = WorkerProcesses(f"127.0.0.1:{port}", emulator, tmp_path)
    watcher = None
    try:
        await connect(f"127.0.0.1:{port}")  # the server answers
        name = await make_scale_set(
            fleet,
            6,
            update_domains=1,
            timing=TimingSpec(reimage_seconds=[1, 1], restore_seconds=[0, 0], boot_seconds=[0, 0]),
        )
        await workers.start()
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
            **emulator.env(),
            "UPGRADE_TASK_QUEUE": workers.task_queue,
        }
        started = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "starter.cli",
            "start",
            "--scale-set",
            name,
            "--image",
            str(V2),
            "--health-interval",
            "1",
            "--pause-time-between-batches",
            "PT2S",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert await started.wait() == 0
        watcher = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "starter.cli",
            "watch",
            name,
            "--json",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        first = await asyncio.wait_for(watcher.stdout.readline(), 60)  # it follows the upgrade
        assert json.loads(first)["properties"]["runningStatus"]["code"] == "RollingForward"

        processes.stop(server)  # Temporal goes away while `watch` follows the upgrade ...
        await asyncio.sleep(3)
        if watcher.returncode is not None:
            raise AssertionError(
                f"watch exited {watcher.returncode}: {(await watcher.communicate())[1].decode()}"
            )
        # ... and `watch` waits for it
        server = processes.start_dev_server(port, ui_port, database, tmp_path / "server-2.log")

        out, err = await asyncio.wait_for(watcher.communicate(), 180)
        assert watcher.returncode == 0, err.decode()
        assert "lost the connection to Temporal; reconnecting…" in err.decode()
        assert "reconnected to Temporal" in err.decode()
        assert "Traceback" not in err.decode()
        last = json.loads((first + out).decode().splitlines()[-1])
        assert last["properties"]["runningStatus"]["code"] == "Completed"
        assert last["properties"]["progress"]["successfulInstanceCount"] == 6
        description = (
            await (await connect(f"127.0.0.1:{port}"))
            .get_workflow_handle(upgrade_workflow_id(name))
            .describe()
        )
        assert description.status == WorkflowExecutionStatus.COMPLETED
    finally:
        if watcher is not None and watcher.returncode is None:
            watcher.kill()
        workers.stop()
        processes.stop(server)


@pytest.mark.parametrize(
    "command",
    [[], ["start"], ["plan"], ["status"], ["history"], ["watch"], ["cancel"], ["worker"], ["demo"]]
    + [["fleet", sub] for sub in ("serve", "create", "publish", "show", "ops")],
)
def test_every_help_prints_plain_text(command):
    # Image references look like markup ("[:VERSION|latest]"): help must print them as they are.
    result = run_cli(*command, "--help", env={})
    assert result.code == 0, result.err
    assert "Traceback" not in result.err + result.out
    if command in (["start"], ["plan"]):
        assert "[:VERSION|latest]" in result.out


@pytest.mark.parametrize(
    ("variable", "value"),
    [("AZURE_ARM_ENDPOINT", "http://x"), ("AZURE_SUBSCRIPTION_ID", "\x1b[31mnot-a-guid")],
)
def test_the_worker_refuses_bad_azure_settings_in_one_line(variable, value):
    done = subprocess.run(
        [sys.executable, "-m", "worker"],
        env={**os.environ, variable: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {variable} must be"), done.stderr
    assert "\x1b" not in done.stderr  # shown escaped, never sent to the terminal
