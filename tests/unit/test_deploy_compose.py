"""docker-compose.yml and the Dockerfile agree with the code they run, and are safe.

Nothing here starts a container: the files are read as data and checked against
the settings classes, the console scripts, the lock and a ``.env`` that
``make compose-env`` writes, so renaming a setting, a port or a script breaks a
test instead of a deployment, and a default password or a published database
port cannot come back unnoticed.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, cast

import httpx
import jsonschema
import pytest
import yaml
from pydantic import AliasChoices, AliasPath
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

from reelflow_api.app import OUTLIVING_DRAIN_S
from reelflow_api.settings import Settings as ApiSettings
from reelflow_common.admin.cli import AdminSettings
from reelflow_common.broker import amqp_connection, consume
from reelflow_common.runware import RunwareClient
from reelflow_common.runware.errors import RunwareRequestError
from reelflow_common.storage import CopyFailed, LocalStorage, VideoCopier
from reelflow_devtools import compose_env
from reelflow_notifier.settings import Settings as NotifierSettings
from reelflow_poller.settings import Settings as PollerSettings
from reelflow_runware_sim.config import SimSettings
from reelflow_runware_sim.responses import video_url
from reelflow_submitter.settings import Settings as SubmitterSettings
from tests import ROOT

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
COMPOSE_SCHEMA = ROOT / "tests" / "fixtures" / "schemas" / "compose-spec.json"
COMPOSE_ENV_SCRIPT = ROOT / "tools" / "devtools" / "src" / "reelflow_devtools" / "compose_env.py"

SETTINGS: dict[str, type[BaseSettings]] = {
    "api": ApiSettings,
    "submitter": SubmitterSettings,
    "poller": PollerSettings,
    "notifier": NotifierSettings,
}
SERVICES = sorted(SETTINGS)
#: the compose services that run reelflow code, to the settings each reads
COMPOSE_SETTINGS: dict[str, type[BaseSettings]] = {
    **SETTINGS,
    "submitter-sim": SubmitterSettings,
    "poller-sim": PollerSettings,
    "admin": AdminSettings,
}
REELFLOW = sorted(COMPOSE_SETTINGS)
#: every long-running reelflow service, whichever profile it belongs to
RUNNING = sorted(set(COMPOSE_SETTINGS) - {"admin"})
WORKERS = {"real-runware": ("submitter", "poller"), "dev": ("submitter-sim", "poller-sim")}
INFRASTRUCTURE = ("rabbitmq", "mongo")
SIMULATOR = "runware-sim"
DEV_PORTS = "dev-ports"
# Where each image's code lives, by the Dockerfile's SERVICE build argument.
PACKAGE_DIRS = {
    "api": "services/api",
    "submitter": "services/submitter",
    "poller": "services/poller",
    "notifier": "services/notifier",
    "runware-sim": "tools/runware-sim",
}
FORBIDDEN_IN_IMAGES = {"reelflow-devtools", "secantusdb"}

_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?P<op>:?[-?])?(?P<arg>[^}]*)\}")


# --- helpers ---------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load(COMPOSE.read_text()))


def service(name: str) -> dict[str, Any]:
    return cast(dict[str, Any], compose()["services"][name])


@cache
def dot_env() -> dict[str, str]:
    """What ``make compose-env`` writes, as compose reads it."""
    return dict(compose_env.values())


def interpolate(value: object, env: Mapping[str, str] | None = None) -> str:
    """``value`` as compose passes it with ``env`` (default: the generated .env) and nothing else.

    ``${X:?msg}`` must be in ``env`` (compose refuses to start otherwise); a bare
    ``${X}`` is not allowed, since compose would pass '' and only warn.
    """
    env = dot_env() if env is None else env

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if op is None:
            raise AssertionError(f"{match[0]}: say what happens when it is unset")
        if op.endswith("?"):
            if not env.get(name):
                raise AssertionError(f"{name} is required ({arg}) but not in the .env")
            return env[name]
        if op == ":-":
            return env.get(name) or arg
        return env.get(name, arg)

    return _VARIABLE.sub(substitute, str(value)).replace("$$", "$")


def required_variables() -> set[str]:
    """Every variable compose refuses to run without."""
    return {m["name"] for m in _VARIABLE.finditer(COMPOSE.read_text()) if m["op"] == ":?"}


def environment(name: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    values = service(name).get("environment", {})
    assert isinstance(values, dict), f"{name}: write environment as a mapping (anchors merge)"
    return {key: interpolate(value, env) for key, value in values.items()}


def env_names(settings: type[BaseSettings]) -> dict[str, str]:
    """Every environment variable ``settings`` reads, upper-cased, to its field name."""
    prefix = settings.model_config.get("env_prefix", "")
    names: dict[str, str] = {}
    for field_name, field in settings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            variables = [f"{prefix}{field_name}"]
        elif isinstance(alias, str):
            variables = [alias]
        elif isinstance(alias, AliasChoices):
            variables = [c for c in alias.choices if isinstance(c, str)]
            variables += [str(c.path[0]) for c in alias.choices if isinstance(c, AliasPath)]
        else:
            variables = [str(alias.path[0])]
        # pydantic-settings reads the environment case-insensitively by default.
        names.update({variable.upper(): field_name for variable in variables})
    return names


def validate_without_environment(
    settings: type[BaseSettings], values: Mapping[str, Any]
) -> BaseSettings:
    """``settings`` built from ``values`` alone, deaf to this process's environment."""

    def only_init(
        cls: type[BaseSettings],
        /,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        **_others: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)

    isolated = type(
        f"Isolated{settings.__name__}",
        (settings,),
        {"settings_customise_sources": classmethod(only_init)},
    )
    return cast(BaseSettings, isolated(**values))


