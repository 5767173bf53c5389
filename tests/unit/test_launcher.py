"""What the launcher hands the services: only settings they read, with the values asked for."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings

from reelflow_api.settings import Settings as ApiSettings
from reelflow_devtools.devrun import SIMULATOR_POLLING, config_from_environment, parse_args
from reelflow_devtools.launcher import DEFAULT_PORTS, Stack, StackConfig
from reelflow_notifier.settings import Settings as NotifierSettings
from reelflow_poller.settings import Settings as PollerSettings
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


def test_make_run_keeps_videos_in_the_run_directory_under_a_fresh_secret(tmp_path: Path) -> None:
    args = parse_args(["--run-dir", str(tmp_path)])
    first = config_from_environment(args, {}).settings
    second = config_from_environment(args, {}).settings
    chosen = config_from_environment(args, {"REELFLOW_STORAGE_BACKEND": "none"}).settings
    read = set().union(*(variables(settings) for settings in SETTINGS))

    assert first["REELFLOW_STORAGE_BACKEND"] == "local"
    assert first["REELFLOW_STORAGE_DIR"] == str(tmp_path.resolve() / "videos")
    assert first["REELFLOW_VIDEO_URL_SECRET"] != second["REELFLOW_VIDEO_URL_SECRET"]
    assert chosen["REELFLOW_STORAGE_BACKEND"] == "none"
    assert set(first) <= read
