"""Polling that learns, as the services run it: against RabbitMQ, MongoDB and the simulator.

The submitter's and the poller's mains plan every check with the learned planner,
whose completion counts they share through ``poll_stats``. The simulator runs
1000 times faster than Runware, so a ``[sim:latency=3000]`` clip takes 3 real
seconds; the checks' wait-queue ladder here is 0.1 s x1.5 up to 5 s.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from reelflow_common.broker import amqp_channel
from reelflow_common.domain import ClipStatus
from reelflow_common.messages import CheckClip, ClipUpdated
from reelflow_common.polling import (
    ClipProfile,
    CompletionBook,
    LearnedPlanner,
    OnLadder,
    profile_key,
    shared_planner,
)
from reelflow_common.polling.histogram import bucket_of
from reelflow_common.polling.stats import COLLECTION, PollStats
from reelflow_common.store import Project, ProjectStore
from reelflow_common.store.timefmt import utcnow
from reelflow_common.topology import CHECK_CLIP, SUBMIT_CLIP, Topology
from reelflow_common.tracking.policy import Policy
from reelflow_common.tracking.recorder import ClipRecorder
from reelflow_poller.handlers import CheckHandler
from reelflow_poller.main import main as poller_main
from reelflow_poller.settings import Settings as PollerSettings
from reelflow_runware_sim.testing import RunningSimulator
from reelflow_submitter.handlers import SubmitHandler
from reelflow_submitter.main import main as submitter_main
from reelflow_submitter.settings import Settings as SubmitterSettings
from tests.integration.worker_helpers import World, open_world, running, runware_settings
from tests.waiting import eventually, eventually_returns

pytestmark = pytest.mark.integration

LEASE_S = 600.0
VEO = ClipProfile("google:3@3", duration=4, width=1280, height=720)
#: 3 real seconds at the simulator's speedup of 1000
THREE_SECONDS = "[sim:latency=3000]"

#: the checks' wait queues (0.1 s x1.5 up to 5 s), and the planner's targets at this scale
LIVE_POLLING: dict[str, Any] = {
    "poll_initial_delay_s": 0.1,
    "poll_backoff": 1.5,
    "poll_max_delay_s": 5.0,
    "retry_initial_delay_s": 0.05,
    "retry_max_delay_s": 0.2,
    "poll_max_interval_s": 1.0,
    "poll_delay_target_s": 0.5,
    "poll_webhook_interval_s": 4.0,
    "poll_stats_interval_s": 0.2,
    "lease_s": LEASE_S,
    "http_host": "127.0.0.1",
    "http_port": 0,
}


@pytest.fixture
def live(settings_for: Callable[..., Any], runware_sim: RunningSimulator) -> Callable[..., Any]:
    """Settings of a service class, pointed at this test's broker, database and simulator."""
    return lambda cls: settings_for(cls, **LIVE_POLLING, **runware_settings(runware_sim))


@pytest.fixture
def poller_settings(live: Callable[..., PollerSettings]) -> PollerSettings:
    return live(PollerSettings)


@pytest.fixture
def submitter_settings(live: Callable[..., SubmitterSettings]) -> SubmitterSettings:
    return live(SubmitterSettings)


@pytest.fixture
async def world(
    amqp_connection: AbstractRobustConnection,
    mongo_db: Any,
    poller_settings: PollerSettings,
    runware_sim: RunningSimulator,
) -> AsyncIterator[World]:
    store = ProjectStore(mongo_db, lease_s=LEASE_S)
    await store.ensure_indexes()
    async with open_world(amqp_connection, poller_settings, store, runware_sim) as world:
        yield world


@asynccontextmanager
async def mains(
    world: World, *services: tuple[Callable[..., Awaitable[None]], Any]
) -> AsyncIterator[None]:
    """Each service's main running with its settings until the block ends (then stopped).

    The block starts once every main consumes its work queue: none is still starting
    when a message it should take comes due.
    """
    async with AsyncExitStack() as running_mains:
        for main, settings in services:
            stop = asyncio.Event()
            await running_mains.enter_async_context(running(main(settings, stop=stop), stop))
        work_queues = {SUBMIT_CLIP: 0, CHECK_CLIP: 0}
        for main, _ in services:
            work_queues[SUBMIT_CLIP if main is submitter_main else CHECK_CLIP] += 1

        async def consumed() -> bool:
            for work_queue, wanted in work_queues.items():
                async with amqp_channel(world.connection) as channel:
                    queue = await channel.declare_queue(
                        world.topology.queue(work_queue), passive=True
                    )
                if (queue.declaration_result.consumer_count or 0) < wanted:
                    return False
            return True

        await eventually(consumed, "every main consuming")
        yield


