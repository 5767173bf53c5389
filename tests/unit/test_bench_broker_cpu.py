"""The throughput figures count RabbitMQ's CPU apart, when the broker runs on this machine."""

from __future__ import annotations

import os
import socket
from typing import Any

from reelflow_devtools.bench.launcher import listening_pid
from reelflow_devtools.bench.report import markdown, summary


def test_the_process_listening_on_a_port_is_found() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        assert listening_pid(port) is None  # bound, not listening yet
        listener.listen()

        assert listening_pid(port) == os.getpid()


def _results(broker_cpu_s_per_clip: float | None) -> dict[str, Any]:
    run = {
        "scenes_per_project": 10,
        "projects": 50,
        "clips": 500,
        "wall_s": 4.0,
        "clips_per_s": 125.0,
        "db_ops_per_clip": 2.24,
        "db_ops_by_kind": {"insert": 50},
        "publishes_per_clip": 5.8,
        "cpu_s_per_clip": {"api": 0.001, "mongo": 0.003},
        "broker_cpu_s_per_clip": broker_cpu_s_per_clip,
    }
    config = {"cpus": 2, "load_before": [0.0], "mongo": "-", "command": "bench"}
    return {"config": config, "throughput": [run]}


def test_the_brokers_cpu_per_clip_is_reported_apart_or_as_a_dash() -> None:
    measured = _results(0.0031)
    assert "CPU ms/clip 4 (DB 3), broker 3.1" in summary(measured)
    assert "| 4 (DB 3) | 3.1 |" in markdown(measured, [])

    remote = _results(None)
    assert "CPU ms/clip 4 (DB 3), broker -" in summary(remote)
    assert "| 4 (DB 3) | - |" in markdown(remote, [])
