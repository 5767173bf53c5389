"""The submitter's composition root."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from reelflow_common.broker import Publisher, amqp_channel, amqp_connection, consume
from reelflow_common.clock import DbClock
from reelflow_common.lifecycle import shutdown_event
from reelflow_common.logging import configure_logging, get_logger
from reelflow_common.messages import SubmitClip
from reelflow_common.mongo import mongo_database, ping
from reelflow_common.ops import amqp_ready, ops_app, serve_ops
from reelflow_common.runware import RunwareClient
from reelflow_common.store import ProjectStore
from reelflow_common.topology import SUBMIT_CLIP, Topology, declare_topology
from reelflow_submitter.handlers import SubmitHandler
from reelflow_submitter.settings import Settings

log = get_logger(__name__)


async def main(settings: Settings | None = None, *, stop: asyncio.Event | None = None) -> None:
    """Submit clips until SIGTERM."""
    settings = settings or Settings()
    configure_logging(settings, service="submitter")
    stop = stop or shutdown_event()
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(mongo_database(settings))
        connection = await stack.enter_async_context(amqp_connection(settings, name="submitter"))
        channel = await stack.enter_async_context(
            amqp_channel(connection, prefetch=settings.submit_concurrency)
        )
        runware = await stack.enter_async_context(RunwareClient.open(settings))
        topology = Topology.from_settings(settings)
        await declare_topology(channel, topology)
        clock = DbClock(db)
        projects = ProjectStore(db, clock=clock.now, lease_s=settings.lease_s)
        await projects.ensure_indexes()
        publisher = Publisher(channel, topology, timeout_s=settings.publish_timeout_s)
        handler = SubmitHandler(
            projects,
            runware,
            publisher,
            settings,
            planner=settings.poll_planner(),
            clock=clock.now,
        )
        ops = ops_app({"rabbitmq": amqp_ready(connection), "mongodb": lambda: ping(db)})
        log.info("submitter_started", runware=settings.runware_base_url)
        await asyncio.gather(
            consume(
                channel,
                topology,
                SUBMIT_CLIP,
                SubmitClip,
                handler,
                publisher=publisher,
                concurrency=settings.submit_concurrency,
                stop=stop,
                drain_timeout_s=settings.drain_timeout_s,
            ),
            clock.run(stop),
            serve_ops(ops, settings.http_host, settings.http_port, stop),
        )
    log.info("submitter_stopped")
