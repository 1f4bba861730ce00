"""`upgradectl` against hostile and broken input: one line naming the option or field, the
documented exit code, nothing echoed that can drive a terminal, never a traceback.

Most of these need no server: they run the real entry point (`starter.cli.cli`) in-process, as
`upgradectl` does, with Temporal pointed at a closed port. The fleet's refusals use the session's
emulator; the absent and finished upgrades, the admission wait and the Temporal restart use real
dev servers and workers."""

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
from starter.cli import cli
from starter.terminal import clean
from starter.upgrade_commands import build_request
from starter.upgrades import final_report
from tests.conftest import Result
from tests.helpers import CLOSED, QUICK_HEALTH, V1, V2, WorkerProcesses, make_scale_set, product_worker
from tests.test_models import SEED_POLICY
from worker.connection import connect

# What may never reach a terminal raw: ESC, a C1 CSI, BEL, a bidi override.
HOSTILE = ("\x1b", "\x9b", "\x07", "\u202e")


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("TEMPORAL_ADDRESS", CLOSED)
    monkeypatch.setenv("FLEET_URL", f"https://{CLOSED}")
    monkeypatch.setenv("AZURE_ARM_ENDPOINT", f"https://{CLOSED}")
    monkeypatch.setenv("COLUMNS", "200")


def call(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    code = cli(list(args))
    out, err = capsys.readouterr()
    return Result(code, out, err)


def assert_harmless(result: Result) -> None:
    text = result.out + result.err
    assert "Traceback" not in text
    for char in HOSTILE:
        assert char not in text, f"{char!r} echoed raw: {text!r}"
    assert "╭" not in text  # no panels: one line, plus a hint for usage errors


# --- the cleaning itself -----------------------------------------------------------------------


def test_clean_makes_control_and_bidi_characters_visible_and_caps_the_length():
    assert clean("a\x1b[2Jb\x9b\x07\u202e\u2066c") == "a\\x1b[2Jb\\x9b\\x07\\u202e\\u2066c"
    assert clean("[/] :b: ok") == "[/] :b: ok"
    assert clean("x" * 10_000) == "x" * 80 + "…"
    assert clean("line\nbreak") == "line\\x0abreak"


# --- markup, emoji, control characters, length --------------------------------------------------


def test_markup_and_emoji_codes_in_user_text_are_printed_as_they_are(offline, capsys):
    result = call(capsys, "start", "--scale-set", "web", "--image", "a[/]:b")
    assert result.code == 3
    assert "--image: image 'a[/]:b' is not PUBLISHER:OFFER:SKU:VERSION" in result.err
    assert_harmless(result)

    result = call(capsys, "start", "--scale-set", "web", "--image", ":b:")
    assert result.code == 3
    assert "':b:'" in result.err and "🅱" not in result.err


def test_control_characters_in_a_file_name_are_made_visible(offline, capsys, tmp_path):
    name = str(tmp_path / "p\x1b[2J\x1b[41m\x9b\x07\u202eolicy[/].json")
    result = call(capsys, "start", "--scale-set", "web", "--image", str(V2), "--policy", name)
    assert result.code == 3
    assert "--policy" in result.err and "\\x1b[2J\\x1b[41m\\x9b\\x07\\u202eolicy[/].json" in result.err
    assert_harmless(result)
    assert len(result.err.splitlines()) == 1


def test_a_huge_value_is_not_echoed_in_full(offline, capsys):
    huge = "P" + "1" * 10_000
    result = call(
        capsys, "start", "--scale-set", "web", "--image", str(V2), "--pause-time-between-batches", huge
    )
    assert result.code == 3
    assert "rollingUpgradePolicy.pauseTimeBetweenBatches" in result.err
    assert "…" in result.err and len(result.err) < 1_000
    assert_harmless(result)


# --- files ---------------------------------------------------------------------------------------


def test_a_binary_policy_file_is_refused_naming_the_option_and_the_file(offline, capsys, tmp_path):
    policy = tmp_path / "policy.bin"
    policy.write_bytes(b"\xff\xfe\x00\x1b[2J binary")
    result = call(capsys, "start", "--scale-set", "web", "--image", str(V2), "--policy", str(policy))
    assert result.code == 3
    assert result.err.startswith(f"error: --policy {policy}: not a text file")
    assert len(result.err.splitlines()) == 1
    assert_harmless(result)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"rollingUpgradePolicy": {"maxBatchInstancePercent": 10,', "not valid JSON or YAML at line 1"),
        ("key: [unclosed\n\x1b[2J", "not valid JSON or YAML at character 16: \\x1b is not allowed"),
        ("- 1\n- 2\n", "must hold a JSON or YAML object (found list)"),
        ("just text", "must hold a JSON or YAML object (found str)"),
    ],
)
def test_a_malformed_policy_file_is_one_line_naming_the_option_and_the_file(
    offline, capsys, tmp_path, content, message
):
    policy = tmp_path / "policy.yaml"
    policy.write_text(content)
    result = call(capsys, "start", "--scale-set", "web", "--image", str(V2), "--policy", str(policy))
    assert result.code == 3
    assert result.err.startswith(f"error: --policy {policy}: ") and message in result.err
    assert len(result.err.splitlines()) == 1
    assert_harmless(result)