def service_settings(name: str, env: Mapping[str, str] | None = None) -> Any:
    settings = COMPOSE_SETTINGS[name]
    names = env_names(settings)
    # A list or a mapping arrives as JSON text, which the environment source decodes.
    source = EnvSettingsSource(settings)
    values = {}
    for key, value in environment(name, env).items():
        field_name = names[key.upper()]
        field = settings.model_fields[field_name]
        complex_ = source.field_is_complex(field)
        values[field_name] = source.prepare_field_value(field_name, field, value, complex_)
    return validate_without_environment(settings, values)


def published_ports(name: str) -> set[tuple[str, int, int]]:
    """(host address, host port, container port); the address is '' for every interface."""
    found = set()
    for entry in service(name).get("ports", []):
        *address, host, container = str(entry).split(":")
        found.add(("".join(address), int(host), int(container)))
    return found


def healthcheck_text(name: str) -> str:
    test = service(name)["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def profiles(name: str) -> list[str]:
    return cast(list[str], service(name).get("profiles", []))


def console_scripts(package_dir: str) -> dict[str, str]:
    pyproject = tomllib.loads((ROOT / package_dir / "pyproject.toml").read_text())
    return cast(dict[str, str], pyproject["project"].get("scripts", {}))


def dockerfile_instructions() -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            instruction, _, arguments = stripped.partition(" ")
            yield instruction.upper(), arguments


def dockerfile_services() -> set[str]:
    """The SERVICE values the Dockerfile accepts (its ``case`` guard)."""
    for instruction, arguments in dockerfile_instructions():
        if instruction == "RUN" and 'case "${SERVICE}" in' in arguments:
            allowed = arguments.split(" in ", 1)[1].split(")", 1)[0]
            return {name.strip() for name in allowed.split("|")}
    raise AssertionError("the Dockerfile has no guard on SERVICE")


def uv_sync_commands() -> list[str]:
    commands = []
    for instruction, arguments in dockerfile_instructions():
        if instruction == "RUN":
            commands += [c.strip() for c in arguments.split("&&") if "uv sync" in c]
    return commands


@cache
def lock_packages() -> dict[str, dict[str, Any]]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {package["name"]: package for package in lock["package"]}


def runtime_closure(root: str) -> set[str]:
    """Every package the lock installs for ``root`` without dev groups, extras included."""
    packages = lock_packages()
    visited: set[tuple[str, str | None]] = set()
    todo: list[tuple[str, str | None]] = [(root, None)]
    while todo:
        node = todo.pop()
        if node in visited:
            continue
        visited.add(node)
        name, extra = node
        package = packages[name]
        if extra is None:
            edges = package.get("dependencies", [])
        else:
            edges = package.get("optional-dependencies", {}).get(extra, [])
        for edge in edges:
            todo.append((edge["name"], None))
            todo += [(edge["name"], edge_extra) for edge_extra in edge.get("extra", [])]
    seen = {name for name, _extra in visited}
    return seen


# --- the compose specification --------------------------------------------------------


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    validator = jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text()))
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose())
    ]
    assert errors == []
    broken = copy.deepcopy(compose())
    broken["services"]["api"]["restart_policy"] = "always"  # not a compose key
    assert list(validator.iter_errors(broken))


