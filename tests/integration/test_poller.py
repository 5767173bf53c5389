"""The poller against a real RabbitMQ, MongoDB and the Runware simulator.

Clips are put in ``processing`` the way the submitter leaves them: the task is
submitted to the simulator under the clip's task UUID and the store is told.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection
from prometheus_client import REGISTRY

from reelflow_common.domain import ClipStatus, ProjectStatus
from reelflow_common.messages import (
    CheckClip,
    ClipUpdated,
    Message,
    ProjectFinished,
    RecordRunwareResult,
)
from reelflow_common.store import Project, ProjectStore
from reelflow_common.topology import CHECK_CLIP, RECORD_RESULT
from reelflow_poller.handlers import CheckHandler, ClipRecorder, RecordResultHandler
from reelflow_poller.main import main, poll_policy
from reelflow_poller.service import TIMED_OUT, next_check_delay_s
from reelflow_poller.settings import Settings
from reelflow_runware_sim.config import SimConfig
from reelflow_runware_sim.testing import RunningSimulator
from tests.integration.worker_helpers import (
    FAST_LADDERS,
    World,
    died_in,
    eventually,
    open_world,
    running,
    runware_settings,
)

pytestmark = pytest.mark.integration

MAX_AGE_S = 60.0
NOT_FOUND_GRACE_S = 30.0


@pytest.fixture
def settings(settings_for: Callable[..., Any], runware_sim: RunningSimulator) -> Settings:
    settings: Settings = settings_for(
        Settings,
        http_host="127.0.0.1",
        http_port=0,
        poll_max_age_s=MAX_AGE_S,
        not_found_grace_s=NOT_FOUND_GRACE_S,
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


@pytest.fixture
def check(world: World, settings: Settings) -> CheckHandler:
    recorder = ClipRecorder(world.projects, world.publisher)
    return CheckHandler(recorder, world.runware, world.publisher, poll_policy(settings))


@pytest.fixture
def record(world: World, settings: Settings) -> RecordResultHandler:
    return RecordResultHandler(ClipRecorder(world.projects, world.publisher), poll_policy(settings))


def check_of(project: Project, index: int = 0, *, attempt: int = 1) -> CheckClip:
    clip = project.clips[index]
    assert clip.submitted_at is not None
    return CheckClip(
        project_id=project.id,
        task_uuid=clip.task_uuid,
        attempt=attempt,
        submitted_at=clip.submitted_at,
        correlation_id="req-1",
    )


def get_responses(stats: dict[str, Any]) -> int:
    count: int = stats["task_types"].get("getResponse", 0)
    return count


async def test_finished_task_is_recorded_with_its_video_and_cost_and_ends_the_project(
    world: World, check: CheckHandler
) -> None:
    project = await world.processing(await world.new_project("a fox"))
    task_uuid = project.clips[0].task_uuid
    await world.until_finished_at_runware(task_uuid)
    events = await world.events()

    await check(check_of(project))

    after = await world.project(project.id)
    clip = after.clips[0]
    truth = await world.sim.task(task_uuid)
    assert clip.status is ClipStatus.SUCCESS
    assert clip.video_uuid == truth["video_uuids"][0]
    assert clip.video_url is not None
    assert clip.video_url.endswith(f"{clip.video_uuid}.mp4")
    assert clip.cost is not None
    assert clip.cost == truth["cost"] > 0
    assert after.status is ProjectStatus.COMPLETED
    updated, finished = await world.settle_events(events)
    assert isinstance(updated, ClipUpdated)
    assert (updated.clip.status, updated.clip.video_url) == (ClipStatus.SUCCESS, clip.video_url)
    assert isinstance(finished, ProjectFinished)
    assert (finished.status, finished.seq) == (ProjectStatus.COMPLETED, updated.seq + 1)
    assert world.publisher.sent == []


@pytest.mark.parametrize(
    "runware_sim_config",
    [
        SimConfig(port=0, speedup=1000, seed=1234, failure_shape="errors"),
        SimConfig(port=0, speedup=1000, seed=1234, failure_shape="data"),
    ],
    ids=["top-level-errors", "error-item-in-data"],
)
@pytest.mark.parametrize("code", ["timeoutProvider", "contentPolicyViolation"])
async def test_failed_task_fails_the_clip_with_runwares_code_whatever_the_shape(
    world: World, check: CheckHandler, code: str
) -> None:
    project = await world.processing(await world.new_project(f"a fox [sim:fail={code}]"))
    await world.until_finished_at_runware(project.clips[0].task_uuid)
    events = await world.events()

    await check(check_of(project))

    after = await world.project(project.id)
    error = after.clips[0].error
    assert after.clips[0].status is ClipStatus.FAILED
    assert error is not None
    assert error["code"] == code
    assert error["message"]
    assert after.status is ProjectStatus.FAILED
    published = await world.settle_events(events)
    assert [type(event).__name__ for event in published] == ["ClipUpdated", "ProjectFinished"]


async def test_task_still_processing_is_checked_again_on_the_next_rung(
    world: World, check: CheckHandler, settings: Settings
) -> None:
    project = await world.processing(await world.new_project("a fox [sim:hang]"))
    task_uuid = project.clips[0].task_uuid
    checks = await world.inbox(CHECK_CLIP)
    first = check_of(project)
    events = await world.events()

    await check(first)

    second, raw = await checks.next_of(CheckClip)
    assert (second.task_uuid, second.attempt, second.submitted_at) == (
        task_uuid,
        2,
        first.submitted_at,
    )
    assert second.correlation_id == "req-1"
    assert second.message_id != first.message_id
    assert died_in(raw) == world.topology.wait_queue_for(CHECK_CLIP, _delay(settings, 1))

    await check(second)

    third, raw = await checks.next_of(CheckClip)
    assert third.attempt == 3
    assert died_in(raw) == world.topology.wait_queue_for(CHECK_CLIP, _delay(settings, 2))
    assert died_in(raw) != world.topology.wait_queue_for(CHECK_CLIP, _delay(settings, 1))
    assert (await world.project(project.id)).clips[0].status is ClipStatus.PROCESSING
    assert await world.settle_events(events) == []
    assert (await world.sim.task(task_uuid))["polls"] == 2


def _delay(settings: Settings, attempt: int) -> float:
    return next_check_delay_s(
        attempt,
        initial_s=settings.poll_initial_delay_s,
        backoff=settings.poll_backoff,
        cap_s=settings.poll_max_delay_s,
    )


async def test_task_still_processing_past_the_maximum_age_times_out(
    world: World, check: CheckHandler
) -> None:
    project = await world.new_project("a fox [sim:hang]")
    project = await world.processing(project, age_s=MAX_AGE_S + 1)

    await check(check_of(project, attempt=40))

    after = await world.project(project.id)
    error = after.clips[0].error
    assert after.clips[0].status is ClipStatus.FAILED
    assert error is not None
    assert error["code"] == TIMED_OUT
    assert after.status is ProjectStatus.FAILED
    assert world.publisher.sent == []


async def test_task_runware_does_not_know_is_checked_again_then_fails_after_the_grace(
    world: World, check: CheckHandler
) -> None:
    project = await world.new_project("a fox")
    task_uuid = project.clips[0].task_uuid
    # Marked processing, but Runware never got it (not visible yet, or lost).
    await world.projects.mark_processing(project.id, task_uuid, submitted_at=datetime.now(UTC))
    project = await world.project(project.id)

    await check(check_of(project))

    assert (await world.project(project.id)).clips[0].status is ClipStatus.PROCESSING
    assert [m.attempt for m in world.publisher.sent_to(CHECK_CLIP)] == [2]

    late = check_of(project, attempt=2).model_copy(
        update={"submitted_at": datetime.now(UTC) - timedelta(seconds=NOT_FOUND_GRACE_S + 1)}
    )
    await check(late)

    error = (await world.project(project.id)).clips[0].error
    assert error is not None
    assert error["code"] == "taskFailedOrNotFound"


async def test_late_check_for_a_finished_clip_asks_runware_nothing_and_repeats_events(
    world: World, check: CheckHandler
) -> None:
    project = await world.processing(await world.new_project("a fox"))
    await world.until_finished_at_runware(project.clips[0].task_uuid)
    await check(check_of(project))
    polls = get_responses(await world.sim.stats())
    events = await world.events()

    await check(check_of(project, attempt=7))

    assert get_responses(await world.sim.stats()) == polls
    published = await world.settle_events(events)
    # Everything the clip caused, again: a crash may have come before the first publish.
    assert [(type(e).__name__, e.seq) for e in published] == [
        ("ClipUpdated", 1),
        ("ClipUpdated", 2),
        ("ProjectFinished", 3),
    ]
    assert world.publisher.sent == []


async def test_check_for_a_project_that_is_gone_is_dropped_quietly(
    world: World, check: CheckHandler
) -> None:
    gone = CheckClip(
        project_id="no-such-project", task_uuid="no-such-task", submitted_at=datetime.now(UTC)
    )

    await check(gone)

    assert get_responses(await world.sim.stats()) == 0
    assert world.publisher.sent == []


def _webhook(task_uuid: str, **item: Any) -> dict[str, Any]:
    return {"data": [{"taskType": "videoInference", "taskUUID": task_uuid, **item}]}


async def test_webhook_success_is_recorded(world: World, record: RecordResultHandler) -> None:
    project = await world.processing(await world.new_project("a fox [sim:hang]"))
    task_uuid = project.clips[0].task_uuid
    body = _webhook(
        task_uuid,
        status="success",
        videoUUID="b7db",
        videoURL="https://im.runware.ai/video/b7db.mp4",
        cost=0.4,
    )
    events = await world.events()

    await record(RecordRunwareResult(project_id=project.id, task_uuid=task_uuid, body=body))

    clip = (await world.project(project.id)).clips[0]
    assert (clip.status, clip.video_url, clip.video_uuid, clip.cost) == (
        ClipStatus.SUCCESS,
        "https://im.runware.ai/video/b7db.mp4",
        "b7db",
        0.4,
    )
    assert len(await world.settle_events(events)) == 2
    assert get_responses(await world.sim.stats()) == 0


async def test_a_webhook_that_beats_the_submitters_write_is_still_recorded(
    world: World, record: RecordResultHandler
) -> None:
    project = await world.new_project("a fox")  # still queued: no submitted_at yet
    task_uuid = project.clips[0].task_uuid
    body = _webhook(task_uuid, status="success", videoURL="https://im.runware.ai/video/x.mp4")

    await record(RecordRunwareResult(project_id=project.id, task_uuid=task_uuid, body=body))

    clip = (await world.project(project.id)).clips[0]
    assert (clip.status, clip.video_url) == (
        ClipStatus.SUCCESS,
        "https://im.runware.ai/video/x.mp4",
    )


@pytest.mark.parametrize(
    "body",
    [
        {
            "errors": [
                {
                    "code": "timeoutProvider",
                    "status": "error",
                    "message": "The external provider did not respond in time.",
                    "taskUUID": "{task}",
                }
            ]
        },
        _webhook(
            "{task}",
            status="error",
            error={
                "code": "timeoutProvider",
                "message": "The external provider did not respond in time.",
            },
        ),
    ],
    ids=["top-level-errors", "error-item-in-data"],
)
async def test_webhook_failure_is_recorded_with_runwares_code(
    world: World, record: RecordResultHandler, body: dict[str, Any]
) -> None:
    project = await world.processing(await world.new_project("a fox [sim:hang]"))
    task_uuid = project.clips[0].task_uuid
    filled = _fill(body, task_uuid)

    await record(RecordRunwareResult(project_id=project.id, task_uuid=task_uuid, body=filled))

    clip = (await world.project(project.id)).clips[0]
    assert clip.status is ClipStatus.FAILED
    assert clip.error == {
        "code": "timeoutProvider",
        "message": "The external provider did not respond in time.",
    }


def _fill(value: Any, task_uuid: str) -> Any:
    if isinstance(value, dict):
        return {key: _fill(item, task_uuid) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, task_uuid) for item in value]
    return task_uuid if value == "{task}" else value


async def test_webhook_saying_still_processing_changes_nothing(
    world: World, record: RecordResultHandler
) -> None:
    project = await world.processing(await world.new_project("a fox [sim:hang]"))
    task_uuid = project.clips[0].task_uuid

    body = _webhook(task_uuid, status="processing")
    await record(RecordRunwareResult(project_id=project.id, task_uuid=task_uuid, body=body))

    assert (await world.project(project.id)).seq == project.seq


def messages_handled(queue: str, outcome: str) -> float:
    labels = {"queue": queue, "outcome": outcome}
    return REGISTRY.get_sample_value("reelflow_messages_total", labels) or 0.0


async def test_webhook_for_a_task_retried_away_is_acknowledged_and_changes_nothing(
    world: World, record: RecordResultHandler
) -> None:
    project = await world.processing(await world.new_project("a fox [sim:hang]"))
    gone = "00000000-0000-4000-8000-00000000dead"  # a task the clip no longer stands for
    body = _webhook(gone, status="success", videoURL="https://im.runware.ai/video/x.mp4")
    acked = messages_handled(RECORD_RESULT, "acked")
    async with world.consuming(RECORD_RESULT, RecordRunwareResult, record):
        message = RecordRunwareResult(project_id=project.id, task_uuid=gone, body=body)
        await world.publisher.send(RECORD_RESULT, message)
        await eventually(lambda: messages_handled(RECORD_RESULT, "acked") > acked, "acked")

    assert (await world.project(project.id)).seq == project.seq
    assert await world.ready_count(world.topology.dead_letter_queue(RECORD_RESULT)) == 0


async def test_many_clips_finishing_at_once_finish_the_project_exactly_once(
    world: World, check: CheckHandler
) -> None:
    clips = 8
    project = await world.new_project(*(f"scene {n}" for n in range(clips)))
    project = await world.processing(project)
    await world.until_finished_at_runware(*(clip.task_uuid for clip in project.clips))
    for index in range(clips):
        await world.publisher.send(CHECK_CLIP, check_of(project, index))
    events = await world.events()
    handled: list[Message] = []

    async def counting(message: CheckClip) -> None:
        await check(message)
        handled.append(message)

    async with world.consuming(CHECK_CLIP, CheckClip, counting, concurrency=clips):
        await eventually(lambda: len(handled) == clips, "every check handled")

    published = await world.settle_events(events)
    finished = [event for event in published if isinstance(event, ProjectFinished)]
    assert len(finished) == 1
    assert finished[0].status is ProjectStatus.COMPLETED
    assert finished[0].seq == 2 * clips + 1
    updates = sorted(event.seq for event in published if isinstance(event, ClipUpdated))
    assert updates == list(range(clips + 1, 2 * clips + 1))
    after = await world.project(project.id)
    assert (after.status, after.counts.completed) == (ProjectStatus.COMPLETED, clips)
    stored = await world.projects.events_after(project.id, 0)
    assert stored is not None
    assert sum(isinstance(event, ProjectFinished) for event in stored) == 1


async def test_main_polls_clips_to_the_end_and_returns_soon_after_stop(
    world: World, settings: Settings
) -> None:
    project = await world.processing(await world.new_project("a fox [sim:latency=30]"))

    async def succeeded() -> bool:
        return (await world.project(project.id)).clips[0].status is ClipStatus.SUCCESS

    stop = asyncio.Event()
    async with running(main(settings, stop=stop), stop) as task:
        await world.publisher.send(CHECK_CLIP, check_of(project), delay_s=0.05)
        await eventually(succeeded, "the clip succeeded")
        assert not task.done()
    assert task.exception() is None
