"""A PyMongo connect cancelled half-way leaves no socket open."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

import reelflow_common.mongo  # noqa: F401  (installs reelflow_common.mongo_connect)
from reelflow_common import mongo_connect
from reelflow_common.mongo import Document
from tests.waiting import eventually


@pytest.fixture
def full_listener() -> Iterator[int]:
    """The port of a server whose accept queue is full: a connect to it stays pending.

    With a backlog of 0 Linux queues one connection; it drops the SYN of the next
    (and of its retransmits) while that one waits to be accepted.
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            yield port


@pytest.fixture
def pymongo_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[socket.socket]]:
    """Every socket PyMongo's async connect makes meanwhile (kept until the test ends,
    then closed, so a leak fails this test's assertion, never a later test)."""
    made: list[socket.socket] = []

    class Kept(mongo_connect._RecordedSocket):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(mongo_connect._Sockets, "socket", Kept)
    yield made
    for sock in made:
        sock.close()


async def test_closing_a_client_while_its_monitor_connects_closes_that_socket(
    full_listener: int, pymongo_sockets: list[socket.socket]
) -> None:
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{full_listener}/", connectTimeoutMS=30_000
    )
    await client.aconnect()  # starts the monitor, which connects
    # Made, then straight into sock_connect (nothing awaited between): pending there.
    await eventually(lambda: bool(pymongo_sockets), "the monitor's connect made its socket")

    await client.close()  # cancels the monitor's task inside sock_connect

    assert [sock for sock in pymongo_sockets if sock.fileno() != -1] == []