# --- make compose-env ------------------------------------------------------------------


def test_compose_env_writes_random_secrets_privately_and_never_overwrites(
    tmp_path: Path,
) -> None:
    path = tmp_path / ".env"
    run = [sys.executable, str(COMPOSE_ENV_SCRIPT), str(path)]  # as make compose-env runs it

    first = subprocess.run(run, capture_output=True, text=True, check=True, timeout=60)
    written = path.read_text()
    second = subprocess.run(run, capture_output=True, text=True, check=True, timeout=60)

    assert "wrote" in first.stdout
    assert "left unchanged" in second.stdout
    assert path.read_text() == written
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = dict(
        line.split("=", 1) for line in written.splitlines() if line and not line.startswith("#")
    )
    assert set(values) == required_variables()
    for name in ("RABBITMQ_PASSWORD", "MONGO_ROOT_PASSWORD", "REELFLOW_WEBHOOK_SECRET"):
        assert re.fullmatch(r"[A-Za-z0-9_-]{40,}", values[name]), name  # safe inside URLs
    assert compose_env.values()["RABBITMQ_PASSWORD"] != compose_env.values()["RABBITMQ_PASSWORD"]


def test_the_replica_set_key_is_one_mongod_accepts() -> None:
    # mongod --keyFile: 6 to 1024 characters of the base64 alphabet, or it does not start.
    # A URL-safe token fails about three times in four, so two hundred keys catch it.
    keys = [compose_env.values()["MONGO_REPLICA_SET_KEY"] for _ in range(200)]
    for key in keys:
        assert re.fullmatch(r"[A-Za-z0-9+/=]{6,1024}", key), key
    assert len(set(keys)) == len(keys)


def test_makefile_target_runs_the_script_without_the_virtualenv() -> None:
    makefile = (ROOT / "Makefile").read_text()
    target = makefile.split("\ncompose-env:", 1)[1].split("\n\n", 1)[0]
    assert "$(PYTHON) tools/devtools/src/reelflow_devtools/compose_env.py .env" in target
    assert "compose-env" in makefile.split(".PHONY:", 1)[1].splitlines()[0]
    # Standard library only: it runs before anything is installed.
    imports = re.findall(r"^(?:from|import) (\w+)", COMPOSE_ENV_SCRIPT.read_text(), re.M)
    assert set(imports) <= set(sys.stdlib_module_names) | {"__future__"}


def test_the_env_file_stays_out_of_git_and_of_the_images() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert "**/.env" in (ROOT / ".dockerignore").read_text().split()


# --- secrets ---------------------------------------------------------------------------


def test_compose_requires_every_secret_and_defaults_none() -> None:
    assert required_variables() == {
        "RABBITMQ_USER",
        "RABBITMQ_PASSWORD",
        "MONGO_ROOT_USER",
        "MONGO_ROOT_PASSWORD",
        "MONGO_REPLICA_SET_KEY",
        "REELFLOW_WEBHOOK_SECRET",
        "REELFLOW_VIDEO_URL_SECRET",
    }
    text = COMPOSE.read_text()
    assert "guest" not in text
    for match in _VARIABLE.finditer(text):
        if any(word in match["name"] for word in ("PASSWORD", "SECRET", "KEY")):
            # Required, or (the Runware key) empty by default and refused by the workers.
            assert match["op"] == ":?" or match["arg"] == "", match[0]


