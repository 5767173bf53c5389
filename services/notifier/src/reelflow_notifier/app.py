"""``create_app(settings)``: the Starlette app; its lifespan builds and closes every client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from starlette.applications import Starlette

from reelflow_common.broker import amqp_channel, amqp_connection
from reelflow_common.mongo import mongo_database, ping
from reelflow_common.ops import ReadinessCheck, amqp_ready, ops_routes
from reelflow_common.store import ProjectStore
from reelflow_common.store.auth import CachedApiKeyStore
from reelflow_common.topology import Topology, declare_topology
from reelflow_notifier.fanout import fanout
from reelflow_notifier.hub import Hub
from reelflow_notifier.routes import routes
from reelflow_notifier.settings import Settings
from reelflow_notifier.state import NotifierState


def create_app(settings: Settings) -> Starlette:
    """Build the app; nothing connects until the lifespan starts."""
    readiness: dict[str, ReadinessCheck] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            db = await stack.enter_async_context(mongo_database(settings))
            connection = await stack.enter_async_context(amqp_connection(settings, name="notifier"))
            channel = await stack.enter_async_context(amqp_channel(connection))
            topology = Topology.from_settings(settings)
            await declare_topology(channel, topology)
            hub = Hub()
            await stack.enter_async_context(fanout(connection, channel, topology, hub))
            readiness["rabbitmq"] = amqp_ready(connection)
            readiness["mongodb"] = lambda: ping(db)
            api_keys = CachedApiKeyStore(
                db, ttl_s=settings.auth_cache_ttl_s, max_entries=settings.auth_cache_size
            )
            app.state.notifier = NotifierState(
                settings=settings, projects=ProjectStore(db), api_keys=api_keys, hub=hub
            )
            yield

    return Starlette(routes=[*routes(), *ops_routes(readiness)], lifespan=lifespan)
