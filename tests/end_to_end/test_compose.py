"""The docker-compose setup, checked without Docker: the services and the order they start in, the
workers' settings, pinned images, files that exist, and the two setup scripts run for real against
stand-ins for `temporal` and `temporal-sql-tool` that record what they were asked to do."""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import socket
import stat
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography import x509
from temporalio.common import SearchAttributeIndexedValueType

from fleet.azure.settings import AzureSettings
from fleet.emulator.arm import RESOURCE_GROUP, SUBSCRIPTION
from fleet.emulator.tls import ca_file, ensure_certificates
from models import search_attributes
from starter import processes
from worker.deployment import DeploymentSettings, MakeCurrent

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SEARCH_ATTRIBUTES = {"ScaleSet", "TargetImage", "UpgradeStatus", "StartedBy"}
PACKAGES = ["models", "rules", "workflows", "activities", "fleet", "worker", "starter"]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    services: dict[str, Any] = compose["services"]
    return services


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def command_line(service: dict[str, Any]) -> list[str]:
    """Entrypoint and command as one argument list."""
    args: list[str] = []
    for key in ("entrypoint", "command"):
        value = service.get(key) or []
        args += shlex.split(value) if isinstance(value, str) else [str(v) for v in value]
    return args


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host source, container target) of every bind mount; named volumes are left out."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/", "~")):
            mounts.append((source, target))
    return mounts


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """The file in this repository that a container sees at container_path."""
    for source, target in bind_mounts(service):
        target = target.rstrip("/")
        if container_path == target or container_path.startswith(target + "/"):
            return (COMPOSE_FILE.parent / source / container_path[len(target) :].lstrip("/")).resolve()
    raise AssertionError(f"{container_path} is not mounted from the repository")


def mounted_script(service: dict[str, Any]) -> Path:
    scripts = [arg for arg in command_line(service) if arg.endswith(".sh")]
    assert len(scripts) == 1, f"expected one script in {command_line(service)}"
    path = host_path(service, scripts[0])
    assert path.is_file(), path
    return path


def condition(services: dict[str, Any], name: str, dependency: str) -> str | None:
    depends_on = services[name].get("depends_on") or {}
    if isinstance(depends_on, list):  # the short form has no conditions
        return None
    found: str | None = (depends_on.get(dependency) or {}).get("condition")
    return found


def test_every_service_is_there(services):
    expected = {
        "postgresql",
        "temporal-schema",
        "temporal",
        "temporal-namespace",
        "temporal-ui",
        "fleet-emulator",
        "worker",
    }
    assert expected <= set(services), f"missing: {expected - set(services)}"


@pytest.mark.parametrize(
    "name, dependency, allowed",
    [
        ("temporal-schema", "postgresql", {"service_healthy"}),
        ("temporal", "temporal-schema", {"service_completed_successfully"}),
        ("temporal-namespace", "temporal", {"service_healthy"}),
        ("temporal-ui", "temporal", {"service_healthy"}),
        ("worker", "temporal-namespace", {"service_completed_successfully"}),
        ("worker", "fleet-emulator", {"service_healthy", "service_started"}),
    ],
)
def test_services_start_in_order(services, name, dependency, allowed):
    assert condition(services, name, dependency) in allowed


def test_waited_for_services_can_report_it(services):
    """`service_healthy` needs a healthcheck; `service_completed_successfully` a one-shot job."""
    waited = 0
    for name, service in services.items():
        for dependency in service.get("depends_on") or {}:
            kind = condition(services, name, dependency)
            if kind == "service_healthy":
                assert services[dependency].get("healthcheck", {}).get("test"), dependency
                waited += 1
            elif kind == "service_completed_successfully":
                assert services[dependency].get("restart", "no") in ("no", "on-failure"), dependency
                waited += 1
    assert waited >= 6


