"""`upgradectl` against hostile and broken input: one line naming the option or field, the
documented exit code, nothing echoed that can drive a terminal, never a traceback.

These need no server: they run the real entry point (`starter.cli.cli`) in-process, as
`upgradectl` does, with Temporal and the fleet pointed at a closed port (the `offline` fixture).
Separate processes and real servers: tests/cli/test_input_processes.py."""

from __future__ import annotations

import json

import pytest

from models.upgrade import UpgradeRequest
from starter.terminal import clean
from starter.upgrade_commands import build_request
from tests.helpers.commands import assert_harmless, call
from tests.helpers.policies import SEED_POLICY
from tests.helpers.upgrades import V1, V2
from worker.connection import connect

pytestmark = pytest.mark.fast  # `make test-fast`: pure, in-process

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


def test_unknown_policy_fields_are_still_refused_by_name_and_max_surge_checked(offline, capsys, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "upgradePolicy:\n  RollingUpgradePolicy:\n    maxBatchPercent: 10\n    maxSurge: true\n"
    )
    result = call(capsys, "start", "--scale-set", "web", "--image", str(V2), "--policy", str(policy))
    assert result.code == 3
    assert "rollingUpgradePolicy.maxBatchPercent: is not a known field" in result.err
    policy.write_text("upgradePolicy:\n  RollingUpgradePolicy:\n    maxSurge: often\n")
    result = call(capsys, "start", "--scale-set", "web", "--image", str(V2), "--policy", str(policy))
    assert result.code == 3 and "rollingUpgradePolicy.maxSurge: Input should be a valid boolean" in result.err


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


def test_bad_alarm_gates_in_a_policy_file_are_refused_one_line_per_field(offline, capsys, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "alarms:\n"
        "  - name: app\n"
        "  - name: errors\n"
        "    prometheus: {url: 'ftp://prom', query: 'rate(x[5m])', threshold: high, comparison: '~'}\n"
        "  - name: cpu\n"
        "    azureMonitor: {metricAlert: high-cpu}\n"
        "    http: {url: 'http://alarms/cpu', firing: [red], ok: [red], colour: blue}\n"
        "rollbackOnAlarm: maybe\n"
        "alarmUnreachableTimeout: PT5S\n"
    )
    result = call(capsys, "start", "--scale-set", "web", "--image", str(V2), "--policy", str(policy))
    assert result.code == 3, result
    lines = result.err.splitlines()
    for expected in (
        "alarms.0: alarm 'app' needs exactly one source: http, prometheus or azureMonitor (got none)",
        "alarms.1.prometheus.url: must be an http:// or https:// URL (got 'ftp://prom')",
        "alarms.1.prometheus.threshold: Input should be a valid number, unable to parse string as a number",
        "alarms.1.prometheus.comparison: must be one of > >= < <= == != (got '~')",
        "alarms.2.http.colour: is not a known field",
        "rollbackOnAlarm: Input should be a valid boolean, unable to interpret input",
        "alarmUnreachableTimeout: must be from PT1M to PT24H (got PT5S)",
    ):
        assert expected in lines, result.err
    assert_harmless(result)

    policy.write_text("alarms:\n  - {name: cpu, azureMonitor: {metricAlert: a}, http: {url: 'http://x'}}\n")
    result = call(capsys, "start", "--scale-set", "web", "--image", str(V2), "--policy", str(policy))
    assert result.code == 3 and "alarms.0: alarm 'cpu' needs exactly one source" in result.err
    assert "(got http, azureMonitor)" in result.err