async def learned(db: Any, settings: PollerSettings) -> float:
    """Where a planner that has just read ``poll_stats`` puts a clip's first check."""
    planning = shared_planner(db, settings, Topology.from_settings(settings).backoffs[CHECK_CLIP])
    await planning.stats.load()
    return planning.planner.first_check_s(VEO)


def cold(db: Any, settings: PollerSettings) -> float:
    """Where a planner that knows nothing yet (the prior) puts it."""
    planning = shared_planner(db, settings, Topology.from_settings(settings).backoffs[CHECK_CLIP])
    return planning.planner.first_check_s(VEO)  # never loaded


async def first_poll_s(sim: RunningSimulator, task_uuid: str) -> float:
    """Seconds from Runware's acceptance of the task to the first getResponse about it."""

    async def polled() -> float | None:
        task = sim.state.tasks.get(task_uuid)
        if task is None or task.polls == 0:
            return None
        return sim.state.clock() - task.submitted_at

    return await eventually_returns(polled, f"a first getResponse for {task_uuid}", timeout_s=15)


async def succeeded(world: World, project: Project) -> None:
    async def done() -> bool:
        clips = (await world.project(project.id)).clips
        return all(clip.status is ClipStatus.SUCCESS for clip in clips)

    await eventually(done, "every clip succeeded", timeout_s=15)


async def seen_finishing_in_about_three_seconds(db: Any) -> None:
    """Earlier runs saw 200 clips of the profile finish 2.8 to 3.4 s after submission."""
    earlier = PollStats(db, CompletionBook())
    rng = random.Random(3)
    for _ in range(200):
        earlier.observe(VEO, elapsed_s=rng.uniform(2.8, 3.4))
    await earlier.flush()


async def stats_total(db: Any) -> float:
    return float(sum([doc["n"] async for doc in db[COLLECTION].find({"key": profile_key(VEO)})]))


async def test_the_first_check_lands_at_the_earliest_plausible_finish_learned_from_poll_stats(
    world: World,
    mongo_db: Any,
    poller_settings: PollerSettings,
    submitter_settings: SubmitterSettings,
) -> None:
    await seen_finishing_in_about_three_seconds(mongo_db)
    expected = await learned(mongo_db, poller_settings)
    assert 2.0 <= expected <= 3.4  # the learned earliest finish, on the ladder
    # The prior alone would check elsewhere.
    assert abs(expected - cold(mongo_db, poller_settings)) > 1.0
    project = await world.new_project(f"a fox {THREE_SECONDS}")
    task_uuid = project.clips[0].task_uuid

    async with mains(world, (submitter_main, submitter_settings), (poller_main, poller_settings)):
        await world.publisher.send(SUBMIT_CLIP, world.submit_of(project))

        first = await first_poll_s(world.sim, task_uuid)
        await succeeded(world, project)

    assert expected - 0.2 <= first <= expected + 0.8  # a loaded machine delivers late
    # Seen finished at the first or second check: the progress at the first one says when.
    assert (await world.sim.task(task_uuid))["polls"] <= 2


async def test_what_two_pollers_learn_is_shared_through_mongodb_and_survives_a_restart(
    world: World,
    mongo_db: Any,
    poller_settings: PollerSettings,
    submitter_settings: SubmitterSettings,
) -> None:
    assert await learned(mongo_db, poller_settings) == cold(mongo_db, poller_settings)
    project = await world.processing(
        await world.new_project(*(f"scene {i} {THREE_SECONDS}" for i in range(4)))
    )

    async with mains(
        world, (poller_main, poller_settings), (poller_main, poller_settings)
    ):  # 2 replicas
        for clip in project.clips:
            await world.publisher.send(CHECK_CLIP, await world.check_of(project, clip.scene_index))
        await succeeded(world, project)
    # Both stopped: each wrote what it had counted. Every success counted once, whoever saw it.
    assert await stats_total(mongo_db) == pytest.approx(4.0)
    expected = await learned(mongo_db, poller_settings)
    assert 1.5 <= expected <= 4.0
    assert abs(expected - cold(mongo_db, poller_settings)) > 1.0

    # A fresh submitter and poller (a restart) plan from what the others learned.
    second = await world.new_project(f"one more {THREE_SECONDS}")
    async with mains(world, (submitter_main, submitter_settings), (poller_main, poller_settings)):
        await world.publisher.send(SUBMIT_CLIP, world.submit_of(second))
        first = await first_poll_s(world.sim, second.clips[0].task_uuid)
        await succeeded(world, second)

    assert expected - 0.2 <= first <= expected + 0.8
    assert await stats_total(mongo_db) == pytest.approx(5.0)


