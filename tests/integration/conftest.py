"""Fixtures of the integration tests: a ``channel`` on the test's topology, a ``world``
built from the test module's worker ``settings``, and an ``api`` with the default
settings (a module may define its own)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from reelflow_api.settings import Settings as ApiSettings
from reelflow_common.broker import amqp_channel
from reelflow_common.settings import LeaseSettings, TopologySettings
from reelflow_common.store import ProjectStore
from reelflow_common.topology import Topology, declare_topology
from reelflow_runware_sim.testing import RunningSimulator
from tests.integration.api_helpers import Api, running_api
from tests.integration.worker_helpers import World, open_world


@pytest.fixture
async def channel(
    amqp_connection: AbstractRobustConnection, topology: Topology
) -> AsyncIterator[AbstractChannel]:
    """A channel of the test's connection, its topology declared."""
    async with amqp_channel(amqp_connection) as channel:
        await declare_topology(channel, topology)
        yield channel


@pytest.fixture
async def world(
    amqp_connection: AbstractRobustConnection,
    mongo_db: Any,
    settings: TopologySettings,
    runware_sim: RunningSimulator,
) -> AsyncIterator[World]:
    """The broker, database and simulator of the test, for the module's worker ``settings``."""
    assert isinstance(settings, LeaseSettings), "a worker's settings hold its lease"
    store = ProjectStore(mongo_db, lease_s=settings.lease_s)
    await store.ensure_indexes()
    async with open_world(amqp_connection, settings, store, runware_sim) as world:
        yield world


@pytest.fixture
async def api(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> AsyncIterator[Api]:
    """The api, served in-process with its default settings, on the test's broker and database."""
    async with running_api(settings_for(ApiSettings), mongo_db, amqp_connection) as api:
        yield api