def test_a_pydantic_error_names_the_option_without_a_documentation_link(offline, capsys):
    result = call(capsys, "start", "--scale-set", "web", "--image", "/gallery/images/web/versions/")
    assert result.code == 3
    assert result.err.startswith("error: --image: version must not be empty")
    assert "pydantic.dev" not in result.err and "For further information" not in result.err
    bad_spec = call(capsys, "fleet", "create", "web", "--image", str(V1), "--instances", "0")
    assert bad_spec.code == 3 and "capacity: must be a whole number from 1 to 10000" in bad_spec.err
    assert "pydantic.dev" not in bad_spec.err


# --- numbers and usage errors ----------------------------------------------------------------------

NUMERIC = [
    ("start", "--max-batch-instance-percent"),
    ("start", "--max-unhealthy-instance-percent"),
    ("start", "--max-unhealthy-upgraded-instance-percent"),
    ("start", "--health-port"),
    ("start", "--health-interval"),
    ("start", "--health-probes"),
    ("start", "--health-grace-period"),
    ("fleet create", "--instances"),
    ("fleet create", "--update-domains"),
    ("fleet create", "--fault-domains"),
    ("fleet create", "--data-disks"),
    ("fleet create", "--unhealthy-share"),
    ("fleet create", "--transient-error-share"),
    ("fleet create", "--seed"),
    ("fleet create", "--reimage-seconds"),
    ("fleet create", "--restore-seconds"),
    ("fleet create", "--boot-seconds"),
    ("fleet serve", "--port"),
    ("demo", "--instances"),
]


@pytest.mark.parametrize(("command", "option"), NUMERIC)
def test_every_numeric_option_names_itself_when_its_value_is_not_a_number(offline, capsys, command, option):
    args = {
        "start": ["start", "--scale-set", "web", "--image", str(V2)],
        "fleet create": ["fleet", "create", "web", "--image", str(V1)],
        "fleet serve": ["fleet", "serve"],
        "demo": ["demo"],
    }[command]
    result = call(capsys, *args, option, "abc\x1b[2J")
    assert result.code == 2
    assert option in result.err.splitlines()[0]
    assert len(result.err.splitlines()) <= 2
    assert_harmless(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "web", "--bogus\x1b[2J\u202e"], "No such option: --bogus\\x1b[2J\\u202e"),
        (["status"], "Missing argument"),
        (["start", "--scale-set", "web"], "Missing option '--image'"),
        (["start", "--scale-set"], "requires an argument"),
        (["nonsense\x1b]0;title\x07"], "No such command 'nonsense\\x1b]0;title\\x07'"),
        (["fleet", "create", "web", "--capacity", "x"], "No such option: --capacity"),
    ],
)
def test_usage_errors_are_one_line_and_a_hint_with_exit_two(offline, capsys, args, message):
    result = call(capsys, *args)
    assert result.code == 2
    lines = result.err.splitlines()
    assert lines[0].startswith("error: ") and message in lines[0]
    assert len(lines) == 2 and lines[1].startswith("try `upgradectl")
    assert_harmless(result)