def test_workers_reach_temporal_and_the_fleet(services):
    worker = services["worker"]
    env = environment(worker)
    expected = {
        "TEMPORAL_ADDRESS": "temporal:7233",
        "TEMPORAL_NAMESPACE": "default",
        "UPGRADE_TASK_QUEUE": "rolling-upgrades",
        # The fleet as Azure: the SDK against the emulator, over HTTPS, by its service name.
        "AZURE_ARM_ENDPOINT": "https://fleet-emulator:8780",
        "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
        "AZURE_RESOURCE_GROUP": RESOURCE_GROUP,
        # The emulator's admin API, for `upgradectl fleet ...` inside a worker container.
        "FLEET_URL": "https://fleet-emulator:8780",
    }
    assert {key: env.get(key) for key in expected} == expected
    assert env.get("AZURE_ARM_TOKEN"), "unset, DefaultAzureCredential would look for a real sign-in"
    assert env["FLEET_CA"] == env["AZURE_CA_BUNDLE"]
    assert "FLEET_HTTP_TIMEOUT" not in env  # nothing reads it any more
    # The settings the worker builds AzureFleet from are valid (the CA file is the container's).
    settings = AzureSettings.from_env({**env, "AZURE_CA_BUNDLE": ""})
    assert (settings.endpoint, settings.subscription_id, settings.resource_group, settings.token) == (
        "https://fleet-emulator:8780",
        SUBSCRIPTION,
        RESOURCE_GROUP,
        env["AZURE_ARM_TOKEN"],
    )
    assert worker["deploy"]["replicas"] > 1
    assert command_line(worker)[-3:] == ["python", "-m", "worker"]
    # The namespace job prepares the namespace the workers use.
    assert environment(services["temporal-namespace"])["TEMPORAL_NAMESPACE"] == env["TEMPORAL_NAMESPACE"]
    assert environment(services["temporal-namespace"])["TEMPORAL_ADDRESS"] == env["TEMPORAL_ADDRESS"]


def emulator_options(services: dict[str, Any]) -> dict[str, str]:
    args = command_line(services["fleet-emulator"])
    assert args[:3] == ["python", "-m", "fleet.emulator"]
    return dict(zip(args[3::2], args[4::2]))


def named_volumes(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Named volume -> (container target, read-only) of a service."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type", "volume") == "volume":
                mounts[volume["source"]] = (volume["target"], bool(volume.get("read_only")))
            continue
        source, target, *mode = volume.split(":")
        if not source.startswith((".", "/", "~")):
            mounts[source] = (target, "ro" in "".join(mode).split(","))
    return mounts


