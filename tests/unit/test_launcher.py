"""What the launcher hands the services: only settings they read, with the values asked for;
and a run directory is one launcher's at a time."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values
from pydantic_settings import BaseSettings

from reelflow_api.settings import Settings as ApiSettings
from reelflow_cli.config import DEFAULT_URL
from reelflow_devtools.devrun import (
    CLI_DEFAULT_URL,
    config_from_environment,
    parse_args,
    running_summary,
)
from reelflow_devtools.launcher import (
    DEFAULT_PORTS,
    Simulator,
    Stack,
    StackConfig,
    simulator_port,
)
from reelflow_devtools.ports import free_port, release_port
from reelflow_devtools.prefixes import InUse
from reelflow_devtools.processes import Occupied, StartError
from reelflow_devtools.rundir import PID_FILE, claim_run_dir
from reelflow_devtools.runfiles import (
    ENV_FILE,
    VIDEO_URL_SECRET_FILE,
    admin_environment,
    write_env_file,
)
from reelflow_devtools.simulated_runware import SIMULATOR_POLLING, SIMULATOR_STATE_FILE
from reelflow_devtools.startchecks import beside, check_ports
from reelflow_notifier.settings import Settings as NotifierSettings
from reelflow_poller.settings import Settings as PollerSettings
from reelflow_runware_sim.models import MODELS, price
from reelflow_submitter.settings import Settings as SubmitterSettings
from tests.e2e.stack import SETTINGS as E2E_SETTINGS
from tests.e2e.stack import e2e_config

SETTINGS: list[type[BaseSettings]] = [
    ApiSettings,
    NotifierSettings,
    PollerSettings,
    SubmitterSettings,
]


def variables(settings: type[BaseSettings]) -> set[str]:
    """The REELFLOW_ variables ``settings`` reads (aliases aside)."""
    return {f"REELFLOW_{name}".upper() for name in settings.model_fields}


def stack_of(config: StackConfig) -> Stack:
    stack = Stack(config)
    stack.ports = dict(DEFAULT_PORTS)
    stack.sim_url = "http://127.0.0.1:9999"
    stack.mongo_url = config.mongo_url or "mongodb://127.0.0.1:27017/"
    return stack


def test_every_variable_the_launcher_sets_is_read_by_some_service(tmp_path: Path) -> None:
    read = set().union(*(variables(settings) for settings in SETTINGS))
    config = e2e_config("amqp://guest:guest@127.0.0.1:5672/", "mongodb://m:27017/", tmp_path)
    env = stack_of(config).service_env()

    assert set(env) <= read, sorted(set(env) - read)
    assert env["REELFLOW_DRAIN_TIMEOUT_S"] == "20.0"
    assert env["REELFLOW_PUBLIC_BASE_URL"] == "http://127.0.0.1:8000"
    assert env["REELFLOW_RUNWARE_BASE_URL"] == "http://127.0.0.1:9999"
    assert env.items() >= E2E_SETTINGS.items()


def test_the_dashboard_finds_a_notifier_off_its_default_port(tmp_path: Path) -> None:
    config = e2e_config("amqp://guest:guest@127.0.0.1:5672/", "mongodb://m:27017/", tmp_path)
    stack = stack_of(config)
    assert "REELFLOW_PUBLIC_WS_URL" not in stack.service_env()  # the page's host, port 8001

    stack.ports["notifier"] = 18001

    assert stack.service_env()["REELFLOW_PUBLIC_WS_URL"] == "ws://127.0.0.1:18001"


def test_make_run_polls_the_simulator_fast_unless_told_otherwise(tmp_path: Path) -> None:
    args = parse_args(["--run-dir", str(tmp_path)])
    simulated = config_from_environment(args, {})
    real = config_from_environment(args, {"RUNWARE_API_KEY": "rw", "REELFLOW_DRAIN_TIMEOUT_S": "7"})
    tuned = config_from_environment(args, {"REELFLOW_POLL_INITIAL_DELAY_S": "5"})

    assert simulated.simulator is not None
    assert simulated.settings.items() >= SIMULATOR_POLLING.items()
    assert simulated.ports == DEFAULT_PORTS
    assert simulated.mongo_url is None  # the embedded database, in the run directory
    assert real.simulator is None
    assert "REELFLOW_POLL_INITIAL_DELAY_S" not in real.settings
    assert real.drain_timeout_s == 7
    assert "REELFLOW_RUNWARE_BASE_URL" not in stack_of(real).service_env()
    assert tuned.settings["REELFLOW_POLL_INITIAL_DELAY_S"] == "5"
    assert config_from_environment(parse_args(["--free-ports"]), {}).ports is None


def test_a_stack_copies_the_simulators_videos_from_its_host_and_runwares_as_production_does(
    tmp_path: Path,
) -> None:
    """The simulator serves plain http on a loopback address, which the copier refuses unless
    told; a stack on the real Runware keeps the production defaults (https, runware.ai, no
    internal host)."""
    args = parse_args(["--run-dir", str(tmp_path)])
    simulated = stack_of(config_from_environment(args, {})).service_env()
    real = stack_of(config_from_environment(args, {"RUNWARE_API_KEY": "rw"})).service_env()

    copying = {
        "REELFLOW_VIDEO_COPY_ALLOWED_HOSTS",
        "REELFLOW_VIDEO_COPY_INTERNAL_HOSTS",
        "REELFLOW_VIDEO_COPY_ALLOW_HTTP",
    }
    assert json.loads(simulated["REELFLOW_VIDEO_COPY_ALLOWED_HOSTS"]) == ["127.0.0.1"]
    assert json.loads(simulated["REELFLOW_VIDEO_COPY_INTERNAL_HOSTS"]) == ["127.0.0.1"]
    assert simulated["REELFLOW_VIDEO_COPY_ALLOW_HTTP"] == "true"
    assert not copying & set(real)


def test_make_run_estimates_a_model_never_seen_at_the_simulators_dearest_price(
    tmp_path: Path,
) -> None:
    """No model's first clips spend past a budget: the fallback was the default model's price,
    and a tenant's first project on a dearer model bought $5.60 of clips on a $2 budget."""
    args = parse_args(["--run-dir", str(tmp_path)])
    simulated = config_from_environment(args, {}).settings
    given = config_from_environment(args, {"REELFLOW_COST_FALLBACK_USD_PER_S": "0.7"}).settings
    real = config_from_environment(args, {"RUNWARE_API_KEY": "rw"}).settings
    seconds = ApiSettings.model_fields["default_duration"].default

    fallback = float(simulated["REELFLOW_COST_FALLBACK_USD_PER_S"])
    for model, spec in MODELS.items():  # at the api's 1280x720, without audio
        charged = price(spec, seconds, "720p", audio=False)
        assert fallback * seconds >= charged, model
    assert given["REELFLOW_COST_FALLBACK_USD_PER_S"] == "0.7"
    assert "REELFLOW_COST_FALLBACK_USD_PER_S" not in real  # production's default stands


