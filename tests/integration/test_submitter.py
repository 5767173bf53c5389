"""The submitter against a real RabbitMQ, MongoDB and the Runware simulator.

Ground truth comes from the simulator (how often a task UUID was submitted,
whether it is billed), not from what the submitter says about itself.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from aio_pika.abc import AbstractRobustConnection
from prometheus_client import REGISTRY
from pydantic import SecretStr

from reelflow_common.domain import ClipStatus, ProjectStatus
from reelflow_common.errors import InvalidMessage
from reelflow_common.messages import CheckClip, ClipUpdated, SubmitClip
from reelflow_common.store import NewClip, NewProject, Project, ProjectStore
from reelflow_common.topology import CHECK_CLIP, SUBMIT_CLIP
from reelflow_runware_sim.config import SimConfig
from reelflow_runware_sim.testing import RunningSimulator
from reelflow_submitter.handlers import SubmitHandler
from reelflow_submitter.main import main
from reelflow_submitter.service import video_request
from reelflow_submitter.settings import Settings
from reelflow_submitter.sweeper import sweep_undispatched
from tests.integration.worker_helpers import (
    FAST_LADDERS,
    TcpProxy,
    World,
    died_in,
    eventually,
    open_world,
    running,
    runware_settings,
)

pytestmark = pytest.mark.integration

MAX_ATTEMPTS = 4


@pytest.fixture
def settings(settings_for: Callable[..., Any], runware_sim: RunningSimulator) -> Settings:
    settings: Settings = settings_for(
        Settings,
        http_host="127.0.0.1",
        http_port=0,
        submit_max_attempts=MAX_ATTEMPTS,
        **FAST_LADDERS,
        **runware_settings(runware_sim),
    )
    return settings


@pytest.fixture
async def world(
    amqp_connection: AbstractRobustConnection,
    mongo_db: Any,
    settings: Settings,
    runware_sim: RunningSimulator,
) -> AsyncIterator[World]:
    async with open_world(amqp_connection, settings, ProjectStore(mongo_db), runware_sim) as world:
        yield world


def submit_handler(world: World, settings: Settings) -> SubmitHandler:
    return SubmitHandler(
        world.projects, world.runware, world.publisher, settings, rng=random.Random(0)
    )


@pytest.fixture
def handler(world: World, settings: Settings) -> SubmitHandler:
    return submit_handler(world, settings)


def submit_of(project: Project, index: int = 0) -> SubmitClip:
    return SubmitClip(
        project_id=project.id, task_uuid=project.clips[index].task_uuid, correlation_id="req-1"
    )


async def test_queued_clip_is_submitted_once_then_processing_and_polled(
    world: World, handler: SubmitHandler, settings: Settings
) -> None:
    project = await world.new_project("a fox in the snow")
    task_uuid = project.clips[0].task_uuid
    events = await world.events()
    checks = await world.inbox(CHECK_CLIP)

    await handler(submit_of(project))

    clip = (await world.project(project.id)).clips[0]
    assert clip.status is ClipStatus.PROCESSING
    assert clip.submitted_at is not None
    [event] = await world.settle_events(events)
    assert isinstance(event, ClipUpdated)
    assert (event.seq, event.clip.status, event.task_uuid) == (1, ClipStatus.PROCESSING, task_uuid)
    assert event.counts.pending == 1
    check, raw = await checks.next_of(CheckClip)
    assert (check.project_id, check.task_uuid, check.attempt) == (project.id, task_uuid, 1)
    assert check.correlation_id == "req-1"
    assert abs(check.submitted_at - clip.submitted_at) < timedelta(milliseconds=2)
    # It came through the poll ladder's first rung, not straight to the work queue.
    first_rung = world.topology.wait_queue_for(CHECK_CLIP, settings.poll_initial_delay_s)
    assert died_in(raw) == first_rung
    truth = await world.sim.task(task_uuid)
    assert (truth["accepted"], truth["submissions"], truth["billed"]) == (True, 1, True)


async def test_lost_answer_is_retried_and_the_retry_finds_the_task_already_there(
    world: World, handler: SubmitHandler
) -> None:
    project = await world.new_project("a fox [sim:drop]")
    task_uuid = project.clips[0].task_uuid
    retries = await world.inbox(SUBMIT_CLIP)

    first = submit_of(project)
    await handler(first)

    # The answer was lost: the clip still reads as queued, and a retry is on its way.
    assert (await world.project(project.id)).clips[0].status is ClipStatus.SUBMITTING
    retry, raw = await retries.next_of(SubmitClip)
    assert (retry.task_uuid, retry.attempt, retry.correlation_id) == (task_uuid, 2, "req-1")
    assert retry.message_id != first.message_id
    assert (died_in(raw) or "").startswith(world.topology.queue(f"{SUBMIT_CLIP}.wait."))

    await handler(retry)

    assert (await world.project(project.id)).clips[0].status is ClipStatus.PROCESSING
    truth = await world.sim.task(task_uuid)
    assert (truth["submissions"], truth["dropped_answers"], truth["billed"]) == (2, 1, True)
    assert (await world.sim.stats())["tasks"] == 1


async def test_redelivery_after_a_crash_between_runware_and_the_database_bills_once(
    world: World, handler: SubmitHandler
) -> None:
    project = await world.new_project("a fox")
    clip = project.clips[0]
    # The crashed submitter got this far: Runware accepted the task, nothing was written.
    await world.runware.submit_video(video_request(clip, webhook_url=None))

    await handler(submit_of(project))

    assert (await world.project(project.id)).clips[0].status is ClipStatus.PROCESSING
    assert [m.task_uuid for m in world.publisher.sent_to(CHECK_CLIP)] == [clip.task_uuid]
    assert world.publisher.sent_to(SUBMIT_CLIP) == []
    truth = await world.sim.task(clip.task_uuid)
    assert (truth["submissions"], truth["billed"]) == (2, True)
    assert (await world.sim.stats())["tasks"] == 1


async def test_when_every_answer_is_lost_a_task_runware_has_is_tracked_not_failed(
    world: World, settings: Settings
) -> None:
    one_try = settings.model_copy(update={"submit_max_attempts": 1})
    project = await world.new_project("a fox [sim:drop]")

    await submit_handler(world, one_try)(submit_of(project))

    assert (await world.project(project.id)).clips[0].status is ClipStatus.PROCESSING
    assert len(world.publisher.sent_to(CHECK_CLIP)) == 1


@pytest.mark.parametrize(
    "runware_sim_config", [SimConfig(port=0, speedup=1000, seed=1234, rate_503=1.0)]
)
async def test_a_clip_outlives_a_runware_outage_longer_than_its_attempts(
    world: World, handler: SubmitHandler
) -> None:
    project = await world.new_project("a fox")
    task_uuid = project.clips[0].task_uuid
    events = await world.events()
    seen: list[int] = []

    async def recording(message: SubmitClip) -> None:
        seen.append(message.attempt)
        await handler(message)

    async def status() -> ClipStatus:
        return (await world.project(project.id)).clips[0].status

    async with world.consuming(SUBMIT_CLIP, SubmitClip, recording):
        await world.publisher.send(SUBMIT_CLIP, submit_of(project))
        # Past the last attempt Runware still cannot say whether it holds the task,
        # so the clip is not failed: the last attempt comes back until it can.
        await eventually(lambda: seen.count(MAX_ATTEMPTS) >= 2, "the last attempt retried")
        assert await status() is ClipStatus.SUBMITTING
        world.sim.simulator.config = world.sim.config.model_copy(update={"rate_503": 0.0})

        async def processing() -> bool:
            return await status() is ClipStatus.PROCESSING

        await eventually(processing, "the clip accepted once Runware is back")

    assert seen[:MAX_ATTEMPTS] == list(range(1, MAX_ATTEMPTS + 1))
    (accepted,) = await world.settle_events(events)
    assert isinstance(accepted, ClipUpdated)
    assert accepted.clip.status is ClipStatus.PROCESSING
    truth = await world.sim.task(task_uuid)
    assert truth["accepted"] is True
    assert truth["billed"] is True


async def test_a_request_runware_refuses_fails_at_once_with_its_code_and_message(
    world: World, handler: SubmitHandler
) -> None:
    project = await world.new_project("a fox", duration=5)  # Veo 3.1 Fast: 4, 6, 7 or 8 s
    events = await world.events()

    await handler(submit_of(project))

    after = await world.project(project.id)
    clip = after.clips[0]
    assert clip.status is ClipStatus.FAILED
    assert clip.error is not None
    assert clip.error["code"] == "unsupportedDuration"
    assert "duration" in clip.error["message"].lower()
    assert world.publisher.sent == []  # no retry, no poll
    published = await world.settle_events(events)
    assert [type(event).__name__ for event in published] == ["ClipUpdated", "ProjectFinished"]
    assert after.status is ProjectStatus.FAILED
    assert (await world.sim.stats())["task_types"] == {"videoInference": 1}


async def test_duplicate_submit_for_a_processing_clip_calls_runware_no_more(
    world: World, handler: SubmitHandler
) -> None:
    project = await world.new_project("a fox")
    await handler(submit_of(project))
    requests = (await world.sim.stats())["requests"]
    events = await world.events()

    await handler(submit_of(project))

    assert (await world.sim.stats())["requests"] == requests
    [event] = await world.settle_events(events)
    assert isinstance(event, ClipUpdated)
    assert (event.seq, event.clip.status) == (1, ClipStatus.PROCESSING)
    # A crash may have come before the first CheckClip: the duplicate publishes it again.
    stored = (await world.project(project.id)).clips[0]
    checks: list[CheckClip] = world.publisher.sent_to(CHECK_CLIP)
    assert len(checks) == 2
    assert checks[1].submitted_at == stored.submitted_at


async def test_duplicate_submit_for_a_finished_clip_only_repeats_its_events(
    world: World, handler: SubmitHandler
) -> None:
    project = await world.new_project("a fox", duration=5)
    await handler(submit_of(project))
    requests = (await world.sim.stats())["requests"]
    events = await world.events()

    await handler(submit_of(project))

    assert (await world.sim.stats())["requests"] == requests
    published = await world.settle_events(events)
    assert [(type(e).__name__, e.seq) for e in published] == [
        ("ClipUpdated", 1),
        ("ProjectFinished", 2),
    ]
    assert world.publisher.sent == []


async def test_submit_for_a_clip_no_longer_in_its_project_is_dropped_without_a_call(
    world: World, handler: SubmitHandler
) -> None:
    project = await world.new_project("a fox")
    stray = SubmitClip(project_id=project.id, task_uuid="replaced-by-a-retry")

    await handler(stray)

    assert (await world.sim.stats())["requests"] == 0
    assert (await world.project(project.id)).clips == project.clips


async def test_submit_for_a_project_that_does_not_exist_is_an_invalid_message(
    world: World, handler: SubmitHandler
) -> None:
    stray = SubmitClip(project_id="no-such-project", task_uuid="no-such-clip")

    with pytest.raises(InvalidMessage):
        await handler(stray)

    assert (await world.sim.stats())["requests"] == 0


async def test_sweeper_dispatches_a_project_left_undispatched_past_the_grace(
    world: World, mongo_db: Any
) -> None:
    ten_minutes_ago = ProjectStore(
        mongo_db, clock=lambda: datetime.now(UTC) - timedelta(minutes=10)
    )
    left_behind = NewProject(
        tenant_id=world.tenant_id,
        title="Left behind",
        model="google:3@3",
        scenes=[NewClip(prompt=prompt, duration=4) for prompt in ("scene one", "scene two")],
    )
    stale = (await ten_minutes_ago.create(left_behind)).project
    fresh = await world.new_project("just stored")

    assert await sweep_undispatched(world.projects, world.publisher, grace_s=60) == 1

    sent: list[SubmitClip] = world.publisher.sent_to(SUBMIT_CLIP)
    assert [(m.project_id, m.task_uuid) for m in sent] == [
        (stale.id, clip.task_uuid) for clip in stale.clips
    ]
    assert (await world.project(stale.id)).dispatched
    assert not (await world.project(fresh.id)).dispatched
    assert await sweep_undispatched(world.projects, world.publisher, grace_s=60) == 0


def messages_handled(outcome: str) -> float:
    sample = REGISTRY.get_sample_value(
        "reelflow_messages_total", {"queue": SUBMIT_CLIP, "outcome": outcome}
    )
    return sample or 0.0


async def clip_status(world: World, project: Project) -> ClipStatus:
    return (await world.project(project.id)).clips[0].status


async def test_main_submits_clips_and_returns_soon_after_stop(
    world: World, settings: Settings
) -> None:
    project = await world.new_project("a fox")
    stop = asyncio.Event()
    async with running(main(settings, stop=stop), stop) as task:
        await world.publisher.send(SUBMIT_CLIP, submit_of(project))
        await eventually(
            lambda: _is(clip_status(world, project), ClipStatus.PROCESSING), "clip processing"
        )
        assert not task.done()
    assert task.exception() is None


async def test_main_stops_within_the_drain_timeout_and_leaves_the_message_queued(
    world: World, settings: Settings
) -> None:
    project = await world.new_project("a fox")
    async with TcpProxy(*_host_port(world.sim.base_url)) as runware:
        runware.stall()  # the submit hangs: the message is in flight when the stop comes
        hung = settings.model_copy(
            update={"runware_base_url": f"http://127.0.0.1:{runware.port}", "drain_timeout_s": 0.2}
        )
        stop = asyncio.Event()
        async with running(main(hung, stop=stop), stop) as task:
            await world.publisher.send(SUBMIT_CLIP, submit_of(project))
            await eventually(
                lambda: _is(clip_status(world, project), ClipStatus.SUBMITTING), "submit in flight"
            )
        assert task.exception() is None

    # Cancelled in flight, never acknowledged: the broker has it for the next submitter.
    async def back_in_queue() -> bool:
        return await world.ready_count(world.topology.queue(SUBMIT_CLIP)) == 1

    await eventually(back_in_queue, "the message back in the queue")
    assert (await world.sim.stats())["requests"] == 0


async def test_main_rides_out_a_runware_outage_and_a_mongodb_outage(
    world: World, settings: Settings, mongo_url: str
) -> None:
    first, second = await world.new_project("scene one"), await world.new_project("scene two")
    async with (
        TcpProxy(*_host_port(world.sim.base_url)) as runware,
        TcpProxy(*_host_port(mongo_url)) as mongo,
    ):
        flaky = settings.model_copy(
            update={
                "runware_base_url": f"http://127.0.0.1:{runware.port}",
                "mongo_url": SecretStr(_via(mongo_url, mongo.port)),
                "mongo_timeout_s": 0.5,
                "submit_max_attempts": 10_000,
                "sweep_interval_s": 0.05,
            }
        )
        stop = asyncio.Event()
        async with running(main(flaky, stop=stop), stop) as task:
            runware.go_down()
            acked = messages_handled("acked")
            await world.publisher.send(SUBMIT_CLIP, submit_of(first))
            # Each failed submit is acknowledged and comes back as a retry with attempt + 1.
            await eventually(lambda: messages_handled("acked") >= acked + 3, "submit retries")
            runware.come_back()
            await eventually(
                lambda: _is(clip_status(world, first), ClipStatus.PROCESSING), "first processing"
            )

            mongo.go_down()
            retried = messages_handled("retried")
            await world.publisher.send(SUBMIT_CLIP, submit_of(second))
            await eventually(lambda: messages_handled("retried") >= retried + 2, "outage retries")
            assert not task.done()
            mongo.come_back()
            await eventually(
                lambda: _is(clip_status(world, second), ClipStatus.PROCESSING), "second processing"
            )
            assert not task.done()
        assert task.exception() is None
    for project in (first, second):
        truth = await world.sim.task(project.clips[0].task_uuid)
        assert (truth["accepted"], truth["billed"]) == (True, True)


async def _is(status: Awaitable[ClipStatus], expected: ClipStatus) -> bool:
    return await status is expected


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def _via(mongo_url: str, port: int) -> str:
    """``mongo_url`` with its host replaced by the proxy, talking to that one server only."""
    parts = urlsplit(mongo_url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    query = "&".join(q for q in (parts.query, "directConnection=true") if q)
    return urlunsplit((parts.scheme, netloc, parts.path or "/", query, ""))