def test_fleet_emulator_serves_where_workers_and_users_look(services):
    emulator = services["fleet-emulator"]
    options = emulator_options(services)
    assert options["--host"] == "0.0.0.0"
    assert options["--port"] == "8780"
    data_dir = str(Path(options["--db"]).parent)
    assert data_dir in [target for target, _ in named_volumes(emulator).values()], (
        "the SQLite file and the CA are not on a volume"
    )
    assert "8780:8780" in [str(port) for port in emulator["ports"]]
    endpoint = urlsplit(environment(services["worker"])["AZURE_ARM_ENDPOINT"])
    assert endpoint.port == int(options["--port"])
    assert endpoint.hostname == "fleet-emulator" and "fleet-emulator" in services
    assert "7233:7233" in [str(port) for port in services["temporal"]["ports"]]
    assert "8080:8080" in [str(port) for port in services["temporal-ui"]["ports"]]
    assert environment(services["temporal-ui"])["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_the_emulators_healthcheck_is_an_https_request_trusting_its_ca(services):
    """Healthy means serving TLS with the certificate of the CA the workers are given: a plain
    http check would never pass, and one without the CA would not show the CA file exists."""
    options = emulator_options(services)
    check = " ".join(services["fleet-emulator"]["healthcheck"]["test"])
    assert f"https://fleet-emulator:{options['--port']}/healthz" in check
    assert f"cafile='{ca_file(options['--db'])}'" in check
    assert "http://" not in check and "CERT_NONE" not in check and "_create_unverified" not in check


def test_the_workers_trust_the_ca_the_emulator_writes_beside_its_database(services):
    emulator, worker = services["fleet-emulator"], services["worker"]
    ca = ca_file(emulator_options(services)["--db"])  # where the emulator writes it
    bundle = PurePosixPath(environment(worker)["AZURE_CA_BUNDLE"])
    # A volume both mount: the CA file's path in the emulator maps to the bundle's in the worker.
    shared = set(named_volumes(emulator)) & set(named_volumes(worker))
    seen_as = []
    for volume in shared:
        in_emulator, _ = named_volumes(emulator)[volume]
        in_worker, read_only = named_volumes(worker)[volume]
        if ca.is_relative_to(in_emulator):
            seen_as.append((PurePosixPath(in_worker) / ca.relative_to(in_emulator), read_only))
    assert (bundle, True) in seen_as, f"{bundle} is not the emulator's {ca} on a read-only shared volume"
    # The emulator makes the CA before it is healthy; the workers wait for that.
    assert condition(services, "worker", "fleet-emulator") == "service_healthy"


def test_the_emulators_certificate_covers_the_name_workers_reach_it_by(services, tmp_path, monkeypatch):
    """tls.py issues the certificate for the local names and the container's host name (as the
    emulator's start makes it, listening on 0.0.0.0): compose sets that host name to the name in
    AZURE_ARM_ENDPOINT; users on the host reach it as localhost or 127.0.0.1 through the port."""
    emulator = services["fleet-emulator"]
    hostname = emulator.get("hostname")
    assert hostname == urlsplit(environment(services["worker"])["AZURE_ARM_ENDPOINT"]).hostname
    monkeypatch.setattr(socket, "gethostname", lambda: hostname)
    files = ensure_certificates(tmp_path / "fleet.db", emulator_options(services)["--host"])
    assert files.ca_file == ca_file(tmp_path / "fleet.db")
    certificate = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = names.get_values_for_type(x509.DNSName)
    addresses = {str(address) for address in names.get_values_for_type(x509.IPAddress)}
    assert {"fleet-emulator", "localhost"} <= set(dns), dns
    assert "127.0.0.1" in addresses, addresses


def image_tag(reference: str) -> str | None:
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_every_image_is_pinned(services):
    images = {name: service["image"] for name, service in services.items() if "image" in service}
    images |= {
        f"Dockerfile FROM {args}": args.split()[0]
        for keyword, args in dockerfile_instructions()
        if keyword == "FROM"
    }
    assert len(images) >= len(services)
    for where, reference in images.items():
        tag = image_tag(reference)
        assert tag and tag != "latest" and "${" not in reference, f"{where}: {reference} is not pinned"
    for name, service in services.items():
        assert "image" in service or "build" in service, name


def test_every_mounted_or_built_file_exists(compose, services):
    checked = 0
    for name, service in services.items():
        for source, _ in bind_mounts(service):
            assert (COMPOSE_FILE.parent / source).exists(), f"{name} mounts {source}, which is missing"
            checked += 1
        for volume in service.get("volumes") or []:
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if not source.startswith((".", "/", "~")):
                assert source in (compose.get("volumes") or {}), f"{name}: volume {source} is not declared"
        build = service.get("build")
        if build is not None:
            context = COMPOSE_FILE.parent / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert (context / dockerfile).is_file(), f"{name} builds from a missing {dockerfile}"
            checked += 1
    dynamic_config = environment(services["temporal"])["DYNAMIC_CONFIG_FILE_PATH"]
    assert dynamic_config.startswith("/"), "relative to the server's working directory: say where"
    assert yaml.safe_load(host_path(services["temporal"], dynamic_config).read_text())
    assert checked >= 5


def test_the_server_runs_worker_versioning_and_the_workers_are_one_deployment(services):
    dynamic_config = environment(services["temporal"])["DYNAMIC_CONFIG_FILE_PATH"]
    values = yaml.safe_load(host_path(services["temporal"], dynamic_config).read_text())
    # The same switches the dev server gets (`make demo`, the tests).
    for switch in processes.WORKER_VERSIONING[1::2]:
        key = switch.removesuffix("=true")
        assert values.get(key) == [{"value": True, "constraints": {}}], key
    deployment = DeploymentSettings.from_env("rolling-upgrades", environment(services["worker"]))
    assert deployment.name == "rolling-upgrades"  # every replica: one deployment, one build
    assert deployment.make_current == MakeCurrent.IF_NONE


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves path (relative to the context) out of the build context."""

    def regex(pattern: str) -> re.Pattern[str]:
        out = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?)", pattern.strip("/")):
            out += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
        return re.compile(out + "(/.*)?")  # a pattern that names a folder covers its contents

    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if regex(pattern.lstrip("!")).fullmatch(path):
            ignored = not negated
    return ignored


def test_dockerfile_installs_the_packages_and_runs_the_worker():
    instructions = dockerfile_instructions()
    copied = [args.split()[0] for keyword, args in instructions if keyword == "COPY" and "--from" not in args]
    copied_sources = {
        source for keyword, args in instructions if keyword == "COPY" for source in args.split()[:-1]
    }
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert declared == set(PACKAGES)
    assert set(PACKAGES) | {"pyproject.toml", "README.md"} <= copied_sources

    installs = [args for keyword, args in instructions if keyword == "RUN" and "pip install" in args]
    assert installs, "nothing is installed"
    assert any(re.search(r"pip install\b[^&;]*\s\.(\s|$)", args) for args in installs), installs
    assert not any("[dev]" in args for args in installs), "the dev extras carry Temporal server binaries"

    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image runs as root"
    commands = [args for keyword, args in instructions if keyword == "CMD"]
    assert json.loads(commands[-1]) == ["python", "-m", "worker"]

    # What the Dockerfile copies must be in the build context, not left out by .dockerignore.
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert dockerignored(".venv/bin/python", patterns)
    for source in copied:
        files = [ROOT / source] if (ROOT / source).is_file() else sorted((ROOT / source).rglob("*.py"))
        assert files, f"COPY {source}: nothing there"
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            assert not dockerignored(relative, patterns), f"{relative} is left out by .dockerignore"


def fake_command(bin_dir: Path, name: str, body: str) -> None:
    """A stand-in executable that logs its arguments as JSON lines to $FAKE_LOG, then runs body."""
    path = bin_dir / name
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "args = sys.argv[1:]\n"
        "with open(os.environ['FAKE_LOG'], 'a') as log:\n"
        f"    log.write(json.dumps({{'cmd': {name!r}, 'args': args, 'env': dict(os.environ)}}) + '\\n')\n"
        + body
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


# A `temporal` CLI over a JSON state file: namespaces and their search attributes.
FAKE_TEMPORAL = """
state_file = os.environ['FAKE_STATE']
state = json.load(open(state_file)) if os.path.exists(state_file) else {}
def option(*names, default=None):
    values = [args[i + 1] for i, a in enumerate(args[:-1]) if a in names]
    return values or ([default] if default else [])
namespace = option('--namespace', '-n', default=os.environ.get('TEMPORAL_NAMESPACE', 'default'))[0]
command = ' '.join(a for a in args[:3])
if command == 'operator cluster health':
    sys.exit(0)
if command == 'operator namespace describe':
    sys.exit(0 if namespace in state else 1)
if command == 'operator namespace create':
    state[namespace] = {}
elif command == 'operator namespace update':
    if namespace not in state:
        sys.exit(1)
elif command == 'operator search-attribute list':
    if namespace not in state:
        sys.exit(1)
    types = {'Keyword': 'INDEXED_VALUE_TYPE_KEYWORD', 'Text': 'INDEXED_VALUE_TYPE_TEXT'}
    print(json.dumps({'customAttributes': {k: types[v] for k, v in state[namespace].items()}}, indent=2))
elif command == 'operator search-attribute create':
    if namespace not in state:
        sys.exit(1)
    for name in option('--name'):
        state[namespace][name] = option('--type')[0]
else:
    sys.exit(2)
json.dump(state, open(state_file, 'w'))
"""


def run_script(script: Path, env: dict[str, str], bin_dir: Path) -> subprocess.CompletedProcess[str]:
    full_env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_LOG": str(bin_dir / "calls.jsonl"),
        "FAKE_STATE": str(bin_dir / "state.json"),
        **env,
    }
    result = subprocess.run(
        ["/bin/sh", str(script)], env=full_env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def log_entries(bin_dir: Path, name: str) -> list[dict[str, Any]]:
    lines = (bin_dir / "calls.jsonl").read_text().splitlines()
    return [entry for entry in map(json.loads, lines) if entry["cmd"] == name]


def calls(bin_dir: Path, name: str) -> list[list[str]]:
    return [entry["args"] for entry in log_entries(bin_dir, name)]


def created_attributes(bin_dir: Path) -> list[str]:
    return [
        args[args.index("--name") + 1]
        for args in calls(bin_dir, "temporal")
        if args[:3] == ["operator", "search-attribute", "create"]
    ]


def test_namespace_job_registers_the_four_search_attributes_as_keywords(services, tmp_path):
    service = services["temporal-namespace"]
    script = mounted_script(service)
    fake_command(tmp_path, "temporal", FAKE_TEMPORAL)

    run_script(script, environment(service), tmp_path)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state == {"default": {name: "Keyword" for name in SEARCH_ATTRIBUTES}}
    assert sorted(created_attributes(tmp_path)) == sorted(SEARCH_ATTRIBUTES)

    # Every call went to the compose cluster's server.
    for entry in log_entries(tmp_path, "temporal"):
        options = dict(zip(entry["args"], entry["args"][1:]))
        address = options.get("--address", entry["env"].get("TEMPORAL_ADDRESS"))
        assert address == "temporal:7233", entry["args"]

    # Again, on a cluster that has it all: nothing is created twice.
    run_script(script, environment(service), tmp_path)
    assert sorted(created_attributes(tmp_path)) == sorted(SEARCH_ATTRIBUTES)

    # Closed upgrades are kept two months, as Azure keeps a set's upgrade history: at creation,
    # and set again on a namespace that existed before.
    namespace_calls = [a for a in calls(tmp_path, "temporal") if a[:2] == ["operator", "namespace"]]
    retention = [(a[2], a[a.index("--retention") + 1]) for a in namespace_calls if "--retention" in a]
    assert retention == [("create", "1440h"), ("update", "1440h")]
    namespace_creates = [
        args for args in calls(tmp_path, "temporal") if args[:3] == ["operator", "namespace", "create"]
    ]
    assert len(namespace_creates) == 1


def test_namespace_job_adds_only_what_is_missing(services, tmp_path):
    service = services["temporal-namespace"]
    (tmp_path / "state.json").write_text(json.dumps({"default": {"ScaleSet": "Keyword", "Other": "Text"}}))
    fake_command(tmp_path, "temporal", FAKE_TEMPORAL)

    run_script(mounted_script(service), environment(service), tmp_path)
    assert sorted(created_attributes(tmp_path)) == sorted(SEARCH_ATTRIBUTES - {"ScaleSet"})
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["default"] == {"Other": "Text", **{name: "Keyword" for name in SEARCH_ATTRIBUTES}}


def test_namespace_job_and_workflows_agree_on_the_search_attributes():
    assert {key.name for key in search_attributes.ALL} == SEARCH_ATTRIBUTES
    types = {key.indexed_value_type for key in search_attributes.ALL}
    assert types == {SearchAttributeIndexedValueType.KEYWORD}


def test_schema_job_creates_and_updates_both_databases(services, tmp_path):
    service = services["temporal-schema"]
    fake_command(tmp_path, "nc", "")
    fake_command(tmp_path, "temporal-sql-tool", "")
    env = environment(service)

    run_script(mounted_script(service), env, tmp_path)
    sql = log_entries(tmp_path, "temporal-sql-tool")
    assert sql, "temporal-sql-tool was never run"
    steps: dict[str, list[tuple[str, str | None]]] = {}
    for entry in sql:
        args = entry["args"]
        options = dict(itertools.pairwise(args))
        assert options["--plugin"] == env["DB"] == "postgres12"
        assert options["--ep"] == env["POSTGRES_SEEDS"] == "postgresql"
        assert options["-u"] == env["POSTGRES_USER"]
        assert options["-p"] == env["DB_PORT"]
        assert entry["env"].get("SQL_PASSWORD") == env["POSTGRES_PWD"]
        step = next(a for a in args if a in ("create", "setup-schema", "update-schema"))
        detail = {"setup-schema": options.get("-v"), "update-schema": options.get("-d")}.get(step)
        steps.setdefault(options["--db"], []).append((step, detail))
    assert steps == {
        "temporal": [
            ("create", None),
            ("setup-schema", "0.0"),
            ("update-schema", "/etc/temporal/schema/postgresql/v12/temporal/versioned"),
        ],
        "temporal_visibility": [
            ("create", None),
            ("setup-schema", "0.0"),
            ("update-schema", "/etc/temporal/schema/postgresql/v12/visibility/versioned"),
        ],
    }
    # The server reads the same database settings the schema job wrote with.
    server_env = environment(services["temporal"])
    for key in ("DB", "DB_PORT", "POSTGRES_SEEDS", "POSTGRES_USER", "POSTGRES_PWD"):
        assert server_env[key] == env[key], key
    assert server_env["BIND_ON_IP"] == "0.0.0.0"