def test_without_the_env_file_compose_refuses_to_start() -> None:
    with pytest.raises(AssertionError, match="RABBITMQ_USER is required"):
        environment("api", env={})


def test_rabbitmq_has_only_the_generated_user_and_the_services_use_it() -> None:
    broker = environment("rabbitmq")
    assert broker == {
        "RABBITMQ_DEFAULT_USER": dot_env()["RABBITMQ_USER"],
        "RABBITMQ_DEFAULT_PASS": dot_env()["RABBITMQ_PASSWORD"],
    }
    user, password = broker["RABBITMQ_DEFAULT_USER"], broker["RABBITMQ_DEFAULT_PASS"]
    for name in REELFLOW:
        url = service_settings(name).amqp_url.get_secret_value()
        assert url == f"amqp://{user}:{password}@rabbitmq:5672/", name


def test_mongo_runs_with_authentication_and_the_services_log_in() -> None:
    database = environment("mongo")
    user = database["MONGO_INITDB_ROOT_USERNAME"]
    password = database["MONGO_INITDB_ROOT_PASSWORD"]
    assert (user, password) == (dot_env()["MONGO_ROOT_USER"], dot_env()["MONGO_ROOT_PASSWORD"])
    script = interpolate(service("mongo")["command"][0])
    assert service("mongo")["entrypoint"] == ["bash", "-c"]
    assert "--keyFile /tmp/replica-set.key" in script
    assert "printf '%s' \"$MONGO_REPLICA_SET_KEY\" > /tmp/replica-set.key" in script
    assert "exec docker-entrypoint.sh mongod --replSet rs0" in script
    replica_set = script.split("--replSet ", 1)[1].split()[0]
    for name in REELFLOW:
        url = service_settings(name).mongo_url.get_secret_value()
        assert url == (
            f"mongodb://{user}:{password}@mongo:27017/?replicaSet={replica_set}&authSource=admin"
        ), name


