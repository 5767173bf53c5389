"""``create_app(settings)``: the FastAPI application and its lifespan (the composition root)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from reelflow_api.auth import Authentication
from reelflow_api.deps import AppState
from reelflow_api.lanes import KnownLanes, listening
from reelflow_api.middleware import BodyLimit, InFlightLimit, require_bounded_bodies
from reelflow_api.openapi import install_openapi
from reelflow_api.outliving import OutlivingWork
from reelflow_api.problems import install_problem_handlers
from reelflow_api.routes import dashboard, projects, scenes, tickets, usage, videos, webhooks
from reelflow_api.settings import Settings
from reelflow_api.slow_clients import BodyDeadline
from reelflow_api.telemetry import CorrelationId, HttpTelemetry
from reelflow_api.wakeups import Wakeups, subscribed
from reelflow_api.web import NoWebSockets, SecurityHeaders, install_cors, install_docs
from reelflow_common.accounting import CostEstimator, UsageStore
from reelflow_common.batching import Batcher
from reelflow_common.broker import Publisher, amqp_channel, amqp_connection
from reelflow_common.clock import DbClock
from reelflow_common.lifecycle import in_background, wait_for
from reelflow_common.mongo import Indexes, mongo_database
from reelflow_common.ops import (
    OPS_PATHS,
    FirstLink,
    ReadinessCheck,
    amqp_ready,
    not_yet,
    ops_routes,
)
from reelflow_common.storage import VideoLinks, open_storage
from reelflow_common.store import ProjectStore
from reelflow_common.store.auth import CachedApiKeyStore
from reelflow_common.store.tickets import WsTicketStore
from reelflow_common.tokenbucket import KeyedBuckets
from reelflow_common.topology import Topology, declare_topology

#: the checks ``/readyz`` needs true for a 200 always: MongoDB, which every request but the
#: probes reads or writes. RabbitMQ is required only until this replica's first link has
#: succeeded, and while the broker is only unreachable for no longer than a grace after the
#: start (``FirstLink``: a replica the broker refuses, or whose link gave up, holds its
#: rollout up), then only reported (a 200 ``degraded`` without it): a create still answers
#: 202 (its dispatch is left to the reconciler), reads and the dashboard are served, a
#: webhook answers 503 (only a hint: Runware may deliver it again, and polling finds the
#: result anyway), and a ``?wait=`` re-reads its project every ``wait_check_interval_s``.
#: Were it required then, a broker outage would take every replica out of the Service at
#: once (or every one that restarts in it): the whole front door down.
READY_REQUIRES = frozenset({"mongodb"})

#: most project reads in one query (each of a few KiB; MongoDB's first batch holds 101)
READ_BATCH = 64


#: API keys whose ticket rate one replica remembers; the least recently used beyond it are
#: forgotten (full buckets first). Only keys that authenticated get one.
TICKET_RATE_KEYS = 10_000

#: At shutdown, after uvicorn's graceful period (``drain_timeout_s``: every request has
#: ended or been cancelled), how long the creates and retries whose requests were
#: cancelled get to end. Short: a pod's grace period (45 s in deploy/k8s) must also cover
#: the preStop sleep (5 s), the graceful period (20 s) and closing the connections.
OUTLIVING_DRAIN_S = 3.0


def create_app(settings: Settings) -> FastAPI:
    """Build the app; nothing connects until the lifespan starts.

    The lifespan never waits for RabbitMQ or MongoDB: the API answers at once,
    ``/readyz`` names what it still waits for (503 until MongoDB answers and the first
    broker link has succeeded, or a grace has passed with the broker only unreachable;
    after that, a 200 ``degraded`` while only RabbitMQ is missing: ``READY_REQUIRES``), and
    it carries on once they answer.
    """
    readiness: dict[str, ReadinessCheck] = {"rabbitmq": not_yet, "mongodb": not_yet}
    required = set(READY_REQUIRES)
    link = FirstLink("rabbitmq", readiness, required)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            db = await stack.enter_async_context(mongo_database(settings))
            topology = Topology.from_settings(settings)
            # Publishes fail until RabbitMQ answers: a dispatch that fails expires its
            # clips' leases, and the reconciler dispatches them again.
            publisher = Publisher(None, topology, timeout_s=settings.publish_timeout_s)
            # Local time until the first reading: the clock never waits for MongoDB.
            clock = await stack.enter_async_context(DbClock(db).running())
            # Every stamp and expiry on it: a link or ticket made here is checked by another
            # replica or the notifier, a key's expiry was set by the admin tool.
            links = VideoLinks.from_settings(settings, clock=clock.now)
            # With the links: a retry's clip.updated shows the copies a read shows.
            projects_store = ProjectStore(
                db, clock=clock.now, lease_s=settings.lease_s, links=links
            )
            api_keys = CachedApiKeyStore.from_settings(db, settings, clock=clock.now)
            ws_tickets = WsTicketStore(
                db, ttl=timedelta(seconds=settings.ws_ticket_ttl_s), clock=clock.now
            )
            indexes = await stack.enter_async_context(
                Indexes(
                    db,
                    [
                        projects_store.ensure_indexes,
                        api_keys.ensure_indexes,
                        ws_tickets.ensure_indexes,
                    ],
                ).in_background()
            )
            readiness["mongodb"] = indexes.ready
            wakeups = Wakeups()
            lanes = KnownLanes(settings.lane_ttl_s)
            storage = await stack.enter_async_context(open_storage(settings))
            linking = await stack.enter_async_context(
                in_background(
                    # A link the broker drops halfway (before its channels are open) starts
                    # over; one that fails otherwise (a bug, a conflicting topology) ends
                    # the task, and the replica stays unready (FirstLink.watch).
                    wait_for(
                        "rabbitmq",
                        lambda: _link_broker(settings, topology, publisher, wakeups, lanes, link),
                    ),
                    name="amqp",
                )
            )
            link.watch(linking)
            # Closed first (the stack unwinds in reverse): creates and retries whose
            # requests are gone finish while MongoDB and RabbitMQ are still there.
            outliving = OutlivingWork()
            stack.push_async_callback(outliving.drain, OUTLIVING_DRAIN_S)
            app.state.reelflow = AppState(
                settings=settings,
                projects=projects_store,
                api_keys=api_keys,
                publisher=publisher,
                indexes=indexes,
                tickets=ws_tickets,
                estimator=CostEstimator(
                    db,
                    fallback_usd_per_s=settings.cost_fallback_usd_per_s,
                    ttl_s=settings.cost_estimate_ttl_s,
                ),
                usage=UsageStore(db, projects_store.ledgers),
                project_reads=Batcher(projects_store.get_many, max_batch=READ_BATCH),
                wakeups=wakeups,
                lanes=lanes,
                outliving=outliving,
                ticket_rate=KeyedBuckets(
                    settings.ws_ticket_rate_per_s,
                    settings.ws_ticket_burst,
                    max_keys=TICKET_RATE_KEYS,
                ),
                storage=storage,
                links=links,
            )
            yield

    app = FastAPI(
        title="reelflow",
        version="1.0.0",
        summary="Story to video: one project of N scenes, tracked to the last clip.",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry spans would be a second, unlinked root per request:
        # HttpTelemetry's span is the request's (outermost, so sheds and 413s have one too,
        # with the service's name and the correlation id).
        telemetry={"tracing": False, "operation_spans": False, "metrics": False, "logs": False},
        # Swagger UI from local files (install_docs); no ReDoc, which only a CDN would serve.
        docs_url=None,
        redoc_url=None,
    )
    install_problem_handlers(app)
    # The last one added runs first: shed load before reading any body.
    app.add_middleware(BodyDeadline, timeout_s=settings.http_body_timeout_s)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, routes=app.router.routes)
    # Before any body is read: no valid key, no body. Inside the in-flight limit: a key the
    # cache has not got costs a MongoDB read, work that limit bounds.
    app.add_middleware(
        Authentication,
        routes=app.router.routes,
        key_store=lambda: app.state.reelflow.api_keys,
    )
    app.add_middleware(
        InFlightLimit,
        limit=settings.max_in_flight,
        per_key=settings.max_in_flight_per_key,
        per_tenant=settings.tenant_in_flight_cap,
        max_waiters=settings.max_waiters,
        exempt=OPS_PATHS,
    )
    app.include_router(projects.router)
    app.include_router(scenes.router)
    app.include_router(webhooks.router)
    app.include_router(tickets.router)
    app.include_router(usage.router)
    app.include_router(videos.router)
    app.include_router(dashboard.router)
    app.mount("/static", dashboard.DashboardFiles(), name="static")
    app.router.routes.extend(ops_routes(readiness, required=required))
    install_docs(app)
    install_openapi(app, settings)
    # BodyLimit counts every JSON body's values against its model's bound: a route whose
    # model has none fails here, not at its first request.
    require_bounded_bodies(app.router.routes)
    # Web basics outside the limits, so that every answer (a 503 shed, a 413) gets them.
    install_cors(app, settings.cors_allow_origins, settings.cors_allow_headers)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(NoWebSockets)
    # Outermost, so that every answer is counted, traced and has its id: a shed or refused
    # request, and a preflight the CORS middleware answers itself (with CORS off, every one).
    app.add_middleware(HttpTelemetry, routes=app.router.routes)
    app.add_middleware(CorrelationId)
    return app


async def _link_broker(
    settings: Settings,
    topology: Topology,
    publisher: Publisher,
    wakeups: Wakeups,
    lanes: KnownLanes,
    link: FirstLink,
) -> None:
    """Connect (waiting for RabbitMQ), declare the topology, hand the channel to the publisher,
    subscribe this process's ``?wait=`` requests to ``project.finished`` and listen for the
    lanes the submitters consume.

    Holds the connection until the lifespan cancels it; the connection
    reconnects by itself after that first success.
    """
    async with (
        amqp_connection(settings, name="api", on_failure=link.failed) as connection,
        amqp_channel(connection) as channel,
        amqp_channel(connection) as events_channel,
        AsyncExitStack() as stack,
    ):
        await wait_for("rabbitmq", lambda: declare_topology(channel, topology))
        publisher.attach(channel)
        queue_name = topology.wakeups_queue(uuid.uuid4().hex)  # once: retries reuse it
        await wait_for(
            "rabbitmq",
            lambda: stack.enter_async_context(
                subscribed(connection, events_channel, topology, wakeups, queue_name=queue_name)
            ),
        )
        if settings.lane_ttl_s > 0:
            lanes_queue = topology.api_lanes_queue(uuid.uuid4().hex)
            await wait_for(
                "rabbitmq",
                lambda: stack.enter_async_context(
                    listening(events_channel, topology, lanes, queue_name=lanes_queue)
                ),
            )
        wakeups.wake_all()  # events before the subscription were missed: read once
        link.linked(amqp_ready(connection))
        await asyncio.get_running_loop().create_future()