def test_make_run_keeps_the_simulators_state_in_the_run_directory(tmp_path: Path) -> None:
    simulated = config_from_environment(parse_args(["--run-dir", str(tmp_path)]), {})

    assert simulated.simulator is not None
    assert simulated.simulator.state_file == tmp_path.resolve() / SIMULATOR_STATE_FILE
    first_port = simulator_port(simulated.simulator)
    release_port(first_port)
    # The first run's is a port of its own (free_port: no outgoing connection takes it).
    assert first_port > 0
    simulated.simulator.state_file.write_text("{}")
    assert simulator_port(simulated.simulator) == 0  # the simulator takes its kept port
    assert simulator_port(Simulator()) == 0  # a simulator without a state file: any port


def test_make_run_keeps_videos_and_their_url_secret_in_the_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = parse_args(["--run-dir", str(run_dir)])
    first = config_from_environment(args, {}).settings
    second = config_from_environment(args, {}).settings
    other = config_from_environment(parse_args(["--run-dir", str(tmp_path / "other")]), {})
    chosen = config_from_environment(args, {"REELFLOW_STORAGE_BACKEND": "none"}).settings
    given = config_from_environment(args, {"REELFLOW_VIDEO_URL_SECRET": "given"}).settings
    read = set().union(*(variables(settings) for settings in SETTINGS))
    kept = run_dir / VIDEO_URL_SECRET_FILE

    assert first["REELFLOW_STORAGE_BACKEND"] == "local"
    assert first["REELFLOW_STORAGE_DIR"] == str(run_dir.resolve() / "videos")
    # A restart signs as the run before it did: the links it handed out stay valid.
    assert len(first["REELFLOW_VIDEO_URL_SECRET"]) >= 40
    assert second["REELFLOW_VIDEO_URL_SECRET"] == first["REELFLOW_VIDEO_URL_SECRET"]
    assert kept.read_text().strip() == first["REELFLOW_VIDEO_URL_SECRET"]
    assert kept.stat().st_mode & 0o777 == 0o600
    assert other.settings["REELFLOW_VIDEO_URL_SECRET"] != first["REELFLOW_VIDEO_URL_SECRET"]
    assert given["REELFLOW_VIDEO_URL_SECRET"] == "given"
    assert kept.read_text().strip() == first["REELFLOW_VIDEO_URL_SECRET"]  # not written over
    assert chosen["REELFLOW_STORAGE_BACKEND"] == "none"
    assert set(first) <= read


