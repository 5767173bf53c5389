"""Stacks of real processes for the end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import Stack, cleanup, make_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def shared_stack(
    amqp_url: str, mongo_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One stack for the tests that only read and write through the public interfaces."""
    stack = make_stack(amqp_url, mongo_url, tmp_path_factory.mktemp("stack-logs"))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        asyncio.run(cleanup(stack))


@pytest.fixture
def own_stack(amqp_url: str, mongo_url: str, tmp_path: Path) -> Iterator[Stack]:
    """A stack of the test's own, for tests that kill processes."""
    stack = make_stack(amqp_url, mongo_url, tmp_path / "logs")
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        asyncio.run(cleanup(stack))
