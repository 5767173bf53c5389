"""The poller against a real RabbitMQ, MongoDB and the Runware simulator.

Clips are put in ``processing`` the way the submitter leaves them: the task is
submitted to the simulator under the clip's task UUID and the store is told.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from reelflow_common.accounting import CostBook
from reelflow_common.backoff import Backoff
from reelflow_common.broker import amqp_channel
from reelflow_common.domain import ClipStatus, ProjectStatus
from reelflow_common.errors import TransientError
from reelflow_common.messages import (
    CheckClip,
    CheckClips,
    CheckHintedTasks,
    ClipUpdated,
    ProjectFinished,
)
from reelflow_common.polling import FixedLadderPlanner
from reelflow_common.runware import RunwareClient
from reelflow_common.settings import RunwareSettings
from reelflow_common.store import TIMED_OUT, Project, ProjectStore
from reelflow_common.store.timefmt import utcnow
from reelflow_common.topology import CHECK_CLIP, HEADER_FAILURES, HINTED_CHECK, SUBMIT_CLIP
from reelflow_common.tracking.policy import Policy
from reelflow_common.tracking.recorder import ClipRecorder
from reelflow_poller.handlers import CheckHandler, HintHandler
from reelflow_poller.main import main
from reelflow_poller.settings import Settings
from reelflow_runware_sim.config import SimConfig
from reelflow_runware_sim.testing import RunningSimulator
from reelflow_submitter.handlers import SubmitHandler
from reelflow_submitter.service import video_request
from reelflow_submitter.settings import Settings as SubmitterSettings
from tests.integration.worker_helpers import (
    FAST_LADDERS,
    CompletionsSeen,
    World,
    check_handler,
    died_in,
    running,
    runware_settings,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration

MAX_AGE_S = 60.0
NOT_FOUND_GRACE_S = 30.0
LEASE_S = 600.0


@pytest.fixture
def settings(settings_for: Callable[..., Any], runware_sim: RunningSimulator) -> Settings:
    settings: Settings = settings_for(
        Settings,
        http_host="127.0.0.1",
        http_port=0,
        poll_max_age_s=MAX_AGE_S,
        not_found_grace_s=NOT_FOUND_GRACE_S,
        lease_s=LEASE_S,
        **FAST_LADDERS,
        **runware_settings(runware_sim),
    )
    return settings


@pytest.fixture
def check(world: World, settings: Settings) -> CheckHandler:
    return check_handler(world, settings)


@pytest.fixture
def completions(settings: Settings) -> CompletionsSeen:
    planner = CompletionsSeen.from_settings(settings)
    assert isinstance(planner, CompletionsSeen)
    return planner


@pytest.fixture
def costs() -> CostBook:
    return CostBook()


@pytest.fixture
def hint(world: World, completions: CompletionsSeen, costs: CostBook) -> HintHandler:
    recorder = ClipRecorder(world.projects, world.publisher)
    return HintHandler(recorder, world.runware, planner=completions, costs=costs)


def polls(stats: dict[str, Any]) -> int:
    count: int = stats["task_types"].get("getResponse", 0)
    return count


class NoDatabase(ProjectStore):
    """A store that fails the test on any use: for paths that must not touch the database."""

    def __init__(self) -> None:  # no database at all
        pass

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("__"):
            return object.__getattribute__(self, name)
        raise AssertionError(f"the database was used: ProjectStore.{name}")


# --- a chain's checks --------------------------------------------------------------------


async def finished_project(world: World, scenes: int) -> tuple[Project, CheckClips]:
    """A project whose clips are all done at Runware, and their checks in one message."""
    project = await world.processing(
        await world.new_project(*(f"scene {i}" for i in range(scenes)))
    )
    await world.until_finished_at_runware(*(clip.task_uuid for clip in project.clips))
    checks = [await world.check_of(project, i) for i in range(scenes)]
    return project, CheckClips(checks=checks)


async def ended(world: World, project: Project) -> bool:
    return (await world.project(project.id)).status is not ProjectStatus.GENERATING


async def test_checks_that_travel_together_each_record_their_clip(
    world: World, check: CheckHandler
) -> None:
    project, together = await finished_project(world, 3)
    events = await world.events()

    async with world.consuming(CHECK_CLIP, (CheckClip, CheckClips), check):
        await world.publisher.send(CHECK_CLIP, together)
        await eventually(lambda: ended(world, project), "the project's end")

    after = await world.project(project.id)
    assert [clip.status for clip in after.clips] == [ClipStatus.SUCCESS] * 3
    published = await world.settle_events(events)
    assert sorted(e.clip.scene_index for e in published if isinstance(e, ClipUpdated)) == [0, 1, 2]
    assert [type(e) for e in published].count(ProjectFinished) == 1


def failing(
    world: World, monkeypatch: pytest.MonkeyPatch, plan: dict[str, tuple[Exception, int]]
) -> list[str]:
    """The store's ``record`` of each task in ``plan`` fails that many times with that error;
    the tasks of those failures, in order."""
    record = world.projects.record
    failed: list[str] = []

    async def fails(
        project_id: str, scene_index: int, task_uuid: str, *args: Any, **kwargs: Any
    ) -> Any:
        error, times = plan.get(task_uuid, (None, 0))
        if error is not None and failed.count(task_uuid) < times:
            failed.append(task_uuid)
            raise error
        return await record(project_id, scene_index, task_uuid, *args, **kwargs)

    monkeypatch.setattr(world.projects, "record", fails)
    return failed


async def test_a_failed_check_goes_again_alone_and_no_other_chain_forks(
    world: World, check: CheckHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await world.processing(
        await world.new_project("scene 0", "scene 1", "scene 2 [sim:latency=3000]")
    )
    done, unlucky, running = (clip.task_uuid for clip in project.clips)
    await world.until_finished_at_runware(done, unlucky)
    together = CheckClips(checks=[await world.check_of(project, i) for i in range(3)])
    failed = failing(world, monkeypatch, {unlucky: (TransientError("MongoDB went away"), 1)})
    events = await world.events()

    async def both_ended() -> bool:
        clips = (await world.project(project.id)).clips
        return [clip.status for clip in clips[:2]] == [ClipStatus.SUCCESS] * 2

    async with world.consuming(CHECK_CLIP, (CheckClip, CheckClips), check):
        await world.publisher.send(CHECK_CLIP, together)
        await eventually(both_ended, "the two finished clips recorded")

    assert failed == [unlucky]
    # The running clip's first check was made once: one next check of each number,
    # never two chains (the retry carried the failed check alone).
    numbers = [
        c.check
        for c in world.publisher.sent_to(CHECK_CLIP)
        if isinstance(c, CheckClip) and c.task_uuid == running
    ]
    assert numbers
    assert len(numbers) == len(set(numbers))
    published = await world.settle_events(events)
    successes = [
        e.clip.scene_index
        for e in published
        if isinstance(e, ClipUpdated) and e.clip.status is ClipStatus.SUCCESS
    ]
    assert sorted(successes) == [0, 1]  # each once: the clip made again was never recorded


async def test_only_the_check_that_fails_every_time_is_dead_lettered(
    world: World, check: CheckHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bug's second failure dead-letters.
    monkeypatch.setattr(world, "topology", dataclasses.replace(world.topology, max_deliveries=2))
    project, together = await finished_project(world, 4)
    _fine, once, always, outage = (clip.task_uuid for clip in project.clips)
    failing(
        world,
        monkeypatch,
        {
            once: (RuntimeError("a bug that does not come back"), 1),
            always: (RuntimeError("a bug in this one check"), 1000),
            outage: (TransientError("MongoDB went away"), 2),
        },
    )
    dlq = world.topology.dead_letter_queue(CHECK_CLIP)

    async with world.consuming(CHECK_CLIP, (CheckClip, CheckClips), check):
        await world.publisher.send(CHECK_CLIP, together)
        await eventually(
            lambda: _count_is(world.ready_count(dlq), 1), "the failing check dead-lettered"
        )

        async def the_rest_ended() -> bool:
            clips = (await world.project(project.id)).clips
            return all(clip.status is ClipStatus.SUCCESS for clip in (clips[0], clips[1], clips[3]))

        await eventually(the_rest_ended, "every other clip recorded")

    # The first delivery: the outage's check retried alone (twice: never counted as a bug),
    # the two bugs' counted together; the second of those: one went through, the other
    # failed again and alone was dead-lettered.
    assert (await world.project(project.id)).clips[2].status is ClipStatus.PROCESSING
    async with amqp_channel(world.connection) as channel:
        queue = await channel.get_queue(dlq, ensure=False)
        dead = await queue.get(no_ack=True, fail=False)
    assert dead is not None
    assert dead.type == CheckClips.message_type
    assert [c.task_uuid for c in CheckClips.model_validate_json(dead.body).checks] == [always]
    assert (dead.headers or {}).get(HEADER_FAILURES) == 2


async def _count_is(count: Awaitable[int], expected: int) -> bool:
    return await count == expected


async def test_finished_task_is_recorded_with_its_video_and_cost_and_ends_the_project(
    world: World, check: CheckHandler
) -> None:
    project = await world.processing(await world.new_project("a fox"))
    task_uuid = project.clips[0].task_uuid
    await world.until_finished_at_runware(task_uuid)
    events = await world.events()

    await check(await world.check_of(project))

    after = await world.project(project.id)
    clip = after.clips[0]
    truth = await world.sim.task(task_uuid)
    assert clip.status is ClipStatus.SUCCESS
    assert clip.video_uuid == truth["video_uuids"][0]
    assert clip.video_url is not None
    assert clip.video_url.endswith(f"{clip.video_uuid}.mp4")
    assert clip.cost == truth["cost"] > 0
    assert after.cost.usd == truth["cost"]
    assert after.status is ProjectStatus.COMPLETED
    updated, finished = await world.settle_events(events)
    assert isinstance(updated, ClipUpdated)
    assert (updated.clip.status, updated.clip.video_url) == (ClipStatus.SUCCESS, clip.video_url)
    assert updated.clip.submitted_at == clip.submitted_at
    assert isinstance(finished, ProjectFinished)
    assert (finished.status, finished.seq) == (ProjectStatus.COMPLETED, updated.seq + 1)
    assert world.publisher.sent == []


async def test_a_checks_cost_is_learnt_for_the_clips_model_and_size(
    world: World, settings: Settings, costs: CostBook
) -> None:
    # Runware's price per second depends on the size (Veo's 4K costs three times its 720p):
    # budgets estimate each model and size from its own costs.
    check = check_handler(world, settings, costs=costs)
    wide = await world.processing(await world.new_project("a fox", width=1920, height=1080))
    tall = await world.processing(await world.new_project("a hare", width=720, height=1280))
    tasks = [project.clips[0].task_uuid for project in (wide, tall)]
    await world.until_finished_at_runware(*tasks)

    await check(await world.check_of(wide))
    await check(await world.check_of(tall))

    wide_cost = (await world.project(wide.id)).clips[0].cost
    tall_cost = (await world.project(tall.id)).clips[0].cost
    assert costs.take() == {
        "google:3@3|1920x1080": [wide_cost, 4.0, 1],
        "google:3@3|720x1280": [tall_cost, 4.0, 1],
    }


@pytest.mark.parametrize("webhooks", [False, True])
async def test_a_one_scene_projects_end_and_finish_are_one_update_unless_webhooks_record_it(
    world: World, check: CheckHandler, monkeypatch: pytest.MonkeyPatch, webhooks: bool
) -> None:
    project = await world.processing(await world.new_project("a fox"))
    await world.until_finished_at_runware(project.clips[0].task_uuid)
    message = await world.check_of(project)
    assert message.scene_count == 1
    updates: list[dict[str, Any]] = []
    collection = world.projects._projects
    find_one_and_update = collection.find_one_and_update

    async def counted(filter_: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        updates.append(filter_)
        return await find_one_and_update(filter_, *args, **kwargs)

    monkeypatch.setattr(collection, "find_one_and_update", counted)
    events = await world.events()

    await check(message.model_copy(update={"webhooks": webhooks}))

    # Polling alone: the chain's check is what ends it, with its project. With webhooks the
    # hint has mostly recorded it first, so the check writes the end alone, then the finish.
    assert len(updates) == (2 if webhooks else 1)
    assert (await world.project(project.id)).status is ProjectStatus.COMPLETED
    updated, finished = await world.settle_events(events)
    assert isinstance(updated, ClipUpdated)
    assert isinstance(finished, ProjectFinished)
    assert finished.seq == updated.seq + 1


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

    await check(await world.check_of(project))

    after = await world.project(project.id)
    error = after.clips[0].error
    assert after.clips[0].status is ClipStatus.FAILED
    assert error is not None
    assert error["code"] == code
    assert error["message"]
    assert after.status is ProjectStatus.FAILED
    published = await world.settle_events(events)
    assert [type(event).__name__ for event in published] == ["ClipUpdated", "ProjectFinished"]


async def test_a_check_of_a_task_still_processing_touches_no_database(
    world: World, settings: Settings
) -> None:
    project = await world.processing(await world.new_project("a fox [sim:hang]"))
    task_uuid = project.clips[0].task_uuid
    checks = await world.inbox(CHECK_CLIP)
    first = await world.check_of(project)
    no_database = check_handler(world, settings, projects=NoDatabase())
    events = await world.events()

    await no_database(first)

    second, raw = await checks.next_of(CheckClip)
    assert (second.task_uuid, second.check, second.token) == (task_uuid, 2, first.token)
    assert (second.submitted_at, second.lease_until) == (first.submitted_at, first.lease_until)
    assert second.correlation_id == "req-1"
    assert second.message_id != first.message_id
    rungs = world.topology.ladders[CHECK_CLIP]
    assert died_in(raw) in {world.topology.wait_queue(CHECK_CLIP, ms) for ms in rungs}

    await no_database(second)

    third, _ = await checks.next_of(CheckClip)
    assert third.check == 3
    assert (await world.project(project.id)).seq == project.seq
    assert await world.settle_events(events) == []
    task = await world.sim.task(task_uuid)
    assert task["polls"] == 2
    # The simulator keeps when the first of them came (the benchmark's first-check figure).
    assert 0 <= task["first_polled_seconds"] <= task["elapsed_seconds"]


async def test_progress_is_stored_and_announced_once_per_step_then_dropped_at_the_end(
    world: World, settings: Settings
) -> None:
    project = await world.processing(await world.new_project("a fox [sim:latency=3000]"))
    task_uuid = project.clips[0].task_uuid

    async def past(fraction: float) -> bool:
        view = await world.sim.task(task_uuid)
        return bool(view["elapsed_seconds"] >= fraction * view["latency_seconds"][0])

    check = CheckHandler(
        ClipRecorder(world.projects, world.publisher),
        world.runware,
        world.publisher,
        policy=Policy.from_settings(settings),
        planner=FixedLadderPlanner.from_settings(settings),
        clock=utcnow,
        lease_s=settings.lease_s,
        progress_step=25,
    )
    events = await world.events()
    await eventually(lambda: past(0.3), "Runware 30 % into the task")

    await check(await world.check_of(project))

    [stored] = await world.settle_events(events)
    assert isinstance(stored, ClipUpdated)
    progress = stored.clip.progress
    assert progress is not None
    assert 25 <= progress < 99
    assert stored.clip.status is ClipStatus.PROCESSING
    after = await world.project(project.id)
    assert after.clips[0].progress == progress
    assert after.public_status().wire()["results"][0]["progress"] == progress
    assert after.seq == project.seq + 1

    # A check that sees the same step again (or less) writes nothing.
    following = world.publisher.sent_to(CHECK_CLIP)[-1]
    assert following.seen_progress == progress
    same_step = following.model_copy(update={"seen_progress": progress + 24 - progress % 25})
    quiet = CheckHandler(
        ClipRecorder(NoDatabase(), world.publisher),
        world.runware,
        world.publisher,
        policy=Policy.from_settings(settings),
        planner=FixedLadderPlanner.from_settings(settings),
        clock=utcnow,
        lease_s=settings.lease_s,
        progress_step=25,
    )
    if not await past(1.0):
        await quiet(same_step)
    lower = await world.projects.record_progress(project.id, 0, task_uuid, progress)
    assert not lower.applied

    await world.until_finished_at_runware(task_uuid)
    await check(following)
    done = await world.project(project.id)
    assert done.clips[0].status is ClipStatus.SUCCESS
    assert "progress" not in done.public_status().wire()["results"][0]


async def test_a_check_near_the_end_of_its_lease_renews_it(
    world: World, check: CheckHandler
) -> None:
    project = await world.processing(await world.new_project("a fox [sim:hang]"))
    checks = await world.inbox(CHECK_CLIP)
    message = await world.check_of(project)
    soon = utcnow() + timedelta(seconds=1)
    await world.projects.renew_lease(
        project.id, 0, token=message.token, until_was=message.lease_until, until=soon
    )
    ending = message.model_copy(update={"lease_until": soon})

    await check(ending)

    following, _ = await checks.next_of(CheckClip)
    stored = (await world.project(project.id)).clips[0].lease
    assert stored is not None
    assert following.lease_until == stored.until
    assert following.lease_until > utcnow() + timedelta(seconds=LEASE_S / 2)


async def test_a_stale_chain_stops_at_its_renewal(world: World, check: CheckHandler) -> None:
    project = await world.processing(await world.new_project("a fox [sim:hang]"))
    message = await world.check_of(project)
    stale = message.model_copy(
        update={"token": "an-old-token", "lease_until": utcnow() + timedelta(seconds=1)}
    )

    await check(stale)

    assert world.publisher.sent == []  # no next check: the live chain goes on alone


async def test_task_still_processing_at_the_ceiling_times_out_and_is_followed_on_late(
    world: World, check: CheckHandler, settings: Settings
) -> None:
    project = await world.processing(await world.new_project("a fox [sim:hang]"))
    decided = await world.check_of(project, check=40, age_s=MAX_AGE_S + 1)

    await check(decided)

    after = await world.project(project.id)
    clip = after.clips[0]
    error = clip.error
    assert clip.status is ClipStatus.FAILED
    assert error is not None
    assert error["code"] == TIMED_OUT
    assert after.status is ProjectStatus.FAILED
    # Runware never said it failed: the same chain follows the task on, slowly, under a
    # lease in its attempt, up to late_follow_s after the ceiling.
    followed = clip.attempts[clip.task_uuid]
    assert followed.status is ClipStatus.FAILED
    assert followed.follow_until is not None
    assert followed.lease is not None
    assert followed.lease.token == decided.token
    (late,) = world.publisher.sent_to(CHECK_CLIP)
    assert late.follow_until == followed.follow_until
    assert late.lease_until == followed.lease.until
    assert late.check == 1
    window_s = (followed.follow_until - utcnow()).total_seconds()
    assert settings.late_follow_s - 10 < window_s <= settings.late_follow_s


async def test_a_get_response_that_errors_forever_ends_at_the_ceiling_with_the_error(
    world: World, settings: Settings, runware_sim: RunningSimulator
) -> None:
    project = await world.processing(await world.new_project("a fox"))
    rotated = RunwareSettings(
        **(runware_settings(runware_sim) | {"runware_api_key": SecretStr("old")})
    )
    async with RunwareClient.open(rotated) as refused:
        with_rotated_key = check_handler(world, settings, runware=refused)

        await with_rotated_key(await world.check_of(project, age_s=10))
        (again,) = world.publisher.sent_to(CHECK_CLIP)
        late = again.model_copy(
            update={
                "submitted_at": again.submitted_at - timedelta(seconds=MAX_AGE_S),
                "watched_since": again.watched_since - timedelta(seconds=MAX_AGE_S),
            }
        )
        await with_rotated_key(late)

    clip = (await world.project(project.id)).clips[0]
    assert again.last_error is not None
    assert "invalidApiKey" in again.last_error
    assert clip.status is ClipStatus.FAILED
    assert clip.error is not None
    assert clip.error["code"] == TIMED_OUT
    assert "invalidApiKey" in clip.error["message"]


async def test_task_runware_does_not_know_is_checked_again_then_fails_after_the_grace(
    world: World, check: CheckHandler
) -> None:
    project = await world.new_project("a fox")
    clip = project.clips[0]
    # Recorded processing, but Runware never got it (not visible yet, or lost).
    assert clip.lease is not None
    await world.projects.mark_processing(project.id, 0, clip.task_uuid, token=clip.lease.token)

    await check(await world.check_of(project))

    assert (await world.project(project.id)).clips[0].status is ClipStatus.PROCESSING
    assert [m.check for m in world.publisher.sent_to(CHECK_CLIP)] == [2]

    await check(await world.check_of(project, check=2, age_s=NOT_FOUND_GRACE_S + 1))

    error = (await world.project(project.id)).clips[0].error
    assert error is not None
    assert error["code"] == "taskFailedOrNotFound"


async def test_a_late_check_of_a_finished_clip_changes_nothing_and_repeats_its_events(
    world: World, check: CheckHandler
) -> None:
    project = await world.processing(await world.new_project("a fox"))
    await world.until_finished_at_runware(project.clips[0].task_uuid)
    message = await world.check_of(project)
    await check(message)
    seq = (await world.project(project.id)).seq
    events = await world.events()

    await check(message.following(check=7))

    assert (await world.project(project.id)).seq == seq
    published = await world.settle_events(events)
    # Everything the clip caused, again: a crash may have come before the first publish.
    assert [(type(e).__name__, e.seq) for e in published] == [
        ("ClipUpdated", 1),
        ("ClipUpdated", 2),
        ("ProjectFinished", 3),
    ]
    assert world.publisher.sent == []


async def test_many_clips_finishing_at_once_finish_the_project_exactly_once(
    world: World, check: CheckHandler
) -> None:
    clips = 8
    project = await world.new_project(*(f"scene {n}" for n in range(clips)))
    project = await world.processing(project)
    await world.until_finished_at_runware(*(clip.task_uuid for clip in project.clips))
    messages = [await world.check_of(project, index) for index in range(clips)]
    for message in messages + messages[:3]:  # three duplicated, as a forked chain would
        await world.publisher.send(CHECK_CLIP, message)
    events = await world.events()
    handled: list[CheckClip] = []

    async def counting(message: CheckClip) -> None:
        await check(message)
        handled.append(message)

    async with world.consuming(CHECK_CLIP, CheckClip, counting, concurrency=clips):
        await eventually(lambda: len(handled) == clips + 3, "every check handled")

    published = {event.seq: event for event in await world.settle_events(events)}
    finished = [event for event in published.values() if isinstance(event, ProjectFinished)]
    assert len(finished) == 1
    assert finished[0].status is ProjectStatus.COMPLETED
    assert finished[0].seq == 2 * clips + 1
    # Each change once by seq (duplicates also re-publish what their clip caused before).
    assert set(range(clips + 1, 2 * clips + 2)) <= set(published)
    assert max(published) == 2 * clips + 1
    after = await world.project(project.id)
    assert (after.status, after.counts.completed) == (ProjectStatus.COMPLETED, clips)
    stored = await world.projects.events_after(project.id, 0)
    assert stored is not None
    assert sum(isinstance(event, ProjectFinished) for event in stored) == 1


# --- webhook hints ---------------------------------------------------------------------------


async def test_a_hint_for_a_finished_task_records_what_runware_says(
    world: World, hint: HintHandler, completions: CompletionsSeen, costs: CostBook
) -> None:
    project = await world.processing(await world.new_project("a fox"))
    task_uuid = project.clips[0].task_uuid
    await world.until_finished_at_runware(task_uuid)

    await hint(CheckHintedTasks(project_id=project.id, scene_index=0, task_uuids=[task_uuid]))
    await hint(CheckHintedTasks(project_id=project.id, scene_index=0, task_uuids=[task_uuid]))

    clip = (await world.project(project.id)).clips[0]
    truth = await world.sim.task(task_uuid)
    assert clip.status is ClipStatus.SUCCESS
    assert clip.video_uuid == truth["video_uuids"][0]
    assert polls(await world.sim.stats()) == 2
    # The planner learns the completion once (the second hint is a duplicate), exactly then.
    assert clip.submitted_at is not None
    assert clip.completed_at is not None
    elapsed_s = (clip.completed_at - clip.submitted_at).total_seconds()
    assert completions.seen == [(project.model, elapsed_s, None)]
    # Its price is what budgets estimate the next clips from (with webhooks on, the hint
    # records most successes; the chain's check then finds them recorded).
    assert clip.cost is not None
    assert costs.take() == {"google:3@3|1280x720": [clip.cost, 4.0, 1]}


async def test_a_hinted_ends_clip_updated_shows_the_clip_as_a_read_does(
    world: World, hint: HintHandler
) -> None:
    # A client replaces its clip by an event's: the hint's end left out the clip's submit.
    project = await world.processing(await world.new_project("a fox"))
    task_uuid = project.clips[0].task_uuid
    await world.until_finished_at_runware(task_uuid)
    events = await world.events()

    await hint(CheckHintedTasks(project_id=project.id, scene_index=0, task_uuids=[task_uuid]))

    updated, _finished = await world.settle_events(events)
    assert isinstance(updated, ClipUpdated)
    status = (await world.project(project.id)).public_status(include_results=True).wire()
    assert updated.clip.model_dump(mode="json", exclude_none=True) == status["results"][0]
    assert updated.clip.submitted_at is not None


async def test_a_hints_learning_reads_only_its_own_clip(
    world: World, hint: HintHandler, completions: CompletionsSeen, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its cost must not grow with the project: a 50-scene project's hint read all 50 clips.
    project = await world.processing(await world.new_project("a fox", "a hare", "a lynx"))
    task_uuid = project.clips[1].task_uuid
    await world.until_finished_at_runware(task_uuid)
    clips_read: list[set[str]] = []
    collection = world.projects._projects
    find_one = collection.find_one

    async def watched(*args: Any, **kwargs: Any) -> Any:
        found = await find_one(*args, **kwargs)
        if found is not None and "clips" in found:
            clips_read.append(set(found["clips"]))
        return found

    monkeypatch.setattr(collection, "find_one", watched)

    await hint(CheckHintedTasks(project_id=project.id, scene_index=1, task_uuids=[task_uuid]))
    monkeypatch.undo()

    assert (await world.project(project.id)).clips[1].status is ClipStatus.SUCCESS
    assert [model for model, _elapsed, _progress in completions.seen] == [project.model]
    assert clips_read, "the hint read its clip"
    assert all(read == {"1"} for read in clips_read), clips_read


async def test_a_hint_for_a_task_still_processing_records_nothing(
    world: World, hint: HintHandler
) -> None:
    # What a forged "success" webhook amounts to: the poller asks, Runware says processing.
    project = await world.processing(await world.new_project("a fox [sim:hang]"))
    task_uuid = project.clips[0].task_uuid

    await hint(CheckHintedTasks(project_id=project.id, scene_index=0, task_uuids=[task_uuid]))

    after = await world.project(project.id)
    assert (after.clips[0].status, after.seq) == (ClipStatus.PROCESSING, project.seq)


async def test_a_hint_that_beats_the_submitters_write_is_still_recorded(
    world: World, hint: HintHandler
) -> None:
    project = await world.new_project("a fox")  # still queued
    message = world.submit_of(project)
    await world.runware.submit_video(video_request(message, webhook_url=None))
    await world.until_finished_at_runware(message.task_uuid)

    await hint(CheckHintedTasks(project_id=project.id, task_uuids=[message.task_uuid]))

    clip = (await world.project(project.id)).clips[0]
    assert clip.status is ClipStatus.SUCCESS
    assert clip.video_url is not None


async def test_a_hint_naming_tasks_that_are_not_the_projects_changes_nothing(
    world: World, hint: HintHandler
) -> None:
    project = await world.processing(await world.new_project("a fox"))
    await world.until_finished_at_runware(project.clips[0].task_uuid)
    other = await world.processing(await world.new_project("another fox"))
    await world.until_finished_at_runware(other.clips[0].task_uuid)
    unknown = "00000000-0000-4000-8000-00000000dead"
    acked = messages_handled(HINTED_CHECK, "acked")

    async with world.consuming(HINTED_CHECK, CheckHintedTasks, hint):
        forged = CheckHintedTasks(
            project_id=project.id, scene_index=0, task_uuids=[other.clips[0].task_uuid, unknown]
        )
        await world.publisher.send(HINTED_CHECK, forged)
        await eventually(lambda: messages_handled(HINTED_CHECK, "acked") > acked, "acked")

    assert (await world.project(project.id)).seq == project.seq
    assert (await world.project(other.id)).seq == other.seq
    assert await world.ready_count(world.topology.dead_letter_queue(HINTED_CHECK)) == 0


async def test_a_late_video_of_a_retried_clips_earlier_task_is_recorded(
    world: World, check: CheckHandler, hint: HintHandler
) -> None:
    project = await world.new_project("a fox")
    first = world.submit_of(project)
    # Recorded processing, never seen by Runware within the grace: failed as not found.
    await world.projects.mark_processing(project.id, 0, first.task_uuid, token=first.token)
    await check(await world.check_of(project, age_s=NOT_FOUND_GRACE_S + 1))
    retried = await world.projects.retry(project.id, tenant_id=world.tenant_id)
    assert retried is not None
    second = world.submit_of(retried.project)
    assert second.task_uuid != first.task_uuid
    # Then the first task turns up at Runware after all, and finishes.
    await world.runware.submit_video(video_request(first, webhook_url=None))
    await world.until_finished_at_runware(first.task_uuid)

    await hint(CheckHintedTasks(project_id=project.id, scene_index=0, task_uuids=[first.task_uuid]))

    after = await world.project(project.id)
    clip = after.clips[0]
    truth = await world.sim.task(first.task_uuid)
    assert (clip.task_uuid, clip.status, clip.video_uuid) == (
        first.task_uuid,
        ClipStatus.SUCCESS,
        truth["video_uuids"][0],
    )
    assert clip.attempts[second.task_uuid].status is ClipStatus.QUEUED
    assert after.status is ProjectStatus.COMPLETED
    status = after.public_status().wire()
    assert status["clips"] == {first.task_uuid: clip.video_url}
    assert [a["task_uuid"] for a in status["results"][0]["attempts"]] == [second.task_uuid]

    # The retry's task was still on its way to Runware: it is never submitted now (nobody
    # needs it), only asked about, since an earlier submit may have reached Runware.
    handler = SubmitHandler(
        world.projects,
        world.runware,
        world.publisher,
        SubmitterSettings(**runware_settings(world.sim), not_found_grace_s=NOT_FOUND_GRACE_S),
        planner=FixedLadderPlanner(Backoff(first_s=0.05, cap_s=0.2, factor=2)),
        clock=utcnow,
    )
    await handler(second)
    assert second.task_uuid not in {task["task_uuid"] for task in await world.sim.tasks()}
    assert world.publisher.sent_to(CHECK_CLIP) == []
    (verify,) = world.publisher.sent_to(SUBMIT_CLIP)  # not visible yet: asked again later
    assert verify.final_error is not None
    assert verify.final_error["code"] == "taskReplaced"

    # It turns up (an earlier submit got through): bought, so it is followed to its end
    # and recorded among the attempts, cost included.
    await world.runware.submit_video(video_request(second, webhook_url=None))
    await handler(verify)
    (follow,) = world.publisher.sent_to(CHECK_CLIP)
    assert follow.task_uuid == second.task_uuid
    kept = (await world.project(project.id)).clips[0].attempts[second.task_uuid].lease
    assert kept is not None
    assert (follow.token, follow.lease_until) == (kept.token, kept.until)  # it renews that lease
    await world.until_finished_at_runware(second.task_uuid)
    await check(follow)

    final = await world.project(project.id)
    earlier = final.clips[0].attempts[second.task_uuid]
    assert (earlier.status, earlier.cost) == (ClipStatus.SUCCESS, truth["cost"])
    assert final.clips[0].task_uuid == first.task_uuid
    assert final.cost.known == 2
    # Its cost is told (clip.attempt_succeeded); the clip and the project stay as they were.
    assert (final.seq, final.status, final.counts) == (after.seq + 1, after.status, after.counts)


async def test_a_task_an_earlier_video_replaced_is_followed_to_its_end_by_its_chain(
    world: World, check: CheckHandler, hint: HintHandler
) -> None:
    """The retry's task runs at Runware and is billed: its chain goes on renewing its lease
    (kept in its attempt) after the earlier task's video replaced it, and records its end."""
    project = await world.new_project("a fox")
    first = world.submit_of(project)
    await world.projects.mark_processing(project.id, 0, first.task_uuid, token=first.token)
    await check(await world.check_of(project, age_s=NOT_FOUND_GRACE_S + 1))  # not found: failed
    retried = await world.projects.retry(project.id, tenant_id=world.tenant_id)
    assert retried is not None
    second = world.submit_of(retried.project)
    await world.projects.mark_processing(project.id, 0, second.task_uuid, token=second.token)
    chain = await world.check_of(retried.project)
    soon = utcnow() + timedelta(seconds=1)
    await world.projects.renew_lease(
        project.id, 0, token=chain.token, until_was=chain.lease_until, until=soon
    )
    # The first task turns up at Runware after all, and its video replaces the retry's task.
    await world.runware.submit_video(video_request(first, webhook_url=None))
    await world.until_finished_at_runware(first.task_uuid)
    await hint(CheckHintedTasks(project_id=project.id, scene_index=0, task_uuids=[first.task_uuid]))
    assert (await world.project(project.id)).clips[0].task_uuid == first.task_uuid

    # Not at Runware yet (within the grace): the chain's next check comes after its lease's end.
    await check(chain.model_copy(update={"lease_until": soon}))

    (following,) = world.publisher.sent_to(CHECK_CLIP)
    kept = (await world.project(project.id)).clips[0].attempts[second.task_uuid].lease
    assert kept is not None
    assert (following.task_uuid, following.lease_until) == (second.task_uuid, kept.until)
    await world.runware.submit_video(video_request(second, webhook_url=None))
    await world.until_finished_at_runware(second.task_uuid)
    await check(following)
    final = (await world.project(project.id)).clips[0]
    ended = final.attempts[second.task_uuid]
    assert (ended.status, ended.lease) == (ClipStatus.SUCCESS, None)
    assert final.task_uuid == first.task_uuid


def messages_handled(queue: str, outcome: str) -> float:
    labels = {"queue": queue, "outcome": outcome}
    return REGISTRY.get_sample_value("reelflow_messages_total", labels) or 0.0


# --- the service ------------------------------------------------------------------------------


async def test_main_polls_clips_to_the_end_and_returns_soon_after_stop(
    world: World, settings: Settings
) -> None:
    project = await world.processing(await world.new_project("a fox [sim:latency=30]"))

    async def succeeded() -> bool:
        return (await world.project(project.id)).clips[0].status is ClipStatus.SUCCESS

    stop = asyncio.Event()
    async with running(main(settings, stop=stop), stop) as task:
        await world.publisher.send(CHECK_CLIP, await world.check_of(project), delay_s=0.05)
        await eventually(succeeded, "the clip succeeded")
        assert not task.done()
    assert task.exception() is None