def test_reelflow_admin_gets_the_stacks_settings_and_no_secret_the_caller_gave(
    tmp_path: Path,
) -> None:
    caller = {
        "REELFLOW_AMQP_PREFIX": "second.",
        "REELFLOW_LEASE_S": "60",
        "REELFLOW_MONGO_URL": "mongodb://user:password@db:27017/",
        "REELFLOW_LOG_FORMAT": "console",
        "PATH": "/usr/bin",
    }
    stack = stack_of(config_from_environment(parse_args(["--run-dir", str(tmp_path)]), caller))
    services = stack.service_env()

    env = admin_environment(services, caller)
    path = write_env_file(tmp_path / ENV_FILE, env)

    assert dotenv_values(path) == env
    assert path.stat().st_mode & 0o777 == 0o600
    assert env.items() >= SIMULATOR_POLLING.items()  # the wait queues' names follow these
    assert env["REELFLOW_AMQP_PREFIX"] == "second."
    assert env["REELFLOW_LEASE_S"] == "60"
    assert env["REELFLOW_RUNWARE_BASE_URL"] == "http://127.0.0.1:9999"
    assert env["REELFLOW_RUNWARE_API_KEY"] == "sim-key"
    assert env["REELFLOW_STORAGE_BACKEND"] == "local"
    # make run's own secrets are the dev stack's; the caller's password is not written
    assert env["REELFLOW_VIDEO_URL_SECRET"] == services["REELFLOW_VIDEO_URL_SECRET"]
    assert env["REELFLOW_AMQP_URL"] == "amqp://guest:guest@127.0.0.1:5672/"
    assert "REELFLOW_MONGO_URL" not in env
    assert not {"REELFLOW_LOG_FORMAT", "REELFLOW_HTTP_HOST", "PATH"} & set(env)


def test_a_taken_port_stops_make_run_before_it_starts_anything_saying_which(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"api": port, "notifier": free_port()}
        config = StackConfig(run_dir=tmp_path, ports=ports, http_host="127.0.0.1")

        with pytest.raises(Occupied) as refused:
            check_ports(config)
        said = str(refused.value)
        assert f"cannot listen on 127.0.0.1: port {port} (api): " in said
        assert "notifier" not in said

    check_ports(config)  # free again
    check_ports(StackConfig(run_dir=tmp_path, ports=None))  # free ports: nothing to check


