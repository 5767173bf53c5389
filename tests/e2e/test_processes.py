"""The launcher's child processes: fresh logs per run, own output only, stopped in bounds."""

from __future__ import annotations

import json
import signal
import socket
import sys
from pathlib import Path

import pytest

from reelflow_devtools.launcher import SERVICES, Stack, StackConfig
from reelflow_devtools.ports import free_port, release_port
from reelflow_devtools.processes import (
    PREVIOUS_LOGS,
    Child,
    Occupied,
    ProcessGroup,
    stop_children,
    wait_for_sim_url,
)
from reelflow_devtools.waiting import poll_until

pytestmark = pytest.mark.e2e


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def wait_for_line(child: Child, line: str, deadline_s: float = 30) -> None:
    poll_until(
        lambda: True if line in child.output().splitlines() else None,
        what=f"{child.name} to print {line!r}",
        deadline_s=deadline_s,
        pause_s=0.01,
        error=AssertionError,
        child=child,
    )


def test_a_new_run_reads_only_what_its_own_simulator_printed(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    old = ProcessGroup(log_dir=log_dir)
    first = old.start("runware-sim", python("print('listening on http://127.0.0.1:1111')"), {})
    first.process.wait()

    new = ProcessGroup(log_dir=log_dir)
    # a simulator keeps running once it has printed its URL (one that exited fails the wait)
    listening = (
        "import time; print('listening on http://127.0.0.1:2222', flush=True); time.sleep(60)"
    )
    second = new.start("runware-sim", python(listening), {})

    try:
        assert wait_for_sim_url(second, deadline_s=30) == "http://127.0.0.1:2222"
    finally:
        new.stop_all(timeout_s=5)
    assert "1111" not in (log_dir / "runware-sim.log").read_text()


def test_a_new_run_keeps_the_logs_of_the_run_before_in_previous(tmp_path: Path) -> None:
    """A run that ended in a crash is read after the next ``make run`` has started."""
    log_dir = tmp_path / "logs"
    crashed = ProcessGroup(log_dir=log_dir)
    crashed.start(
        "poller", python("print('why it crashed'); raise SystemExit(1)"), {}
    ).process.wait()

    ProcessGroup(log_dir=log_dir).start("poller", python("print('next run')"), {}).process.wait()

    assert (log_dir / "poller.log").read_text() == "next run\n"
    assert (log_dir / PREVIOUS_LOGS / "poller.log").read_text() == "why it crashed\n"


def test_a_restart_within_a_run_keeps_the_earlier_lines_but_reads_its_own(
    tmp_path: Path,
) -> None:
    group = ProcessGroup(log_dir=tmp_path)
    first = group.start("svc", python("print('first life')"), {})
    first.process.wait()

    second = group.restart(first, python("print('second life')"), {})
    second.process.wait()

    assert second.output() == "second life\n"
    assert (tmp_path / "svc.log").read_text() == "first life\nsecond life\n"


def test_children_are_stopped_together_and_a_stubborn_one_is_killed(tmp_path: Path) -> None:
    group = ProcessGroup(log_dir=tmp_path)
    ignore_term = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN)"
    polite = group.start(
        "polite", python("import time; print('up', flush=True); time.sleep(60)"), {}
    )
    stubborn = group.start(
        "stubborn", python(f"{ignore_term}; print('up', flush=True); time.sleep(60)"), {}
    )
    for child in (polite, stubborn):  # both have started, and the stubborn one ignores SIGTERM
        wait_for_line(child, "up")

    stop_children([polite, stubborn], timeout_s=1)

    assert polite.process.returncode == -signal.SIGTERM
    assert stubborn.process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_whose_port_was_taken_meanwhile_stops_the_start_in_one_line(
    tmp_path: Path, service: str
) -> None:
    """Its port free when make run checked, taken before the service bound it."""
    port = free_port()
    config = StackConfig(
        run_dir=tmp_path,
        mongo_url="mongodb://127.0.0.1:1/",  # never reached: the port stops it first
        simulator=None,
        ports={service: port},
        http_host="127.0.0.1",
        log_format="json",
    )
    stack = Stack(config)
    stack.ports = dict(config.ports or {})
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", port))
            taken.listen()
            with pytest.raises(Occupied) as refused:
                stack.start_service(service)
    finally:
        stack.stop()
        release_port(port)

    said = str(refused.value)
    assert said.startswith(f"port {port} ({service}) was taken by another process")
    assert "\n" not in said
    logged = stack_log(tmp_path, service)
    assert "Traceback" not in logged
    last = json.loads(logged.splitlines()[-1])
    assert (last["event"], last.get("service")) == ("http_port_taken", f"reelflow-{service}")
    assert f"port {port} on 127.0.0.1" in logged


def stack_log(run_dir: Path, service: str) -> str:
    return (run_dir / "logs" / f"{service}.log").read_text()
