"""The poller's composition root."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from reelflow_common.broker import Publisher, amqp_channel, amqp_connection, consume
from reelflow_common.lifecycle import shutdown_event
from reelflow_common.logging import configure_logging, get_logger
from reelflow_common.messages import CheckClip, RecordRunwareResult
from reelflow_common.mongo import mongo_database, ping
from reelflow_common.ops import amqp_ready, ops_app, serve_ops
from reelflow_common.runware import RunwareClient
from reelflow_common.store import ProjectStore
from reelflow_common.topology import CHECK_CLIP, RECORD_RESULT, Topology, declare_topology
from reelflow_poller.handlers import CheckHandler, ClipRecorder, RecordResultHandler
from reelflow_poller.service import Policy
from reelflow_poller.settings import Settings

log = get_logger(__name__)


def poll_policy(settings: Settings) -> Policy:
    """The polling schedule the settings describe (the same numbers as the poll ladder)."""
    return Policy(
        initial_s=settings.poll_initial_delay_s,
        backoff=settings.poll_backoff,
        cap_s=settings.poll_max_delay_s,
        max_age_s=settings.poll_max_age_s,
        not_found_grace_s=settings.not_found_grace_s,
    )


async def main(settings: Settings | None = None, *, stop: asyncio.Event | None = None) -> None:
    """Track Runware tasks until SIGTERM."""
    settings = settings or Settings()
    configure_logging(settings, service="poller")
    stop = stop or shutdown_event()
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(mongo_database(settings))
        connection = await stack.enter_async_context(amqp_connection(settings, name="poller"))
        channel = await stack.enter_async_context(
            amqp_channel(connection, prefetch=settings.poll_concurrency)
        )
        # consume() sets the prefetch of the channel it is given: one channel per consumer.
        webhook_channel = await stack.enter_async_context(
            amqp_channel(connection, prefetch=settings.poll_concurrency)
        )
        runware = await stack.enter_async_context(RunwareClient.open(settings))
        topology = Topology.from_settings(settings)
        await declare_topology(channel, topology)
        projects = ProjectStore(db)
        await projects.ensure_indexes()
        publisher = Publisher(channel, topology, timeout_s=settings.publish_timeout_s)
        recorder = ClipRecorder(projects, publisher)
        policy = poll_policy(settings)
        ops = ops_app({"rabbitmq": amqp_ready(connection), "mongodb": lambda: ping(db)})
        log.info("poller_started", runware=settings.runware_base_url)
        await asyncio.gather(
            consume(
                channel,
                topology,
                CHECK_CLIP,
                CheckClip,
                CheckHandler(recorder, runware, publisher, policy),
                publisher=publisher,
                concurrency=settings.poll_concurrency,
                stop=stop,
                drain_timeout_s=settings.drain_timeout_s,
            ),
            consume(
                webhook_channel,
                topology,
                RECORD_RESULT,
                RecordRunwareResult,
                RecordResultHandler(recorder, policy),
                publisher=publisher,
                concurrency=settings.poll_concurrency,
                stop=stop,
                drain_timeout_s=settings.drain_timeout_s,
            ),
            serve_ops(ops, settings.http_host, settings.http_port, stop),
        )
    log.info("poller_stopped")
