"""The ports test stacks hand their servers: never one an outgoing connection can take first."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from reelflow_devtools.embedded_mongo import free_port

EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")


@pytest.mark.skipif(not EPHEMERAL.exists(), reason="Linux's ephemeral port range only")
def test_a_free_port_lies_below_the_range_outgoing_connections_take_ports_from() -> None:
    low = int(EPHEMERAL.read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(port < low for port in ports), (sorted(ports), low)
    assert len(ports) > 1  # not one fixed port for every stack


def test_a_free_port_is_one_nothing_listens_on() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = free_port()
        assert port != taken.getsockname()[1]
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))
