"""Stacks of real processes for the end-to-end tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest

from tests.e2e.stack import Stack
from tests.fixtures.infra import delete_topology_queues

pytestmark = pytest.mark.e2e


def _make_stack(amqp_url: str, mongo_url: str, log_dir: Path) -> Stack:
    tag = uuid.uuid4().hex[:8]
    return Stack(
        amqp_url=amqp_url,
        mongo_url=mongo_url,
        prefix=f"e2e-{tag}.",
        database=f"e2e_{tag}",
        log_dir=log_dir,
    )


async def _cleanup(stack: Stack) -> None:
    connection = await aio_pika.connect_robust(stack.amqp_url)
    try:
        await delete_topology_queues(connection, stack.topology_settings())
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def shared_stack(
    amqp_url: str, mongo_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One stack for the tests that only read and write through the public interfaces."""
    stack = _make_stack(amqp_url, mongo_url, tmp_path_factory.mktemp("stack-logs"))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        asyncio.run(_cleanup(stack))


@pytest.fixture
def own_stack(amqp_url: str, mongo_url: str, tmp_path: Path) -> Iterator[Stack]:
    """A stack of the test's own, for tests that kill processes."""
    stack = _make_stack(amqp_url, mongo_url, tmp_path / "logs")
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        asyncio.run(_cleanup(stack))
