"""Runware's 429s respected globally: every submit of every replica pauses, no retry storm.

The simulator answers every ``videoInference`` with 429 here. Ground truth is how
many requests it received, and when.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from reelflow_common.backoff import Backoff
from reelflow_common.polling import FixedLadderPlanner
from reelflow_common.runware import SubmitBatcher
from reelflow_common.store.timefmt import utcnow
from reelflow_common.topology import SUBMIT_CLIP
from reelflow_runware_sim.config import SimConfig
from reelflow_runware_sim.testing import RunningSimulator
from reelflow_submitter import signals
from reelflow_submitter.handlers import SubmitHandler
from reelflow_submitter.lanes import Lanes
from reelflow_submitter.main import main
from reelflow_submitter.settings import Settings
from reelflow_submitter.throttle import RunwareThrottle
from tests.integration.worker_helpers import (
    FAST_LADDERS,
    World,
    running,
    runware_settings,
)
from tests.waiting import DEADLINE_S, eventually

pytestmark = pytest.mark.integration

PAUSE_S = 1.0


@pytest.fixture
def runware_sim_config() -> SimConfig:
    return SimConfig(port=0, speedup=1000.0, seed=1234, rate_429=1.0)


@pytest.fixture
def settings(settings_for: Callable[..., Any], runware_sim: RunningSimulator) -> Settings:
    settings: Settings = settings_for(
        Settings,
        http_host="127.0.0.1",
        http_port=0,
        submit_concurrency=1,
        tenant_submit_concurrency=1,
        submit_max_attempts=1_000,
        rate_limit_initial_delay_s=PAUSE_S,
        rate_limit_max_delay_s=4 * PAUSE_S,
        **FAST_LADDERS,
        **runware_settings(runware_sim),
    )
    return settings


def throttled_handler(
    world: World,
    settings: Settings,
    throttle: RunwareThrottle,
    *,
    shared: SubmitBatcher | None = None,
) -> SubmitHandler:
    return SubmitHandler(
        world.projects,
        world.runware,
        world.publisher,
        settings,
        planner=FixedLadderPlanner.from_settings(settings),
        clock=utcnow,
        rng=random.Random(0),
        throttle=throttle,
        shared=shared,
    )


async def test_a_429_pauses_every_submit_of_every_replica_instead_of_retrying_at_once(
    world: World, settings: Settings, runware_sim: RunningSimulator
) -> None:
    project = await world.new_project(*(f"scene {i}" for i in range(20)))
    for clip in project.clips:
        await world.publisher.send(SUBMIT_CLIP, world.submit_of(project, clip.scene_index))

    stop = asyncio.Event()
    async with running(main(settings, stop=stop), stop), running(main(settings, stop=stop), stop):
        seen: dict[int, float] = {}

        async def requests_reach(n: int) -> bool:
            count = int((await runware_sim.stats())["requests"])
            for reached in range(1, count + 1):
                seen.setdefault(reached, time.monotonic())
            return count >= n

        await eventually(lambda: requests_reach(1), "a first submit", 30)
        # At most one submit per replica was on its way when the first 429 came back.
        await eventually(lambda: requests_reach(3), "submits after the pause", 30)

    # Without the shared pause, each replica would take its next message at once
    # (twenty queued) and Runware would see a burst of submits within milliseconds.
    # The jittered pause is at least 0.8 s; polling the counter costs a little of that.
    assert seen[3] - seen[1] >= 0.6 * PAUSE_S, seen


async def test_a_throttled_replica_tells_the_others_to_pause_until_the_same_moment(
    world: World, settings: Settings
) -> None:
    project = await world.new_project("a fox")
    throttled = RunwareThrottle(Backoff(first_s=PAUSE_S, cap_s=4 * PAUSE_S), utcnow)
    other = RunwareThrottle(Backoff(first_s=PAUSE_S, cap_s=4 * PAUSE_S), utcnow)
    handler = throttled_handler(world, settings, throttled)
    stop = asyncio.Event()
    lanes = Lanes(
        declare_channel=world.channel,
        consume_channel=world.channel,
        topology=world.topology,
        publisher=world.publisher,
        handler=handler,
        tenant_concurrency=1,
        stop=stop,
        drain_timeout_s=1,
    )
    bound = asyncio.Event()
    listener = signals.listen(
        world.channel, world.topology, lanes=lanes, throttle=other, stop=stop, listening=bound
    )
    async with running(listener, stop):
        await asyncio.wait_for(bound.wait(), timeout=10)
        await handler(world.submit_of(project))  # Runware answers 429

        assert throttled.remaining_s() > 0
        await eventually(lambda: other.paused_until is not None, "the other replica told")

    assert other.paused_until == throttled.paused_until


async def test_a_429_for_a_shared_request_pauses_once_however_many_submits_were_in_it(
    world: World, settings: Settings, runware_sim: RunningSimulator
) -> None:
    project = await world.new_project("one", "two", "three")
    throttled = RunwareThrottle(Backoff(first_s=PAUSE_S, cap_s=4 * PAUSE_S), utcnow)
    # Only a full batch goes out before the deadline: the three share one request.
    shared = SubmitBatcher(world.runware, batch_size=3, window_s=3600.0)
    handler = throttled_handler(world, settings, throttled, shared=shared)
    requests_before = int((await runware_sim.stats())["requests"])

    submits = (handler(world.submit_of(project, clip.scene_index)) for clip in project.clips)
    await asyncio.wait_for(asyncio.gather(*submits), DEADLINE_S)
    await shared.aclose()

    assert int((await runware_sim.stats())["requests"]) - requests_before == 1
    # One step of the backoff (at most PAUSE_S), not one per submit (4 x PAUSE_S, its cap).
    assert 0 < throttled.remaining_s() <= PAUSE_S
