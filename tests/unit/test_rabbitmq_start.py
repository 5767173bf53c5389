"""A broker the tooling starts inherits enough open files for the tests' quorum queues."""

from __future__ import annotations

import resource
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from reelflow_devtools import rabbitmq

#: the default soft limit of many shells, under which the shared broker wedged
_LOW = 1024


@pytest.fixture
def low_soft_limit() -> Iterator[int]:
    """This process's soft limit of open files at 1,024 (restored after); the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= _LOW:
        pytest.skip(f"the hard limit of open files is {hard}: nothing to raise to")
    resource.setrlimit(resource.RLIMIT_NOFILE, (_LOW, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_broker_started_here_gets_more_open_files_than_the_shell_allowed(
    low_soft_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    started_with: list[int] = []
    answers = iter([False, True])  # not listening, then listening once started

    def fake_run(argv: list[str], **_kwargs: Any) -> subprocess.CompletedProcess[str]:
        started_with.append(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(rabbitmq, "_reachable", lambda _host, _port: next(answers))
    monkeypatch.setattr(rabbitmq, "_server_command", lambda: "/usr/sbin/rabbitmq-server")
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(rabbitmq, "guard_dead_letter_supervisor", lambda: "installed")
    monkeypatch.setattr(rabbitmq, "widen_file_handle_cache", lambda: "kept")

    assert rabbitmq.ensure_rabbitmq(rabbitmq.LOCAL_AMQP_URL) == "started"

    hard = low_soft_limit
    expected = (
        rabbitmq.BROKER_OPEN_FILES
        if hard == resource.RLIM_INFINITY
        else min(rabbitmq.BROKER_OPEN_FILES, hard)
    )
    assert started_with == [expected]


def test_a_running_broker_is_left_alone_and_our_limit_untouched(
    low_soft_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rabbitmq, "_reachable", lambda _host, _port: True)
    monkeypatch.setattr(rabbitmq, "guard_dead_letter_supervisor", lambda: "running")
    monkeypatch.setattr(rabbitmq, "widen_file_handle_cache", lambda: "kept")

    assert rabbitmq.ensure_rabbitmq(rabbitmq.LOCAL_AMQP_URL) == "running"
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == _LOW
