"""``create_app(settings)``: the FastAPI application and its lifespan (the composition root)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from reelflow_api.deps import AppState
from reelflow_api.indexes import Indexes
from reelflow_api.problems import install_problem_handlers
from reelflow_api.routes import projects, webhooks
from reelflow_api.settings import Settings
from reelflow_common.broker import Publisher, amqp_channel, amqp_connection
from reelflow_common.mongo import mongo_database, ping
from reelflow_common.ops import amqp_ready, ops_routes
from reelflow_common.store import ProjectStore
from reelflow_common.store.auth import CachedApiKeyStore
from reelflow_common.topology import Topology, declare_topology

#: pause between attempts to create the indexes while MongoDB is unreachable
_INDEX_RETRY_S = 2.0


def create_app(settings: Settings) -> FastAPI:
    """Build the app; nothing connects until the lifespan starts."""
    readiness: dict[str, Callable[[], Awaitable[bool]]] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            db = await stack.enter_async_context(mongo_database(settings))
            connection = await stack.enter_async_context(amqp_connection(settings, name="api"))
            channel = await stack.enter_async_context(amqp_channel(connection))
            topology = Topology.from_settings(settings)
            await declare_topology(channel, topology)
            projects_store = ProjectStore(db)
            api_keys = CachedApiKeyStore(
                db, ttl_s=settings.auth_cache_ttl_s, max_entries=settings.auth_cache_size
            )
            indexes = await stack.enter_async_context(
                Indexes(
                    [projects_store.ensure_indexes, api_keys.ensure_indexes],
                    retry_s=min(settings.mongo_timeout_s, _INDEX_RETRY_S),
                ).in_background()
            )

            async def mongodb_ready() -> bool:
                return indexes.ensured.is_set() and await ping(db)

            readiness["rabbitmq"] = amqp_ready(connection)
            readiness["mongodb"] = mongodb_ready
            app.state.reelflow = AppState(
                settings=settings,
                projects=projects_store,
                api_keys=api_keys,
                publisher=Publisher(channel, topology, timeout_s=settings.publish_timeout_s),
                indexes=indexes,
            )
            yield

    app = FastAPI(
        title="reelflow",
        version="1.0.0",
        summary="Story to video: one project of N scenes, tracked to the last clip.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    app.include_router(projects.router)
    app.include_router(webhooks.router)
    app.router.routes.extend(ops_routes(readiness))
    return app