@pytest.mark.parametrize(
    "command", [["pause", "web"], ["rollout", "hold", "1.0.0"], ["rollout", "cancel", "1.0.0"]]
)
def test_a_reason_has_one_limit_wherever_it_is_asked(offline, capsys, command):
    """pause, rollout hold and rollout cancel take a --reason of up to 500 characters alike."""
    too_long = call(capsys, *command, "--reason", "x" * 501)
    assert too_long.code == 3, too_long
    assert too_long.err.strip() == "error: --reason: at most 500 characters (got 501)"
    longest = call(capsys, *command, "--reason", "x" * 500)  # taken: on to Temporal, not reachable
    assert longest.code == 4 and "cannot reach Temporal" in longest.err, longest


def test_help_still_works(offline, capsys):
    result = call(capsys, "status", "--help")
    assert result.code == 0 and "Usage" in result.out


# --- Azure's policy JSON --------------------------------------------------------------------------


def test_azures_own_upgrade_policy_json_is_taken_with_a_note_per_field_not_acted_on(
    offline, capsys, tmp_path
):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(SEED_POLICY))
    request = build_request(
        "web", str(V2), policy, {"rollingUpgradePolicy": {"maxUnhealthyInstancePercent": 30}}, "User"
    )
    assert isinstance(request, UpgradeRequest)
    assert request.policy.max_batch_instance_percent == 20
    assert request.policy.max_unhealthy_instance_percent == 30  # the flag over the file
    assert request.policy.max_unhealthy_upgraded_instance_percent == 25
    assert request.disable_automatic_rollback is False
    notes = capsys.readouterr().err.splitlines()
    assert (
        "note: automaticOSUpgradePolicy.enableAutomaticOSUpgrade is read but not acted on: this "
        "command runs one upgrade now; automatic upgrades come with `upgradectl auto`"
    ) in notes
    assert len(notes) == 4 and all(n.startswith("note: ") for n in notes)
    assert "is not a known field" not in "".join(notes)


def test_a_scale_sets_rest_body_is_taken_as_its_upgrade_policy(offline, capsys, tmp_path):
    # Seed 000's REST example (PUT/PATCH of the scale set) and an ARM template resource wrap the
    # upgradePolicy in "properties": the policy inside is the one used.
    policy = tmp_path / "vmss.json"
    policy.write_text(json.dumps({"properties": SEED_POLICY}))
    request = build_request("web", str(V2), policy, {}, "User")
    assert isinstance(request, UpgradeRequest)
    assert request.policy.max_unhealthy_instance_percent == 25
    capsys.readouterr()
    result = call(capsys, "start", "--scale-set", "web", "--image", str(V2), "--policy", str(policy))
    assert result.code == 4 and "cannot reach Temporal" in result.err, result  # past the policy
    assert "is not a known field" not in result.err
    # Beside the upgrade policy, the rest of a scale set's properties is not an upgrade policy.
    policy.write_text(json.dumps({"properties": {**SEED_POLICY, "overprovision": True}}))
    result = call(capsys, "start", "--scale-set", "web", "--image", str(V2), "--policy", str(policy))
    assert result.code == 3 and "overprovision" in result.err


def test_a_large_batch_alone_is_taken_and_both_inconsistent_are_refused(offline, capsys):
    # Azure checks maxBatchInstancePercent against maxUnhealthyInstancePercent only when both
    # are set: 50 alone starts (here: up to Temporal, which is closed), with a note.
    start = ("start", "--scale-set", "web", "--image", str(V2), "--max-batch-instance-percent", "50")
    alone = call(capsys, *start)
    assert alone.code == 4, alone
    assert "batches stay within 20%" in alone.err
    both = call(capsys, *start, "--max-unhealthy-instance-percent", "30")
    assert both.code == 3
    assert "maxBatchInstancePercent (50) may not exceed maxUnhealthyInstancePercent (30)" in both.err
    assert_harmless(both)


