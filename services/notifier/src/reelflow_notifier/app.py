"""``create_app(settings)``: the Starlette app; its lifespan builds and closes every client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from starlette.applications import Starlette

from reelflow_common.broker import amqp_channel, amqp_connection
from reelflow_common.clock import DbClock
from reelflow_common.lifecycle import in_background, wait_for
from reelflow_common.mongo import mongo_database, ping
from reelflow_common.ops import FirstLink, ReadinessCheck, amqp_ready, not_yet, ops_routes
from reelflow_common.storage import VideoLinks
from reelflow_common.store import ProjectStore
from reelflow_common.store.auth import CachedApiKeyStore
from reelflow_common.store.tickets import WsTicketStore
from reelflow_common.topology import Topology, declare_topology
from reelflow_notifier.capacity import Connections
from reelflow_notifier.fanout import fanout
from reelflow_notifier.gcpolicy import GcPolicy
from reelflow_notifier.hub import Hub
from reelflow_notifier.keyslots import KeySlots
from reelflow_notifier.keywatch import KeyWatch
from reelflow_notifier.replays import Replays
from reelflow_notifier.routes import not_served, routes
from reelflow_notifier.settings import Settings
from reelflow_notifier.state import NotifierState

#: the checks ``/readyz`` needs true for a 200 always: MongoDB, which authenticates a socket
#: and reads its snapshots and event log. RabbitMQ is required only until this replica's
#: first link has succeeded, and while the broker is only unreachable for no longer than a
#: grace after the start (``FirstLink``: a replica the broker refuses, or whose link gave up,
#: holds its rollout up), then only reported (a 200 ``degraded`` without it): a socket still
#: opens and gets its snapshot, and live events resume when the broker answers again, every
#: socket caught up from the event log (the fan-out's queue is restored before its reconnect
#: callback catches them up; ``fanout.py``). Were it required then, a broker outage would take
#: every replica out of the Service (or every one that restarts in it): no socket could open
#: at all.
READY_REQUIRES = frozenset({"mongodb"})


def create_app(settings: Settings, *, gc_policy: GcPolicy | None = None) -> Starlette:
    """Build the app; nothing connects until the lifespan starts.

    ``gc_policy`` (the process's, built by ``main``) freezes served sockets'
    objects out of the garbage collector's passes while the app runs.

    The lifespan never waits for RabbitMQ or MongoDB: the notifier answers at
    once, ``/readyz`` names what it still waits for (503 until MongoDB answers and
    the first broker link has succeeded, or a grace has passed with the broker only
    unreachable; after that, a 200 ``degraded`` while only
    RabbitMQ is missing: ``READY_REQUIRES``), and live events start flowing once
    the broker answers (connections opened before then catch up).
    """
    readiness: dict[str, ReadinessCheck] = {"rabbitmq": not_yet, "mongodb": not_yet}
    required = set(READY_REQUIRES)
    link = FirstLink("rabbitmq", readiness, required)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            db = await stack.enter_async_context(mongo_database(settings))
            hub = Hub()
            readiness["mongodb"] = lambda: ping(db)
            # The database's clock, as the api's: a ticket the api issued, a key's expiry
            # and a video link are judged here on the clock they were made on. Local time
            # until the first reading: the clock never waits for MongoDB.
            clock = await stack.enter_async_context(DbClock(db).running())
            # One store for the handshake and the key watch: a revoked key's sockets
            # close within auth_cache_ttl_s + ws_key_check_interval_s.
            api_keys = CachedApiKeyStore.from_settings(db, settings, clock=clock.now)
            key_watch = await stack.enter_async_context(
                KeyWatch(api_keys, interval_s=settings.ws_key_check_interval_s).running()
            )
            linking = await stack.enter_async_context(
                in_background(
                    # A link the broker drops halfway (before the fan-out consumes) starts
                    # over; one that fails otherwise (a bug, a conflicting topology) ends
                    # the task, and the replica stays unready (FirstLink.watch).
                    wait_for("rabbitmq", lambda: _link_broker(settings, hub, link)),
                    name="amqp",
                )
            )
            link.watch(linking)
            if gc_policy is not None:
                await stack.enter_async_context(gc_policy.running())
            projects = ProjectStore(db, clock=clock.now)
            app.state.notifier = NotifierState(
                settings=settings,
                projects=projects,
                replays=Replays(projects),
                api_keys=api_keys,
                hub=hub,
                tickets=WsTicketStore(db, clock=clock.now),
                key_watch=key_watch,
                connections=Connections(settings.ws_max_connections),
                key_slots=KeySlots(
                    settings.ws_max_connections_per_key,
                    max_watches=settings.ws_max_watches_per_key,
                    subscribe_rate_per_s=settings.ws_key_subscribe_rate_per_s,
                    subscribe_burst=settings.ws_key_subscribe_burst,
                ),
                links=VideoLinks.from_settings(settings, clock=clock.now),
                gc_policy=gc_policy,
            )
            yield

    return Starlette(
        routes=[*routes(), *ops_routes(readiness, required=required), not_served()],
        lifespan=lifespan,
    )


async def _link_broker(settings: Settings, hub: Hub, link: FirstLink) -> None:
    """Connect (waiting for RabbitMQ), then feed the hub from the fan-out until cancelled."""
    topology = Topology.from_settings(settings)
    async with (
        amqp_connection(settings, name="notifier", on_failure=link.failed) as connection,
        amqp_channel(connection) as channel,
    ):
        await wait_for("rabbitmq", lambda: declare_topology(channel, topology))
        async with fanout(
            connection,
            channel,
            topology,
            hub,
            max_length=settings.fanout_max_length,
            prefetch=settings.fanout_prefetch,
            linger_s=settings.fanout_linger_s,
        ):
            # Connections opened while the broker was away may have missed events.
            hub.catch_up_all()
            link.linked(amqp_ready(connection))
            await asyncio.get_running_loop().create_future()