def test_mongos_health_check_logs_in_and_initiates_the_replica_set() -> None:
    test = service("mongo")["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"  # the container's shell expands the credentials
    text = interpolate(test[1])
    assert '-u "$MONGO_INITDB_ROOT_USERNAME" -p "$MONGO_INITDB_ROOT_PASSWORD"' in text
    assert "--authenticationDatabase admin" in text
    assert "rs.status().ok" in text
    assert "rs.initiate({_id: 'rs0', members: [{_id: 0, host: 'mongo:27017'}]})" in text


def test_rabbitmq_is_health_checked() -> None:
    assert service("rabbitmq")["healthcheck"]["test"] == [
        "CMD",
        "rabbitmq-diagnostics",
        "-q",
        "ping",
    ]


# --- ports and profiles ----------------------------------------------------------------


def test_compose_runs_the_services_the_infrastructure_and_the_tools() -> None:
    assert set(compose()["services"]) == {
        *REELFLOW,
        *INFRASTRUCTURE,
        SIMULATOR,
        DEV_PORTS,
    }


def test_only_the_api_and_the_websocket_are_published_without_a_profile() -> None:
    published = {
        name: published_ports(name)
        for name in compose()["services"]
        if not profiles(name) and published_ports(name)
    }
    assert published == {"api": {("", 8000, 8000)}, "notifier": {("", 8001, 8001)}}
    for name in RUNNING:
        if name not in published:
            assert not published_ports(name), f"{name} publishes its ops port"


def test_the_dev_profile_forwards_broker_and_database_to_loopback_only() -> None:
    assert profiles(DEV_PORTS) == ["dev"]
    forwarded = published_ports(DEV_PORTS)
    assert forwarded == {("127.0.0.1", p, p) for p in (5672, 15672, 27017)}
    command = service(DEV_PORTS)["command"][0]
    for port, target in ((5672, "rabbitmq"), (15672, "rabbitmq"), (27017, "mongo")):
        assert f"TCP-LISTEN:{port},fork,reuseaddr TCP:{target}:{port}" in command
    for name in INFRASTRUCTURE:
        assert "ports" not in service(name)
    assert published_ports(SIMULATOR) == {("127.0.0.1", 8090, 8090)}


def test_each_worker_runs_in_exactly_one_profile_and_the_rest_in_none() -> None:
    for profile, workers in WORKERS.items():
        for name in workers:
            assert profiles(name) == [profile]
    assert profiles(SIMULATOR) == ["dev"]
    assert profiles("admin") == ["admin"]
    for name in (*INFRASTRUCTURE, "api", "notifier"):
        assert not profiles(name), f"{name} must start without a profile"


@pytest.mark.parametrize("name", RUNNING)
def test_health_checked_port_is_the_services_http_port(name: str) -> None:
    port = service_settings(name).http_port
    assert f"http://127.0.0.1:{port}/healthz" in healthcheck_text(name)
    assert "urllib.request.urlopen" in healthcheck_text(name)  # slim images have no curl


@pytest.mark.parametrize("name", ["api", "notifier"])
def test_the_public_services_publish_their_http_port(name: str) -> None:
    port = service_settings(name).http_port
    assert ("", port, port) in published_ports(name)


@pytest.mark.parametrize("name", ["api", "notifier"])
def test_the_public_services_may_hold_10000_sockets(name: str) -> None:
    # A notifier replica is sized for 10,000 WebSockets (docs/BENCHMARKS.md), one file
    # descriptor each; many Docker hosts give a container a soft limit of 1024.
    nofile = service(name)["ulimits"]["nofile"]
    assert nofile["soft"] == nofile["hard"] >= 65536


# --- settings --------------------------------------------------------------------------


@pytest.mark.parametrize("name", REELFLOW)
def test_every_variable_of_a_service_is_one_of_its_settings(name: str) -> None:
    known = env_names(COMPOSE_SETTINGS[name])
    unknown = {key for key in environment(name) if key.upper() not in known}
    assert not unknown, f"{name} does not read {sorted(unknown)}"


@pytest.mark.parametrize("name", REELFLOW)
def test_every_value_of_a_service_validates_against_its_settings(name: str) -> None:
    service_settings(name)


def test_env_names_follow_the_prefix_and_the_runware_key_aliases() -> None:
    names = env_names(SubmitterSettings)
    assert names["REELFLOW_HTTP_PORT"] == "http_port"
    assert names["RUNWARE_API_KEY"] == names["REELFLOW_RUNWARE_API_KEY"] == "runware_api_key"
    assert "HTTP_PORT" not in names
    assert "REELFLOW_RUNWARE_BASE_URL" not in env_names(ApiSettings)


def test_settings_are_validated_without_the_test_process_environment() -> None:
    # The helper must not see the environment the tests run in, or an exported
    # REELFLOW_HTTP_PORT would make the port checks pass or fail by accident.
    settings = validate_without_environment(ApiSettings, {})
    assert settings.model_dump()["http_port"] == ApiSettings.model_fields["http_port"].default


@pytest.mark.parametrize("name", REELFLOW)
def test_services_start_after_a_healthy_broker_and_database(name: str) -> None:
    depends_on = service(name)["depends_on"]
    for dependency in INFRASTRUCTURE:
        assert depends_on[dependency]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", RUNNING)
def test_stop_grace_period_outlasts_the_drain_and_the_brokers_close(name: str) -> None:
    drain_s = inspect.signature(consume).parameters["drain_timeout_s"].default
    close_s = inspect.signature(amqp_connection).parameters["close_timeout_s"].default
    grace = str(service(name)["stop_grace_period"])
    assert grace.endswith("s"), "write the grace period in seconds"
    after_drain = OUTLIVING_DRAIN_S if name == "api" else 0.0  # the api's cancelled creates
    assert float(grace.removesuffix("s")) > drain_s + after_drain + close_s


# --- Runware: real or simulated --------------------------------------------------------


def simulator_port() -> int:
    command = service(SIMULATOR)["command"]
    port = int(command[command.index("--port") + 1])
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert f"'127.0.0.1', {port}" in healthcheck_text(SIMULATOR)
    return port


def simulator_environment() -> dict[str, str]:
    return {key: interpolate(value) for key, value in service(SIMULATOR)["environment"].items()}


def simulator_settings() -> SimSettings:
    values = {
        key.removeprefix("RUNWARE_SIM_").lower(): value
        for key, value in simulator_environment().items()
    }
    return cast(SimSettings, validate_without_environment(SimSettings, values))


def networks(name: str) -> set[str]:
    """The compose networks ``name`` is on (compose's own, ``default``, unless it says)."""
    return set(service(name).get("networks") or ["default"])


def test_the_dev_workers_use_the_simulator_with_a_key_it_accepts() -> None:
    sim_env = simulator_environment()
    fields = {f"RUNWARE_SIM_{name}".upper() for name in SimSettings.model_fields}
    assert set(sim_env) <= fields
    sim_keys = {key.strip() for key in sim_env["RUNWARE_SIM_API_KEYS"].split(",")}
    for name in WORKERS["dev"]:
        settings = service_settings(name)
        assert settings.runware_base_url == f"http://{SIMULATOR}:{simulator_port()}"
        assert settings.runware_api_key.get_secret_value() in sim_keys
    assert not set(sim_env.values()) & set(dot_env().values())  # no real secret in it


def test_the_real_workers_call_runware_with_the_operators_key() -> None:
    for name in WORKERS["real-runware"]:
        settings = service_settings(name, dot_env() | {"RUNWARE_API_KEY": "rw-key"})
        assert settings.runware_base_url == "https://api.runware.ai"
        assert settings.runware_api_key.get_secret_value() == "rw-key"


def test_the_real_poller_copies_videos_only_from_runware_as_kubernetes_does() -> None:
    configmap = yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "configmap.yaml").read_text())
    k8s_hosts = json.loads(configmap["data"]["REELFLOW_VIDEO_COPY_ALLOWED_HOSTS"])
    assert k8s_hosts == ["runware.ai"]
    assert "REELFLOW_VIDEO_COPY_INTERNAL_HOSTS" not in configmap["data"]
    real = service_settings("poller")
    assert real.video_copy_allowed_hosts == k8s_hosts
    assert real.video_copy_internal_hosts == []  # runware.ai's own addresses must be public
    assert not real.video_copy_allow_http
    # The simulator serves its videos over http from its own host, a private address.
    simulated = service_settings("poller-sim")
    assert simulated.video_copy_allowed_hosts == [SIMULATOR]
    assert simulated.video_copy_internal_hosts == [SIMULATOR]
    assert simulated.video_copy_allow_http