def test_unknown_policy_fields_and_max_surge_are_still_refused_by_name(offline, capsys, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "upgradePolicy:\n  RollingUpgradePolicy:\n    maxBatchPercent: 10\n    maxSurge: true\n"
    )
    result = call(capsys, "start", "--scale-set", "web", "--image", str(V2), "--policy", str(policy))
    assert result.code == 3
    assert "rollingUpgradePolicy.maxBatchPercent: is not a known field" in result.err
    policy.write_text("upgradePolicy:\n  RollingUpgradePolicy:\n    maxSurge: true\n")
    result = call(capsys, "start", "--scale-set", "web", "--image", str(V2), "--policy", str(policy))
    assert result.code == 3 and "maxSurge is not supported: instances are upgraded in place" in result.err


def test_a_nested_unknown_field_in_a_policy_or_spec_file_is_refused_by_its_path(offline, capsys, tmp_path):
    # The models ignore unknown fields (payloads between workers); a user's file refuses them.
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"applicationHealth": {"port": 8080, "someNewField": 1}}))
    result = call(capsys, "start", "--scale-set", "web", "--image", str(V2), "--policy", str(policy))
    assert result.code == 3, result
    assert [line for line in result.err.splitlines() if "someNewField" in line] == [
        "applicationHealth.someNewField: is not a known field"
    ], result.err
    assert_harmless(result)

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "faults:\n  goUnhealthy:\n    - afterReimages: 2\n      instances: ['0']\n      someNewField: 1\n"
    )
    result = call(capsys, "fleet", "create", "web", "--image", str(V2), "--file", str(spec))
    assert result.code == 3, result
    assert [line for line in result.err.splitlines() if "someNewField" in line] == [
        "faults.goUnhealthy.0.someNewField: is not a known field"
    ], result.err
    assert_harmless(result)


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


# --- a server that is still starting ------------------------------------------------------------------

NOT_HEALTHY = (
    "Failed client connect: `get_system_info` call error after connection: Status { code: Unavailable, "
    'message: "Frontend is not healthy yet" }'
)


async def test_connect_waits_for_a_starting_server_but_not_for_a_missing_one(monkeypatch):
    """A dev server takes connections before its frontend serves; the worker and `upgradectl`
    started with it must wait that out, yet still fail at once when nothing listens."""
    from temporalio.client import Client

    from worker import connection

    calls: list[str] = []
    client = object()

    async def starting(**config):
        calls.append(config["target_host"])
        if len(calls) < 3:
            raise RuntimeError(NOT_HEALTHY)
        return client

    monkeypatch.setattr(connection, "STARTING_SERVER_POLL", 0.01)
    monkeypatch.setattr(Client, "connect", staticmethod(starting))
    assert await connect("127.0.0.1:1") is client
    assert calls == ["127.0.0.1:1"] * 3

    async def refused(**config):
        calls.append(config["target_host"])
        raise RuntimeError("Failed client connect: Server connection error: connection refused")

    calls.clear()
    monkeypatch.setattr(Client, "connect", staticmethod(refused))
    with pytest.raises(RuntimeError, match="connection refused"):
        await connect("127.0.0.1:1")
    assert len(calls) == 1

    calls.clear()
    monkeypatch.setattr(connection, "STARTING_SERVER_WAIT", 0.05)

    async def never_ready(**config):
        calls.append(config["target_host"])
        raise RuntimeError(NOT_HEALTHY)

    monkeypatch.setattr(Client, "connect", staticmethod(never_ready))
    with pytest.raises(RuntimeError, match="not healthy yet"):
        await connect("127.0.0.1:1")
    assert 1 < len(calls) < 50  # it waited, then gave up at the deadline