def test_the_hint_beside_a_stack_names_a_free_prefix_and_directory_after_the_checkout(
    tmp_path: Path,
) -> None:
    checkout = tmp_path / "Reelflow Copy"
    consumed = {"reelflow-copy.", "reelflow-copy-2."}
    locked: set[str] = set()
    asked: list[str] = []

    def in_use_of(amqp_url: str, prefix: str) -> InUse:
        asked.append(prefix)
        used = {f"{prefix}submitter.submit_clip": 1} if prefix in consumed else {}
        return InUse(locked=prefix in locked, consumers=used)

    def hint(run_dir: Path, prefix: str = "") -> str:
        config = StackConfig(run_dir=run_dir, amqp_prefix=prefix)
        return beside(config, checkout=checkout, in_use_of=in_use_of)

    # The first stack (prefix "", .run): the checkout's first free prefix, its own directory.
    consumed.clear()
    assert hint(Path(".run")) == (
        'REELFLOW_AMQP_PREFIX=reelflow-copy. make run RUN_ARGS="--run-dir .run/reelflow-copy'
        ' --free-ports"'
    )
    # A third stack, from the second's directory: neither its prefix nor a directory in it.
    assert "REELFLOW_AMQP_PREFIX=reelflow-copy-2. " in hint(
        Path(".run/reelflow-copy"), "reelflow-copy."
    )
    consumed.update({"reelflow-copy.", "reelflow-copy-2."})
    said = hint(Path(".run"))
    assert "REELFLOW_AMQP_PREFIX=reelflow-copy-3. " in said
    assert "--run-dir .run/reelflow-copy-3 " in said
    assert asked[-3:] == ["reelflow-copy.", "reelflow-copy-2.", "reelflow-copy-3."]
    # A stack still starting on the third (its launcher holds the lock, nothing consumes yet).
    locked.add("reelflow-copy-3.")
    assert "REELFLOW_AMQP_PREFIX=reelflow-copy-4. " in hint(Path(".run"))

    def unreachable(amqp_url: str, prefix: str) -> InUse:
        raise ConnectionRefusedError(111, "Connection refused")

    unchecked = beside(StackConfig(run_dir=Path(".run")), checkout=checkout, in_use_of=unreachable)
    assert "REELFLOW_AMQP_PREFIX=reelflow-copy. " in unchecked


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="tells a launcher by /proc/<pid>/cmdline")
def test_a_run_directory_whose_launcher_runs_is_refused_and_a_stale_one_is_taken(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / PID_FILE
    # A process whose command line names the launcher, as `.venv/bin/reelflow-dev` does.
    launcher = started(["reelflow-dev"])
    try:
        pid_file.write_text(f"{launcher.pid}\n")
        with pytest.raises(StartError, match=f"already running from {tmp_path}"):
            claim_run_dir(tmp_path)
        assert pid_file.read_text() == f"{launcher.pid}\n"
    finally:
        ended(launcher)

    # The launcher has ended (or another program took over its pid): the directory is free.
    assert claim_run_dir(tmp_path) == pid_file
    assert pid_file.read_text() == f"{os.getpid()}\n"
    other = started([])
    try:
        pid_file.write_text(f"{other.pid}\n")
        assert claim_run_dir(tmp_path) == pid_file
    finally:
        ended(other)


def started(args: list[str]) -> subprocess.Popen[bytes]:
    """A Python process with ``args`` on its command line, once it runs (a child not yet
    past its exec still shows its parent's command line), until its stdin closes."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; print(flush=True); sys.stdin.read()", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.readline()  # it printed: it runs its own program
    return process


def ended(process: subprocess.Popen[bytes]) -> None:
    """Close its stdin, so it ends; kill it if it does not within the deadline."""
    try:
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_env_file_gives_back_every_value_as_written(tmp_path: Path) -> None:
    """As ``reelflow-admin --env-file`` reads it (python-dotenv): quotes, backslashes, a
    shell's ``$`` and spaces come back as they are."""
    env = {
        "REELFLOW_STORAGE_DIR": 'runs of o\'brien/my "runs"/$HOME/videos',
        "REELFLOW_AMQP_PREFIX": "a\\b.",
    }

    path = write_env_file(tmp_path / ENV_FILE, env)

    assert dotenv_values(path) == env


@pytest.mark.parametrize("value", ["/runs/${HOME}", "two\nlines"])
def test_a_value_the_env_file_cannot_hold_stops_make_run_saying_which(
    tmp_path: Path, value: str
) -> None:
    with pytest.raises(StartError, match="REELFLOW_STORAGE_DIR cannot be written"):
        write_env_file(tmp_path / ENV_FILE, {"REELFLOW_STORAGE_DIR": value})


def test_the_env_file_is_never_written_through_a_link(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("kept\n")
    (tmp_path / ENV_FILE).symlink_to(elsewhere)

    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        write_env_file(tmp_path / ENV_FILE, {"REELFLOW_AMQP_PREFIX": "x."})
    assert elsewhere.read_text() == "kept\n"


def test_the_summary_tells_the_cli_where_the_api_is_when_not_on_its_default_port(
    tmp_path: Path,
) -> None:
    stack = stack_of(StackConfig(run_dir=tmp_path))
    on_defaults = running_summary(stack, dev_key="rf_x", admin="admin", env_file=tmp_path / "env")
    stack.ports["api"] = 17011  # --free-ports beside another stack
    moved = running_summary(stack, dev_key="rf_x", admin="admin", env_file=tmp_path / "env")

    assert CLI_DEFAULT_URL == DEFAULT_URL  # the CLI's, which devtools does not import
    assert not any("REELFLOW_URL" in line for line in on_defaults)
    assert moved[-1].split()[:3] == ["CLI", "export", "REELFLOW_URL=http://127.0.0.1:17011"]