async def test_the_dev_poller_copies_the_videos_the_simulator_advertises(tmp_path: Path) -> None:
    # The simulator's videoURL, as it builds one, names a host poller-sim reaches by name.
    url = httpx.URL(video_url((simulator_settings().public_url or "").rstrip("/"), "v-1"))
    assert url.host == SIMULATOR
    assert url.port == simulator_port()
    assert networks("poller-sim") & networks(SIMULATOR)
    poller = service_settings("poller-sim")
    assert poller.copies_enabled

    sample = files("reelflow_runware_sim").joinpath("assets/sample.mp4").read_bytes()

    def simulator(request: httpx.Request) -> httpx.Response:
        assert request.url == url
        return httpx.Response(200, content=sample)

    async def compose_network(host: str, _port: int) -> list[str]:
        return {SIMULATOR: ["172.18.0.5"]}[host]  # a private address, as Docker's bridge gives

    def copier(settings: Any) -> VideoCopier:
        """A copier checking URLs as ``settings`` say, with the simulator behind it."""
        return VideoCopier(
            LocalStorage(tmp_path),
            max_bytes=settings.video_max_bytes,
            allowed_hosts=settings.video_copy_allowed_hosts,
            internal_hosts=settings.video_copy_internal_hosts,
            allow_http=settings.video_copy_allow_http,
            resolve=compose_network,
            transport=httpx.MockTransport(simulator),
        )

    async with copier(poller) as dev:
        assert (await dev.copy(str(url), "videos/v-1.mp4")).size_bytes == len(sample)
    # The real poller's checks, as strict as Kubernetes', refuse the very same URL.
    async with copier(service_settings("poller")) as real:
        with pytest.raises(CopyFailed) as refused:
            await real.copy(str(url), "videos/v-1.mp4")
    assert refused.value.code == "urlNotAllowed"


