"""``make run --free-ports`` listens on the ports of its first run again in the next ones, so
the URLs a person bookmarked stay; a port taken meanwhile moves, and the run says so."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from reelflow_devtools.devrun import config_from_environment, parse_args, with_kept_ports
from reelflow_devtools.kept_ports import PORTS_FILE
from reelflow_devtools.launcher import SERVICES, StackConfig
from reelflow_devtools.ports import release_port


def _free_ports_run(run_dir: Path) -> StackConfig:
    """What one ``make run RUN_ARGS="--free-ports --run-dir ..."`` listens on; its ports
    released afterwards, as that launcher's exit would."""
    args = parse_args(["--free-ports", "--run-dir", str(run_dir)])
    config = with_kept_ports(config_from_environment(args, {}))
    assert config.ports is not None
    for port in config.ports.values():
        release_port(port)
    return config


def _served_and_stopped(port: int) -> None:
    """A server on ``port`` as uvicorn binds it, which answered a connection and stopped:
    that connection stays in TIME_WAIT on the port for a while."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        with socket.create_connection(("127.0.0.1", port)) as client:
            served, _address = server.accept()
            served.close()  # the server closes first: its side waits out TIME_WAIT
            client.recv(1)


def _idle(port: int) -> bool:
    """Whether a server that binds without ``SO_REUSEADDR`` could have ``port`` now."""
    with socket.socket() as plain:
        try:
            plain.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_a_second_free_ports_run_listens_where_the_first_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _free_ports_run(tmp_path / "run")
    assert first.ports is not None
    _served_and_stopped(first.ports["api"])
    assert not _idle(first.ports["api"])
    second = _free_ports_run(tmp_path / "run")

    assert set(first.ports) == set(SERVICES)
    assert second.ports == first.ports
    assert json.loads((tmp_path / "run" / PORTS_FILE).read_text()) == first.ports
    assert capsys.readouterr().out == ""  # nothing moved


def test_a_kept_port_something_else_listens_on_moves_saying_so_and_the_new_one_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _free_ports_run(tmp_path / "run")
    assert first.ports is not None
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", first.ports["api"]))
        squatter.listen()
        second = _free_ports_run(tmp_path / "run")
    third = _free_ports_run(tmp_path / "run")

    assert second.ports is not None
    assert second.ports["api"] != first.ports["api"]
    assert {name: port for name, port in second.ports.items() if name != "api"} == {
        name: port for name, port in first.ports.items() if name != "api"
    }
    said = capsys.readouterr().out
    assert said == (
        f"reelflow: port {first.ports['api']} (api) is taken: it listens on"
        f" {second.ports['api']} from now on (kept in {tmp_path / 'run' / PORTS_FILE})\n"
    )
    assert third.ports == second.ports


def test_the_default_ports_are_not_kept(tmp_path: Path) -> None:
    config = config_from_environment(parse_args(["--run-dir", str(tmp_path / "run")]), {})
    assert with_kept_ports(config) is config
    assert not (tmp_path / "run" / PORTS_FILE).exists()
