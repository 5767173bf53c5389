"""The devtools' one waiting helper: what it returns, and what a failed wait says."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from reelflow_devtools.processes import Child, ProcessGroup, StartError, wait_healthy, wait_ready
from reelflow_devtools.waiting import poll_until, poll_until_async


@pytest.fixture
def group(tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(log_dir=tmp_path)
    try:
        yield group
    finally:
        group.stop_all(timeout_s=5)


def exited(group: ProcessGroup, code: str) -> Child:
    child = group.start("svc", [sys.executable, "-c", code], {})
    child.process.wait()
    return child


def test_the_first_answer_is_returned() -> None:
    answers = iter([None, None, "ready"])

    found = poll_until(
        lambda: next(answers), what="ready", deadline_s=5, pause_s=0.001, error=StartError
    )

    assert found == "ready"


def test_a_timeout_names_what_was_waited_for() -> None:
    with pytest.raises(
        StartError, match=r"timed out after 0\.05 s waiting for the broker to listen"
    ):
        poll_until(
            lambda: None,
            what="the broker to listen",
            deadline_s=0.05,
            pause_s=0.01,
            error=StartError,
        )


def test_a_dead_child_fails_the_wait_with_its_log_even_when_the_probe_answers(
    group: ProcessGroup,
) -> None:
    # what answered was not the child: another process on the port it could not bind
    child = exited(group, "print('port 8000 taken'); raise SystemExit(3)")

    with pytest.raises(StartError) as failed:
        poll_until(
            lambda: True,
            what="svc to answer",
            deadline_s=5,
            pause_s=0.01,
            error=StartError,
            child=child,
        )

    assert str(failed.value) == "svc exited (3) while waiting for svc to answer:\nport 8000 taken"


class Failed(RuntimeError):
    """A caller's own error type."""


async def test_the_async_twin_raises_the_callers_error_and_bounds_a_hung_probe() -> None:
    async def hung() -> None:
        await asyncio.sleep(60)

    with pytest.raises(Failed, match=r"timed out after 0\.1 s waiting for the workers"):
        await poll_until_async(hung, what="the workers", deadline_s=0.1, pause_s=0.01, error=Failed)


@pytest.fixture
def readyz() -> Iterator[tuple[str, list[str]]]:
    """A ``/readyz`` on a free port and the statuses it answers in turn (the last one stays)."""
    statuses = ["degraded"]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": statuses[0], "checks": {}}).encode()
            if len(statuses) > 1:
                statuses.pop(0)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/readyz", statuses
    finally:
        server.shutdown()
        server.server_close()


def running_child(group: ProcessGroup) -> Child:
    return group.start("svc", [sys.executable, "-c", "import time; time.sleep(60)"], {})


def test_a_200_degraded_is_healthy_but_not_ready(
    group: ProcessGroup, readyz: tuple[str, list[str]]
) -> None:
    """The api without its broker link: in its Service, but a stack's start waits on."""
    url, _statuses = readyz
    child = running_child(group)

    wait_healthy(child, url, deadline_s=5)
    with pytest.raises(StartError, match="svc to answer every check true"):
        wait_ready(child, url, deadline_s=0.3)


def test_wait_ready_returns_once_every_check_is_true(
    group: ProcessGroup, readyz: tuple[str, list[str]]
) -> None:
    url, statuses = readyz
    statuses[:] = ["degraded", "degraded", "ok"]

    wait_ready(running_child(group), url, deadline_s=5)

    assert statuses == ["ok"]