def test_the_api_serves_the_copies_the_pollers_write_in_one_volume() -> None:
    copying = ("api", "poller", "poller-sim")
    directories = {service_settings(name).storage_dir for name in copying}
    assert len(directories) == 1
    (directory,) = directories
    for name in copying:
        assert service_settings(name).storage_backend == "local", name
        assert service(name)["volumes"] == [f"videos:{directory}"], name
    assert "videos" in compose()["volumes"]
    # A new volume takes the owner of the directory it is mounted on: the services' user.
    user = next(a for i, a in reversed(list(dockerfile_instructions())) if i == "USER")
    uid, gid = user.split(":")
    assert any(
        instruction == "RUN" and f"install -d -o {uid} -g {gid} {directory}" in arguments
        for instruction, arguments in dockerfile_instructions()
    )
    # .env may keep the copies in a bucket instead.
    bucket = dot_env() | {"REELFLOW_STORAGE_BACKEND": "s3", "REELFLOW_S3_BUCKET": "b"}
    for name in copying:
        assert service_settings(name, bucket).storage_backend == "s3", name


async def test_the_real_workers_refuse_to_start_without_a_runware_key() -> None:
    # Compose cannot require a variable of one profile only; the Runware client can.
    for name in WORKERS["real-runware"]:
        settings = service_settings(name)
        assert settings.runware_api_key.get_secret_value() == ""
        with pytest.raises(RunwareRequestError, match="no Runware API key"):
            async with RunwareClient.open(settings):
                pass


def test_webhooks_reach_the_api_with_the_secret_it_expects() -> None:
    api = service_settings("api")
    secret = dot_env()["REELFLOW_WEBHOOK_SECRET"]
    assert api.webhook_secret.get_secret_value() == secret
    (simulated, real) = (service_settings("submitter-sim"), service_settings("submitter"))
    assert simulated.public_base_url == f"http://api:{api.http_port}"
    assert simulated.webhook_secret.get_secret_value() == secret
    assert simulated.webhook_url("p1", 0).startswith(
        f"http://api:8000/v1/webhooks/runware/{secret}"
    )
    # Against the real Runware, webhooks only once REELFLOW_PUBLIC_BASE_URL is set.
    assert real.webhook_url("p1", 0) is None
    public = service_settings("submitter", dot_env() | {"REELFLOW_PUBLIC_BASE_URL": "https://x.io"})
    assert public.webhook_url("p1", 0).startswith(f"https://x.io/v1/webhooks/runware/{secret}")


# --- the admin command -----------------------------------------------------------------


def test_admin_runs_reelflow_admin_on_demand_with_the_services_settings() -> None:
    admin = service("admin")
    assert admin["entrypoint"] == ["reelflow-admin"]
    assert admin["restart"] == "no"
    assert admin["image"] == service("api")["image"]
    assert admin["build"] == service("api")["build"]
    settings = service_settings("admin")
    api = service_settings("api")
    assert settings.mongo_url == api.mongo_url
    assert settings.mongo_database == api.mongo_database
    assert settings.amqp_prefix == api.amqp_prefix
    # reconcile asks Runware as the poller does
    poller = service_settings("poller", dot_env() | {"RUNWARE_API_KEY": "k"})
    admin_env = service_settings("admin", dot_env() | {"RUNWARE_API_KEY": "k"})
    assert admin_env.runware_base_url == poller.runware_base_url
    assert admin_env.runware_api_key == poller.runware_api_key