async def test_a_redelivered_check_of_a_success_counts_the_completion_once(
    world: World, mongo_db: Any, poller_settings: PollerSettings
) -> None:
    project = await world.processing(await world.new_project("a fox [sim:latency=0]"))
    task_uuid = project.clips[0].task_uuid
    await world.until_finished_at_runware(task_uuid)
    events = await world.events()
    check = await world.check_of(project, age_s=30.0)

    stop = asyncio.Event()
    async with running(poller_main(poller_settings, stop=stop), stop):
        for _ in range(3):  # the same message, delivered three times
            await world.publisher.send(CHECK_CLIP, check)

        async def announced_thrice() -> bool:
            # The first delivery records the success, each later one re-publishes it.
            seen = [
                event
                for event in await world.settle_events(events)
                if isinstance(event, ClipUpdated) and event.clip.status is ClipStatus.SUCCESS
            ]
            announced.extend(seen)
            return len(announced) >= 3

        announced: list[ClipUpdated] = []
        await eventually(announced_thrice, "three deliveries handled")

    assert (await world.sim.task(task_uuid))["polls"] == 3
    assert await stats_total(mongo_db) == pytest.approx(1.0)


@pytest.mark.parametrize(("batch_size", "most_requests"), [(1, 6), (10, 2)])
async def test_with_batching_on_checks_due_together_share_http_requests(
    world: World,
    settings_for: Callable[..., Any],
    poller_settings: PollerSettings,
    batch_size: int,
    most_requests: int,
) -> None:
    settings = poller_settings.model_copy(
        update={"runware_poll_batch_size": batch_size, "poll_batch_window_s": 0.3}
    )
    project = await world.processing(
        await world.new_project(*(f"scene {i} [sim:latency=0]" for i in range(6)))
    )
    await world.until_finished_at_runware(*(clip.task_uuid for clip in project.clips))
    before = await world.sim.stats()

    stop = asyncio.Event()
    async with running(poller_main(settings, stop=stop), stop):
        for clip in project.clips:
            await world.publisher.send(
                CHECK_CLIP, await world.check_of(project, clip.scene_index, age_s=30.0)
            )
        await succeeded(world, project)
    after = await world.sim.stats()

    checks = after["task_types"]["getResponse"] - before["task_types"].get("getResponse", 0)
    requests = after["requests"] - before["requests"]
    assert checks == 6
    assert requests <= most_requests
    if batch_size == 1:
        assert requests == checks


