"""The submitter's composition root."""

from __future__ import annotations

import asyncio
import socket
from contextlib import AsyncExitStack

from pymongo.errors import PyMongoError

from reelflow_common.backoff import Backoff
from reelflow_common.broker import Publisher, consume
from reelflow_common.broker.dlq import DEPTH_INTERVAL_S, report_dead_letter_depths
from reelflow_common.lifecycle import Stopped, every, shutdown_event
from reelflow_common.logging import configure_logging, get_logger
from reelflow_common.messages import SubmitClip
from reelflow_common.polling import shared_planner
from reelflow_common.polling.delivery import CheckBundles
from reelflow_common.runware import RunwareClient, SubmitBatcher
from reelflow_common.store import ApiKeyStore, ProjectStore
from reelflow_common.topology import CHECK_CLIP, SUBMIT_CLIP
from reelflow_common.tracing import configure_tracing
from reelflow_common.worker import worker_linked, worker_serving
from reelflow_submitter import signals
from reelflow_submitter.handlers import SubmitHandler
from reelflow_submitter.lanes import LANE_DEPTH_INTERVAL_S, FairGate, Lanes, LaneSorter
from reelflow_submitter.settings import Settings
from reelflow_submitter.throttle import RunwareThrottle

log = get_logger(__name__)


async def main(
    settings: Settings | None = None,
    *,
    stop: asyncio.Event | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Submit clips until SIGTERM; wait for RabbitMQ and MongoDB first, however long.

    ``sock``, an already bound socket, serves the operations endpoints instead
    of ``http_host``/``http_port`` (tests bind port 0 to get a free one).
    """
    settings = settings or Settings()
    configure_logging(settings, service="submitter")
    configure_tracing(settings, service="submitter")
    stop = stop or shutdown_event()
    async with AsyncExitStack() as stack:
        serving = await stack.enter_async_context(worker_serving(settings, sock=sock))
        db, clock, topology = serving.db, serving.clock, serving.topology
        projects = ProjectStore(db, clock=clock.now, lease_s=settings.lease_s)
        # The first check's delay, from the pollers' shared completion counts (read only:
        # the submitter sees no completions; the pollers build the index it reads by).
        planning = shared_planner(db, settings, topology.backoffs[CHECK_CLIP])
        try:
            linked = await stack.enter_async_context(
                worker_linked(
                    serving,
                    settings,
                    name="submitter",
                    stop=stop,
                    indexes=[projects.ensure_indexes],
                    # The sorter's, the lanes', the signals' (consume() sets the prefetch
                    # of the channel it is given: one per kind of consumer).
                    prefetches=[settings.sort_concurrency, settings.tenant_submit_concurrency, 0],
                )
            )
        except Stopped as stopped:
            log.info("submitter_stopped_while_waiting", dependency=str(stopped))
            return
        connection = linked.connection
        channel, lane_channel, signal_channel = linked.channels
        runware = await stack.enter_async_context(RunwareClient.open(settings))
        shared = SubmitBatcher(
            runware,
            batch_size=settings.submit_batch_size,
            window_s=settings.submit_batch_window_s,
            quiet_s=settings.submit_batch_quiet_s,
        )
        stack.push_async_callback(shared.aclose)
        publisher = Publisher(channel, topology, timeout_s=settings.publish_timeout_s)
        throttle = RunwareThrottle(
            Backoff(
                first_s=settings.rate_limit_initial_delay_s,
                cap_s=settings.rate_limit_max_delay_s,
                jitter=0.2,
            ),
            clock.now,
        )
        handler = SubmitHandler(
            projects,
            runware,
            publisher,
            settings,
            planner=planning.planner,
            clock=clock.now,
            throttle=throttle,
            shared=shared,
            bundles=CheckBundles(publisher) if settings.poll_checks_together else None,
        )
        await planning.stats.refresh()  # the first checks planned from the shared counts
        lanes = Lanes(
            declare_channel=channel,
            consume_channel=lane_channel,
            topology=topology,
            publisher=publisher,
            handler=FairGate(handler, settings.submit_concurrency),
            tenant_concurrency=settings.tenant_submit_concurrency,
            stop=stop,
            drain_timeout_s=settings.drain_timeout_s,
        )
        await _open_known_lanes(lanes, ApiKeyStore(db))
        log.info("submitter_started", runware=settings.runware_base_url)
        await asyncio.gather(
            consume(
                channel,
                topology,
                SUBMIT_CLIP,
                SubmitClip,
                LaneSorter(lanes, publisher),
                publisher=publisher,
                concurrency=settings.sort_concurrency,
                stop=stop,
                drain_timeout_s=settings.drain_timeout_s,
            ),
            lanes.run(),
            signals.listen(signal_channel, topology, lanes=lanes, throttle=throttle, stop=stop),
            every(
                settings.lane_announce_interval_s,
                lanes.announce_all,
                stop=stop,
                name="lane_announcements",
            ),
            every(
                DEPTH_INTERVAL_S,
                lambda: report_dead_letter_depths(connection, topology, [SUBMIT_CLIP]),
                stop=stop,
                name="dead_letter_depths",
            ),
            every(
                LANE_DEPTH_INTERVAL_S,
                lambda: lanes.report_depths(connection),
                stop=stop,
                name="lane_depths",
            ),
            planning.stats.run(stop, settings.poll_stats_interval_s),
        )
    log.info("submitter_stopped")


async def _open_known_lanes(lanes: Lanes, tenants: ApiKeyStore) -> None:
    """The lanes of every tenant there is: after a restart of every replica, none is orphaned."""
    try:
        known = await tenants.list_tenants()
    except PyMongoError as exc:
        # The periodic announcements of other replicas, and new messages, open them later.
        log.warning("tenants_not_listed", error=repr(exc))
        return
    for tenant in known:
        await lanes.open(tenant.tenant_id, announce=False)
