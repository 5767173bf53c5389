"""Each bench stack counts its own embedded database's CPU, with two stacks up at once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from reelflow_devtools.bench.launcher import embedded_mongo_pid, process_ids

#: stands in for ``python -m reelflow_devtools.secantusd ... --port N``: the same words on
#: its command line; it runs until its stdin closes
_SERVER = "import sys; sys.stdin.read()"


@pytest.fixture
def two_servers() -> Iterator[dict[int, subprocess.Popen[bytes]]]:
    servers = {
        port: subprocess.Popen(
            [sys.executable, "-c", _SERVER, "secantusd", "--port", str(port)],
            stdin=subprocess.PIPE,
        )
        for port in (27101, 27102)
    }
    try:
        yield servers
    finally:
        for server in servers.values():
            assert server.stdin is not None
            server.stdin.close()  # its read returns: it exits
            server.wait(timeout=30)


def test_each_stack_finds_the_database_server_on_its_own_port(
    two_servers: dict[int, subprocess.Popen[bytes]],
) -> None:
    for port, server in two_servers.items():
        assert embedded_mongo_pid(f"mongodb://127.0.0.1:{port}") == server.pid
        assert process_ids({}, f"mongodb://127.0.0.1:{port}") == {"mongo": server.pid}
    # a port no server of ours listens on (a real MongoDB given by URL): no process counted
    assert embedded_mongo_pid("mongodb://127.0.0.1:27103") is None
    # nor a port that merely starts like one of theirs, nor a replica set's several hosts
    assert embedded_mongo_pid("mongodb://127.0.0.1:2710") is None
    assert embedded_mongo_pid("mongodb://127.0.0.1:27101,127.0.0.1:27102/?replicaSet=rs") is None
