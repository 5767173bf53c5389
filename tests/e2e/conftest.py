"""Stacks of real processes for the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reelflow_devtools.launcher import Stack
from tests.e2e.stack import e2e_config, started

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def shared_stack(
    amqp_url: str, mongo_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One stack for the tests that only read and write through the public interfaces."""
    yield from started(e2e_config(amqp_url, mongo_url, tmp_path_factory.mktemp("stack")))


@pytest.fixture
def own_stack(amqp_url: str, mongo_url: str, tmp_path: Path) -> Iterator[Stack]:
    """A stack of the test's own, for tests that kill processes."""
    yield from started(e2e_config(amqp_url, mongo_url, tmp_path / "stack"))
