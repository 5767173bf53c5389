"""A PyMongo connect cancelled half-way leaves no socket for the garbage collector to close."""

from __future__ import annotations

import gc
import socket
import warnings
from collections.abc import Iterator

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import ServerSelectionTimeoutError

import reelflow_common.mongo  # noqa: F401  (installs reelflow_common.mongo_connect)
from reelflow_common.mongo import Document


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


def _unclosed_sockets() -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


async def test_closing_a_client_while_its_monitor_connects_closes_that_socket(
    full_listener: int,
) -> None:
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{full_listener}/",
        connectTimeoutMS=10_000,
        serverSelectionTimeoutMS=200,
    )
    with pytest.raises(ServerSelectionTimeoutError):
        await client.admin.command("ping")  # the monitor's connect is pending meanwhile

    await client.close()  # cancels the monitor's task inside sock_connect
    del client

    assert _unclosed_sockets() == []
