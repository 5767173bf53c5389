"""The ports test stacks hand their servers: never one an outgoing connection can take first,
never one another process was handed for its own server."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reelflow_devtools.ports import RESERVATIONS, free_port, release_port

EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")

#: another process (another pytest worker's stack, say) handed ``port`` for its server
HOLDER = """
import random, sys
from reelflow_devtools import ports
random.randrange = lambda low, high: int(sys.argv[1])
print(ports.free_port(), flush=True)
sys.stdin.read()  # holds the port until told to exit
"""


@pytest.mark.skipif(not EPHEMERAL.exists(), reason="Linux's ephemeral port range only")
def test_a_free_port_lies_below_the_range_outgoing_connections_take_ports_from() -> None:
    low = int(EPHEMERAL.read_text().split()[0])
    picked = {free_port() for _ in range(20)}
    assert all(port < low for port in picked), (sorted(picked), low)
    assert len(picked) > 1  # not one fixed port for every stack


def test_a_free_port_is_one_nothing_listens_on() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = free_port()
        assert port != taken.getsockname()[1]
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))


def _picks(monkeypatch: pytest.MonkeyPatch, *choices: int) -> None:
    """``free_port``'s random picks (``random.randrange``, this test's only) are ``choices``."""
    sequence: Iterator[int] = iter(choices)
    monkeypatch.setattr(random, "randrange", lambda _low, _high: next(sequence))


@pytest.mark.skipif(not EPHEMERAL.exists(), reason="Linux's ephemeral port range only")
def test_a_port_another_process_was_handed_is_not_handed_out_until_that_process_exits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, other = free_port(), free_port()
    release_port(port)
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdin is not None
        try:
            assert int(holder.stdout.readline()) == port  # its server has not bound it yet

            release_port(other)
            _picks(monkeypatch, port, other)
            assert free_port() == other  # nothing listens on ``port``, but it is the holder's

            holder.stdin.close()  # the holder ends, without releasing anything
            assert holder.wait(timeout=30) == 0
        finally:
            holder.kill()
    _picks(monkeypatch, port)
    assert free_port() == port
    release_port(port)
    release_port(other)


@pytest.mark.skipif(not EPHEMERAL.exists(), reason="Linux's ephemeral port range only")
def test_a_released_port_can_be_handed_out_again(monkeypatch: pytest.MonkeyPatch) -> None:
    port, other = free_port(), free_port()
    release_port(other)
    _picks(monkeypatch, port, other)
    assert free_port() == other  # this process's own server still has ``port``

    release_port(port)
    _picks(monkeypatch, port)
    assert free_port() == port
    release_port(port)
    release_port(other)


@pytest.mark.skipif(not EPHEMERAL.exists(), reason="Linux's ephemeral port range only")
def test_a_port_whose_reservation_cannot_be_taken_is_skipped_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, other = free_port(), free_port()
    release_port(port)
    release_port(other)
    # Something not ours where the port's lock file would be (another user's file, say).
    blocked = RESERVATIONS / str(port)
    blocked.unlink(missing_ok=True)
    blocked.mkdir()
    try:
        _picks(monkeypatch, port, other)
        assert free_port() == other
    finally:
        blocked.rmdir()
        release_port(other)