# --- the Dockerfile --------------------------------------------------------------------


@pytest.mark.parametrize("name", [*REELFLOW, SIMULATOR])
def test_compose_builds_each_image_from_the_one_dockerfile(name: str) -> None:
    build = service(name)["build"]
    assert build["context"] == "."
    assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE
    image = build["args"]["SERVICE"]
    expected = {"admin": "api", SIMULATOR: SIMULATOR}.get(name, name.removesuffix("-sim"))
    assert image == expected
    assert service(name)["image"] == f"reelflow-{image}:dev"


def test_dockerfile_accepts_exactly_the_packages_with_a_console_script() -> None:
    assert dockerfile_services() == set(PACKAGE_DIRS)
    for name, package_dir in PACKAGE_DIRS.items():
        assert f"reelflow-{name}" in console_scripts(package_dir), package_dir
    assert "devtools" not in " ".join(dockerfile_services())


def test_the_simulator_command_is_its_console_script() -> None:
    command = service(SIMULATOR)["command"]
    assert command[0] in console_scripts(PACKAGE_DIRS[SIMULATOR])


def test_dockerfile_installs_one_package_without_dev_tools() -> None:
    commands = uv_sync_commands()
    assert commands, "the Dockerfile installs nothing with uv sync"
    for command in commands:
        flags = command.split()
        assert "--frozen" in flags  # exactly the locked versions
        assert "--no-dev" in flags  # the dev group holds the test tools
        assert '"reelflow-${SERVICE}"' in flags
        assert flags[flags.index("--package") + 1] == '"reelflow-${SERVICE}"'
        for widening in ("--all-packages", "--all-groups", "--group", "--only-dev", "--dev"):
            assert widening not in flags, f"{widening} in {command!r}"
        assert "devtools" not in command
    for instruction, arguments in dockerfile_instructions():
        if instruction == "RUN" and "pip install" in arguments:
            assert re.search(r"pip install [\w\s-]*\"uv==\$\{UV_VERSION\}\"$", arguments)
        if instruction == "COPY" and "devtools" in arguments:
            # uv reads every member's pyproject.toml; devtools' code stays out.
            assert arguments.split()[0] == "tools/devtools/pyproject.toml"


@pytest.mark.parametrize("name", sorted(PACKAGE_DIRS))
def test_no_image_pulls_secantusdb_or_the_devtools(name: str) -> None:
    closure = runtime_closure(f"reelflow-{name}")
    assert f"reelflow-{name}" in closure
    assert not closure & FORBIDDEN_IN_IMAGES


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_image_ships_reelflow_admin(name: str) -> None:
    # reelflow-common carries the operators' command; every service depends on it.
    assert "reelflow-common" in runtime_closure(f"reelflow-{name}")
    assert console_scripts("libs/common")["reelflow-admin"] == "reelflow_common.admin.cli:run"


def test_the_closure_would_notice_secantusdb() -> None:
    assert "secantusdb" in runtime_closure("reelflow-devtools")
    # Extras are followed: uvicorn[standard] brings uvloop into the service images.
    assert "uvloop" in runtime_closure("reelflow-api")


def test_dockerfile_runs_as_a_numeric_non_root_user_with_exec_form_cmd() -> None:
    instructions = list(dockerfile_instructions())
    runtime = instructions[max(i for i, (ins, _) in enumerate(instructions) if ins == "FROM") :]
    users = [arguments for instruction, arguments in runtime if instruction == "USER"]
    assert users
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    cmd = [arguments for instruction, arguments in runtime if instruction == "CMD"]
    assert cmd
    assert cmd[-1].startswith("[")  # exec form: the service is PID 1 and gets SIGTERM
    assert "python:3.11-slim" in DOCKERFILE.read_text()


def test_dockerignore_keeps_local_environments_out_of_the_context() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in ("**/.venv", ".git", ".tools", "tests"):
        assert pattern in ignored
