"""The poller's composition root."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from reelflow_common.broker import Publisher, amqp_channel, amqp_connection, consume
from reelflow_common.clock import DbClock
from reelflow_common.lifecycle import every, shutdown_event
from reelflow_common.logging import configure_logging, get_logger
from reelflow_common.messages import CheckClip, CheckHintedTasks
from reelflow_common.mongo import mongo_database, ping
from reelflow_common.ops import amqp_ready, ops_app, serve_ops
from reelflow_common.runware import RunwareClient
from reelflow_common.store import ProjectStore
from reelflow_common.topology import CHECK_CLIP, HINTED_CHECK, Topology, declare_topology
from reelflow_poller.handlers import CheckHandler, ClipRecorder, HintHandler
from reelflow_poller.reconciler import Reconciler
from reelflow_poller.service import Policy
from reelflow_poller.settings import Settings

log = get_logger(__name__)


def poll_policy(settings: Settings) -> Policy:
    """How long a clip is followed, as the settings say."""
    return Policy(max_age_s=settings.poll_max_age_s, not_found_grace_s=settings.not_found_grace_s)


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
        hint_channel = await stack.enter_async_context(
            amqp_channel(connection, prefetch=settings.poll_concurrency)
        )
        runware = await stack.enter_async_context(RunwareClient.open(settings))
        topology = Topology.from_settings(settings)
        await declare_topology(channel, topology)
        clock = DbClock(db)
        projects = ProjectStore(db, clock=clock.now, lease_s=settings.lease_s)
        await projects.ensure_indexes()
        publisher = Publisher(channel, topology, timeout_s=settings.publish_timeout_s)
        recorder = ClipRecorder(projects, publisher)
        policy = poll_policy(settings)
        planner = settings.poll_planner()
        checks = CheckHandler(
            recorder,
            runware,
            publisher,
            policy=policy,
            planner=planner,
            clock=clock.now,
            lease_s=settings.lease_s,
        )
        reconciler = Reconciler(
            projects,
            runware,
            publisher,
            recorder,
            policy=policy,
            planner=planner,
            clock=clock.now,
            grace_s=settings.reconcile_grace_s,
            batch_size=settings.reconcile_batch_size,
        )
        ops = ops_app({"rabbitmq": amqp_ready(connection), "mongodb": lambda: ping(db)})
        log.info("poller_started", runware=settings.runware_base_url)
        await asyncio.gather(
            consume(
                channel,
                topology,
                CHECK_CLIP,
                CheckClip,
                checks,
                publisher=publisher,
                concurrency=settings.poll_concurrency,
                stop=stop,
                drain_timeout_s=settings.drain_timeout_s,
            ),
            consume(
                hint_channel,
                topology,
                HINTED_CHECK,
                CheckHintedTasks,
                HintHandler(recorder, runware),
                publisher=publisher,
                concurrency=settings.poll_concurrency,
                stop=stop,
                drain_timeout_s=settings.drain_timeout_s,
            ),
            every(settings.reconcile_interval_s, reconciler.run_once, stop=stop, name="reconcile"),
            clock.run(stop),
            serve_ops(ops, settings.http_host, settings.http_port, stop),
        )
    log.info("poller_stopped")