async def test_with_webhooks_polling_is_a_slow_safety_net(
    world: World, mongo_db: Any, poller_settings: PollerSettings
) -> None:
    await seen_finishing_in_about_three_seconds(mongo_db)
    planning = shared_planner(mongo_db, poller_settings, world.topology.backoffs[CHECK_CLIP])
    await planning.stats.load()
    project = await world.new_project(f"a fox {THREE_SECONDS}")
    submit = world.submit_of(project)
    hooked_settings = SubmitterSettings(
        **runware_settings(world.sim),
        **LIVE_POLLING,
        public_base_url="https://reelflow.example.com",
        webhook_secret=SecretStr("s3cret"),
    )
    submitter = SubmitHandler(
        world.projects,
        world.runware,
        world.publisher,
        hooked_settings,
        planner=planning.planner,
        clock=utcnow,
    )
    poller = CheckHandler(
        ClipRecorder(world.projects, world.publisher),
        world.runware,
        world.publisher,
        policy=Policy.from_settings(poller_settings),
        planner=planning.planner,
        clock=utcnow,
        lease_s=LEASE_S,
    )

    await submitter(submit)
    [first] = world.publisher.sent
    check = first.message
    assert isinstance(check, CheckClip)
    assert check.webhooks
    # As it comes when due: that long after the submission.
    assert first.wait_s is not None
    earlier = timedelta(seconds=first.wait_s)
    check = check.model_copy(
        update={
            "due_at": None,
            "submitted_at": check.submitted_at - earlier,
            "watched_since": check.watched_since - earlier,
        }
    )
    await poller(check)  # still processing: the next check is the safety net's
    hooked = world.publisher.sent[-1]
    await poller(check.model_copy(update={"webhooks": False}))
    polled = world.publisher.sent[-1]

    # The first check: past nearly every finish seen (the 99 % quantile), not at the
    # earliest plausible one (where polling alone checks first).
    assert first.wait_s is not None
    assert first.wait_s >= 3.4
    seen = planning.planner.book.distribution(VEO)
    assert first.wait_s >= seen.quantile(poller_settings.poll_webhook_quantile) - 0.2
    assert seen.quantile(poller_settings.poll_first_quantile) < first.wait_s / 1.2
    # The checks after it: every poll_webhook_interval_s, not every poll_max_interval_s.
    assert hooked.wait_s is not None
    assert polled.wait_s is not None
    assert hooked.wait_s >= poller_settings.poll_webhook_interval_s - 0.1
    assert polled.wait_s <= poller_settings.poll_max_interval_s


async def test_a_success_is_learned_between_the_last_check_that_saw_it_running_and_this_one(
    world: World, poller_settings: PollerSettings
) -> None:
    book = CompletionBook()
    planner = OnLadder(LearnedPlanner(book), world.topology.backoffs[CHECK_CLIP], bound_s=1.0)
    check = CheckHandler(
        ClipRecorder(world.projects, world.publisher),
        world.runware,
        world.publisher,
        policy=Policy.from_settings(poller_settings),
        planner=planner,
        clock=utcnow,
        lease_s=LEASE_S,
    )
    project = await world.processing(await world.new_project(f"a fox {THREE_SECONDS}"))
    first = await world.check_of(project, age_s=2.0)  # as if submitted 2 s earlier

    await check(first)  # still running
    [following] = world.publisher.sent_to(CHECK_CLIP)
    assert following.seen_processing_at is not None
    seen_s = (following.seen_processing_at - following.submitted_at).total_seconds()
    assert 2.0 <= seen_s < 3.0
    assert following.seen_progress is not None
    assert 0 <= following.seen_progress < 99
    assert book.take_pending() == {}  # nothing finished yet
    await world.until_finished_at_runware(project.clips[0].task_uuid)
    await check(following)  # done: learned once, after the check that saw it running

    [counted] = book.take_pending().values()
    assert counted.total == pytest.approx(1.0)
    assert min(counted.counts) >= bucket_of(seen_s)


def ticking() -> Callable[[], datetime]:
    """The database's clock, a millisecond further on at each reading (as on a busy machine)."""
    readings = itertools.count()
    return lambda: utcnow() + timedelta(milliseconds=next(readings))


async def test_a_check_that_comes_before_it_is_due_is_sent_on_without_asking_runware(
    world: World, poller_settings: PollerSettings
) -> None:
    poller = CheckHandler(
        ClipRecorder(world.projects, world.publisher),
        world.runware,
        world.publisher,
        policy=Policy.from_settings(poller_settings),
        planner=LearnedPlanner(CompletionBook()),
        clock=ticking(),  # its due time must not move with the clock's readings
        lease_s=LEASE_S,
    )
    project = await world.processing(await world.new_project(f"a fox {THREE_SECONDS}"))
    due_at = utcnow() + timedelta(seconds=2.0)
    early = (await world.check_of(project)).model_copy(update={"due_at": due_at})

    await poller(early)

    [hop] = world.publisher.sent
    assert isinstance(hop.message, CheckClip)
    assert hop.message.due_at == due_at
    assert hop.delay_s is not None
    assert 1.0 <= hop.delay_s <= 2.0  # the longest rung not above the rest (1.709 s)
    task = await world.sim.task(project.clips[0].task_uuid)
    assert (task["polls"], task["first_polled_seconds"]) == (0, None)
