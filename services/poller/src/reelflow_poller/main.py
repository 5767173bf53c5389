"""The poller's composition root."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable
from contextlib import AsyncExitStack

from pymongo.errors import PyMongoError

from reelflow_common.accounting import CostBook, CostStats
from reelflow_common.broker import Publisher, amqp_channel, consume
from reelflow_common.broker.dlq import DEPTH_INTERVAL_S, report_dead_letter_depths
from reelflow_common.lifecycle import Stopped, every, shutdown_event
from reelflow_common.logging import configure_logging, get_logger
from reelflow_common.messages import CheckClip, CheckClips, CheckHintedTasks, StoreVideo
from reelflow_common.polling import shared_planner
from reelflow_common.polling.delivery import CheckBundles
from reelflow_common.runware import GetResponseBatcher, RunwareClient, TaskChecker
from reelflow_common.storage import VideoCopier, VideoLinks, open_storage
from reelflow_common.store import ProjectStore
from reelflow_common.topology import CHECK_CLIP, HINTED_CHECK, STORE_VIDEO
from reelflow_common.tracing import configure_tracing
from reelflow_common.tracking.attempts import AttemptsReconciler
from reelflow_common.tracking.copysweep import CopySweep
from reelflow_common.tracking.policy import Policy
from reelflow_common.tracking.reconciler import Reconciler
from reelflow_common.tracking.recorder import ClipRecorder
from reelflow_common.tracking.settlesweep import SettleSweep
from reelflow_common.worker import worker_linked, worker_serving
from reelflow_poller.copies import StoreHandler
from reelflow_poller.handlers import CheckHandler, HintHandler
from reelflow_poller.settings import Settings

log = get_logger(__name__)


async def main(
    settings: Settings | None = None,
    *,
    stop: asyncio.Event | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Track Runware tasks until SIGTERM; wait for RabbitMQ and MongoDB first, however long.

    ``sock``, an already bound socket, serves the operations endpoints instead
    of ``http_host``/``http_port`` (tests bind port 0 to get a free one).
    """
    settings = settings or Settings()
    configure_logging(settings, service="poller")
    configure_tracing(settings, service="poller")
    stop = stop or shutdown_event()
    async with AsyncExitStack() as stack:
        serving = await stack.enter_async_context(worker_serving(settings, sock=sock))
        db, clock, topology = serving.db, serving.clock, serving.topology
        links = VideoLinks.from_settings(settings, clock=clock.now)
        # With the links: a late result's clip.updated shows the copies a read shows.
        projects = ProjectStore(db, clock=clock.now, lease_s=settings.lease_s, links=links)
        planning = shared_planner(db, settings, topology.backoffs[CHECK_CLIP])
        try:
            linked = await stack.enter_async_context(
                worker_linked(
                    serving,
                    settings,
                    name="poller",
                    stop=stop,
                    indexes=[projects.ensure_indexes, planning.stats.ensure_indexes],
                    # The checks', then the hints' (consume() sets the prefetch of the
                    # channel it is given: one channel per consumer).
                    prefetches=[settings.poll_concurrency, settings.poll_concurrency],
                )
            )
        except Stopped as stopped:
            log.info("poller_stopped_while_waiting", dependency=str(stopped))
            return
        connection = linked.connection
        channel, hint_channel = linked.channels
        runware = await stack.enter_async_context(RunwareClient.open(settings))
        checker: TaskChecker = runware
        if settings.runware_poll_batch_size > 1:
            batcher = GetResponseBatcher(
                runware,
                batch_size=settings.runware_poll_batch_size,
                window_s=settings.poll_batch_window_s,
            )
            stack.push_async_callback(batcher.aclose)
            checker = batcher
            if settings.poll_concurrency < settings.runware_poll_batch_size:
                log.warning(
                    "poll_batches_never_full",
                    poll_concurrency=settings.poll_concurrency,
                    runware_poll_batch_size=settings.runware_poll_batch_size,
                )
        publisher = Publisher(channel, topology, timeout_s=settings.publish_timeout_s)
        storage = await stack.enter_async_context(open_storage(settings))
        recorder = ClipRecorder(projects, publisher, copies=storage is not None)
        policy = Policy.from_settings(settings)
        planner = planning.planner
        costs = CostStats(db, CostBook())
        checks = CheckHandler(
            recorder,
            checker,
            publisher,
            policy=policy,
            planner=planner,
            clock=clock.now,
            lease_s=settings.lease_s,
            progress_step=settings.progress_step,
            costs=costs.book,
            concurrency=settings.poll_concurrency,
            bundles=CheckBundles(publisher) if settings.poll_checks_together else None,
        )
        # Two passes on the same terms: open clips (``due_at``), and replaced tasks still
        # followed (``attempts_due_at``), whatever their project's status.
        reconciler, attempts = (
            kind(
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
            for kind in (Reconciler, AttemptsReconciler)
        )
        # Settlements those passes (and the api's cancels) marked owed: made if lost.
        settlements = SettleSweep(
            projects,
            clock=clock.now,
            after_s=settings.reconcile_grace_s,
            batch_size=settings.reconcile_batch_size,
        )
        copying: list[Awaitable[None]] = []
        if storage is not None and links is not None:
            copier = await stack.enter_async_context(
                VideoCopier(
                    storage,
                    max_bytes=settings.video_max_bytes,
                    timeout_s=settings.copy_timeout_s,
                    gone_retries=settings.copy_gone_retries,
                    allowed_hosts=settings.video_copy_allowed_hosts,
                    internal_hosts=settings.video_copy_internal_hosts,
                    allow_http=settings.video_copy_allow_http,
                )
            )
            store_channel = await stack.enter_async_context(
                amqp_channel(connection, prefetch=settings.copy_concurrency)
            )
            copies = StoreHandler(
                projects,
                copier,
                publisher,
                links,
                backoff=topology.backoffs[STORE_VIDEO],
                max_attempts=settings.copy_max_attempts,
            )
            sweep = CopySweep(
                projects,
                publisher,
                clock=clock.now,
                after_s=settings.copy_sweep_after_s,
                batch_size=settings.reconcile_batch_size,
            )
            copying.append(
                every(settings.reconcile_interval_s, sweep.run_once, stop=stop, name="copy_sweep")
            )
            copying.append(
                consume(
                    store_channel,
                    topology,
                    STORE_VIDEO,
                    StoreVideo,
                    copies,
                    publisher=publisher,
                    concurrency=settings.copy_concurrency,
                    stop=stop,
                    drain_timeout_s=settings.drain_timeout_s,
                )
            )
        log.info(
            "poller_started", runware=settings.runware_base_url, storage=settings.storage_backend
        )
        # Completion counts: read before the first check, then written and re-read every
        # interval, and written a last time once the consumers have drained.
        await planning.stats.refresh()
        drained = asyncio.Event()
        stats = asyncio.create_task(planning.stats.run(drained, settings.poll_stats_interval_s))
        try:
            await asyncio.gather(
                *copying,
                consume(
                    channel,
                    topology,
                    CHECK_CLIP,
                    (CheckClip, CheckClips),
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
                    HintHandler(recorder, runware, planner=planner, costs=costs.book),
                    publisher=publisher,
                    concurrency=settings.poll_concurrency,
                    stop=stop,
                    drain_timeout_s=settings.drain_timeout_s,
                ),
                every(
                    settings.reconcile_interval_s, reconciler.run_once, stop=stop, name="reconcile"
                ),
                every(
                    settings.reconcile_interval_s,
                    attempts.run_once,
                    stop=stop,
                    name="reconcile_attempts",
                ),
                every(
                    settings.reconcile_interval_s,
                    settlements.run_once,
                    stop=stop,
                    name="settle_sweep",
                ),
                every(settings.cost_stats_interval_s, costs.flush, stop=stop, name="cost_stats"),
                every(
                    DEPTH_INTERVAL_S,
                    lambda: report_dead_letter_depths(
                        connection, topology, [CHECK_CLIP, HINTED_CHECK, STORE_VIDEO]
                    ),
                    stop=stop,
                    name="dead_letter_depths",
                ),
            )
        finally:
            drained.set()
            await last_flushes(stats, costs)
    log.info("poller_stopped")


async def last_flushes(stats: Awaitable[None], costs: CostStats) -> None:
    """The completion counts' last write (``stats``, once drained) and the cost statistics'
    side by side: with MongoDB down at a stop, each waits out one server selection, and one
    after the other they took 20 s of the stop's 30 (a run of ``make chaos`` overran it
    with a sweep's failing run before them)."""

    async def flush_costs() -> None:
        try:
            await costs.flush()  # what this replica saw since the last flush
        except PyMongoError as exc:
            log.warning("cost_stats_not_flushed", error=repr(exc))

    # Both to their end, whatever one of them raises, then what it raised.
    for outcome in await asyncio.gather(stats, flush_costs(), return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome
