"""docker-compose.yml and the Dockerfile agree with the code they run.

Nothing here starts a container: the files are read as data and checked against
the settings classes, the console scripts and the lock, so renaming a setting, a
port or a script breaks a test instead of a deployment.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from pydantic import AliasChoices, AliasPath
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from reelflow_api.settings import Settings as ApiSettings
from reelflow_common.broker import consume
from reelflow_notifier.settings import Settings as NotifierSettings
from reelflow_poller.settings import Settings as PollerSettings
from reelflow_runware_sim.config import SimSettings
from reelflow_submitter.settings import Settings as SubmitterSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"

SETTINGS: dict[str, type[BaseSettings]] = {
    "api": ApiSettings,
    "submitter": SubmitterSettings,
    "poller": PollerSettings,
    "notifier": NotifierSettings,
}
SERVICES = sorted(SETTINGS)
INFRASTRUCTURE = ("rabbitmq", "mongo")
SIMULATOR = "runware-sim"
# Where each image's code lives, by the Dockerfile's SERVICE build argument.
PACKAGE_DIRS = {
    "api": "services/api",
    "submitter": "services/submitter",
    "poller": "services/poller",
    "notifier": "services/notifier",
    "runware-sim": "tools/runware-sim",
}
FORBIDDEN_IN_IMAGES = {"reelflow-devtools", "secantusdb"}

_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?P<op>:?-)?(?P<default>[^}]*)\}")


# --- helpers ---------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load(COMPOSE.read_text()))


def service(name: str) -> dict[str, Any]:
    return cast(dict[str, Any], compose()["services"][name])


def interpolate(value: object) -> str:
    """The value compose passes when no variable is set in the shell: every default."""
    text = str(value)

    def default(match: re.Match[str]) -> str:
        if match["op"] is None:
            raise AssertionError(f"{match[0]} has no default: compose would pass ''")
        return match["default"]

    return _VARIABLE.sub(default, text)


def environment(name: str) -> dict[str, str]:
    env = service(name).get("environment", {})
    assert isinstance(env, dict), f"{name}: write environment as a mapping (anchors merge)"
    return {key: interpolate(value) for key, value in env.items()}


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
    settings: type[BaseSettings], values: Mapping[str, str]
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


def service_settings(name: str) -> BaseSettings:
    settings = SETTINGS[name]
    names = env_names(settings)
    return validate_without_environment(
        settings, {names[key.upper()]: value for key, value in environment(name).items()}
    )


def published_ports(name: str) -> set[tuple[int, int]]:
    pairs = set()
    for entry in service(name).get("ports", []):
        *_host_ip, host, container = str(entry).split(":")
        pairs.add((int(host), int(container)))
    return pairs


def healthcheck_text(name: str) -> str:
    test = service(name)["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


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


# --- the compose file ------------------------------------------------------------------


def test_compose_runs_the_services_the_infrastructure_and_the_simulator() -> None:
    assert set(compose()["services"]) == {*SERVICES, *INFRASTRUCTURE, SIMULATOR}


@pytest.mark.parametrize("name", SERVICES)
def test_every_variable_of_a_service_is_one_of_its_settings(name: str) -> None:
    known = env_names(SETTINGS[name])
    unknown = {key for key in environment(name) if key.upper() not in known}
    assert not unknown, f"{name} does not read {sorted(unknown)}"


@pytest.mark.parametrize("name", SERVICES)
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


@pytest.mark.parametrize("name", SERVICES)
def test_published_and_health_checked_port_is_the_services_http_port(name: str) -> None:
    port = service_settings(name).model_dump()["http_port"]
    assert (port, port) in published_ports(name)
    assert f"http://127.0.0.1:{port}/healthz" in healthcheck_text(name)
    assert "urllib.request.urlopen" in healthcheck_text(name)  # slim images have no curl


@pytest.mark.parametrize("name", SERVICES)
def test_services_start_after_a_healthy_broker_and_database(name: str) -> None:
    depends_on = service(name)["depends_on"]
    for dependency in INFRASTRUCTURE:
        assert depends_on[dependency]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", SERVICES)
def test_stop_grace_period_outlasts_the_drain(name: str) -> None:
    drain_s = inspect.signature(consume).parameters["drain_timeout_s"].default
    grace = str(service(name)["stop_grace_period"])
    assert grace.endswith("s"), "write the grace period in seconds"
    assert float(grace.removesuffix("s")) > drain_s


def test_rabbitmq_and_mongo_are_health_checked() -> None:
    assert service("rabbitmq")["healthcheck"]["test"] == [
        "CMD",
        "rabbitmq-diagnostics",
        "-q",
        "ping",
    ]
    assert "rs.initiate" in healthcheck_text("mongo")
    assert "rs.status().ok" in healthcheck_text("mongo")


def test_mongo_url_names_the_replica_set_mongo_runs() -> None:
    command = service("mongo")["command"]
    replica_set = command[command.index("--replSet") + 1]
    assert f"_id: '{replica_set}'" in healthcheck_text("mongo")
    assert "host: 'mongo:27017'" in healthcheck_text("mongo")
    for name in SERVICES:
        url = service_settings(name).model_dump()["mongo_url"].get_secret_value()
        assert url.startswith("mongodb://mongo:27017/")
        assert f"replicaSet={replica_set}" in url


def test_amqp_url_points_at_the_rabbitmq_service() -> None:
    for name in SERVICES:
        url = service_settings(name).model_dump()["amqp_url"].get_secret_value()
        assert "@rabbitmq:5672/" in url


def test_the_simulator_is_only_in_the_dev_profile_and_nothing_waits_for_it() -> None:
    assert service(SIMULATOR)["profiles"] == ["dev"]
    for name in compose()["services"]:
        if name != SIMULATOR:
            assert "profiles" not in service(name), f"{name} must start without a profile"
            assert SIMULATOR not in service(name).get("depends_on", {})


def simulator_port() -> int:
    command = service(SIMULATOR)["command"]
    port = int(command[command.index("--port") + 1])
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert (port, port) in published_ports(SIMULATOR)
    assert f"'127.0.0.1', {port}" in healthcheck_text(SIMULATOR)
    return port


def test_runware_base_url_defaults_to_the_simulator() -> None:
    expected = f"http://{SIMULATOR}:{simulator_port()}"
    users = [n for n in SERVICES if "runware_base_url" in SETTINGS[n].model_fields]
    assert sorted(users) == ["poller", "submitter"]
    for name in users:
        assert service_settings(name).model_dump()["runware_base_url"] == expected


def test_the_simulator_accepts_the_default_runware_key() -> None:
    sim_env = {key: interpolate(value) for key, value in service(SIMULATOR)["environment"].items()}
    fields = {f"RUNWARE_SIM_{name}".upper() for name in SimSettings.model_fields}
    assert set(sim_env) <= fields
    sim_keys = {key.strip() for key in sim_env["RUNWARE_SIM_API_KEYS"].split(",")}
    for name in ("submitter", "poller"):
        key = service_settings(name).model_dump()["runware_api_key"]
        assert key is not None, f"{name} has no Runware key"
        assert key.get_secret_value() in sim_keys


def test_webhooks_reach_the_api_with_the_secret_it_expects() -> None:
    submitter = service_settings("submitter").model_dump()
    api = service_settings("api").model_dump()
    api_port = api["http_port"]
    assert submitter["public_base_url"] == f"http://api:{api_port}"
    assert submitter["webhook_secret"] is not None
    assert submitter["webhook_secret"] == api["webhook_secret"]


# --- the Dockerfile --------------------------------------------------------------------


@pytest.mark.parametrize("name", [*SERVICES, SIMULATOR])
def test_compose_builds_each_image_from_the_one_dockerfile(name: str) -> None:
    build = service(name)["build"]
    assert build["context"] == "."
    assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE
    assert build["args"]["SERVICE"] == name


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
