"""The submitter against a real RabbitMQ, MongoDB and the Runware simulator.

Ground truth comes from the simulator (how often a task UUID was submitted,
whether it is billed), not from what the submitter says about itself.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from reelflow_common.accounting import Charge, TenantLimits
from reelflow_common.backoff import Backoff
from reelflow_common.broker import PublishError
from reelflow_common.domain import ClipRequest, ClipStatus, ProjectStatus
from reelflow_common.messages import CheckClip, CheckClips, ClipUpdated, SubmitClip
from reelflow_common.polling import FixedLadderPlanner
from reelflow_common.polling.delivery import CheckBundles
from reelflow_common.runware import (
    RunwareClient,
    RunwareError,
    SubmitBatcher,
    SubmitResult,
    VideoRequest,
)
from reelflow_common.settings import RunwareSettings
from reelflow_common.store import (
    ClipState,
    ClipTask,
    NewProject,
    Project,
    TaskFailed,
    TaskSucceeded,
)
from reelflow_common.store.timefmt import utcnow
from reelflow_common.topology import CHECK_CLIP, SUBMIT_CLIP
from reelflow_poller.settings import Settings as PollerSettings
from reelflow_runware_sim.config import SimConfig
from reelflow_runware_sim.testing import RunningSimulator
from reelflow_submitter import main as submitter_main
from reelflow_submitter.handlers import SubmitHandler
from reelflow_submitter.main import main
from reelflow_submitter.service import video_request
from reelflow_submitter.settings import Settings
from reelflow_submitter.throttle import RunwareThrottle
from tests.integration.worker_helpers import (
    FAST_LADDERS,
    World,
    check_handler,
    died_in,
    handled_first,
    refuse_checks,
    running,
    runware_settings,
)
from tests.relay import TcpProxy
from tests.waiting import DEADLINE_S, eventually, eventually_returns

pytestmark = pytest.mark.integration

MAX_ATTEMPTS = 4
LEASE_S = 600.0
#: a simulator that answers every request 503 until a test brings it back
RUNWARE_DOWN = pytest.mark.parametrize(
    "runware_sim_config", [SimConfig(port=0, speedup=1000, seed=1234, rate_503=1.0)]
)


@pytest.fixture
def settings(settings_for: Callable[..., Any], runware_sim: RunningSimulator) -> Settings:
    settings: Settings = settings_for(
        Settings,
        http_host="127.0.0.1",
        http_port=0,
        submit_max_attempts=MAX_ATTEMPTS,
        lease_s=LEASE_S,
        not_found_grace_s=0,
        **FAST_LADDERS,
        **runware_settings(runware_sim),
    )
    return settings


@pytest.fixture
def poller_settings(
    settings_for: Callable[..., Any], runware_sim: RunningSimulator
) -> PollerSettings:
    """The poller's settings beside ``settings``: its check handler follows what was submitted."""
    found: PollerSettings = settings_for(
        PollerSettings,
        http_host="127.0.0.1",
        http_port=0,
        lease_s=LEASE_S,
        not_found_grace_s=0,
        **FAST_LADDERS,
        **runware_settings(runware_sim),
    )
    return found


class Clock:
    """The database's clock, as the handler sees it; a test moves it forward."""

    def __init__(self) -> None:
        self.ahead = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.ahead


def submit_handler(
    world: World,
    settings: Settings,
    clock: Callable[[], datetime] = utcnow,
    *,
    runware: RunwareClient | None = None,
    throttle: RunwareThrottle | None = None,
    shared: SubmitBatcher | None = None,
) -> SubmitHandler:
    return SubmitHandler(
        world.projects,
        runware or world.runware,
        world.publisher,
        settings,
        planner=FixedLadderPlanner.from_settings(settings),
        clock=clock,
        rng=random.Random(0),
        throttle=throttle,
        shared=shared,
    )


@pytest.fixture
def handler(world: World, settings: Settings) -> SubmitHandler:
    return submit_handler(world, settings)


def submit_of(world: World, project: Project, index: int = 0) -> SubmitClip:
    return world.submit_of(project, index)


async def test_queued_clip_is_submitted_once_then_processing_and_polled(
    world: World, handler: SubmitHandler, settings: Settings
) -> None:
    project = await world.new_project("a fox in the snow")
    task_uuid = project.clips[0].task_uuid
    events = await world.events()
    checks = await world.inbox(CHECK_CLIP)
    message = submit_of(world, project)

    await handler(message)

    clip = (await world.project(project.id)).clips[0]
    assert clip.status is ClipStatus.PROCESSING
    assert clip.submitted_at is not None
    assert clip.lease is not None
    assert clip.lease.token == message.token
    [event] = await world.settle_events(events)
    assert isinstance(event, ClipUpdated)
    assert (event.seq, event.clip.status, event.task_uuid) == (1, ClipStatus.PROCESSING, task_uuid)
    assert event.counts.pending == 1
    check, raw = await checks.next_of(CheckClip)
    assert (check.project_id, check.scene_index, check.task_uuid, check.check) == (
        project.id,
        0,
        task_uuid,
        1,
    )
    assert (check.token, check.lease_until) == (message.token, clip.lease.until)
    assert (check.model, check.duration, check.width, check.height) == ("google:3@3", 4, 1280, 720)
    assert check.correlation_id == "req-1"
    assert check.submitted_at == clip.submitted_at
    assert (
        message.scene_count == check.scene_count == 1
    )  # so the clip's end finishes the project with it
    # It came through the poll ladder's first rung, not straight to the work queue.
    first_rung = world.topology.wait_queue_for(CHECK_CLIP, settings.poll_initial_delay_s)
    assert died_in(raw) == first_rung
    truth = await world.sim.task(task_uuid)
    assert (truth["accepted"], truth["submissions"], truth["billed"]) == (True, 1, True)


async def test_a_lost_first_check_leaves_the_clip_announced_with_its_lease_expired(
    world: World, handler: SubmitHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check and the clip's event go out side by side: the event is not held back by
    the check, and a check the broker did not confirm leaves the clip to the reconciler
    at once (its lease expired) and the message to be retried."""
    project = await world.new_project("a fox in the snow")
    events = await world.events()
    refuse_checks(world, monkeypatch, PublishError("the check was not confirmed"))

    with pytest.raises(PublishError, match="the check was not confirmed"):
        await handler(submit_of(world, project))

    clip = (await world.project(project.id)).clips[0]
    assert clip.status is ClipStatus.PROCESSING
    assert clip.lease is not None
    assert clip.lease.until <= utcnow()
    [event] = await world.settle_events(events)
    assert isinstance(event, ClipUpdated)
    assert (event.seq, event.clip.status) == (1, ClipStatus.PROCESSING)


async def test_lost_answer_is_retried_and_the_retry_finds_the_task_already_there(
    world: World, handler: SubmitHandler
) -> None:
    project = await world.new_project("a fox [sim:drop]")
    task_uuid = project.clips[0].task_uuid
    retries = await world.inbox(SUBMIT_CLIP)

    first = submit_of(world, project)
    await handler(first)

    # The answer was lost: the clip still reads as queued, and a retry is on its way.
    assert (await world.project(project.id)).clips[0].status is ClipStatus.QUEUED
    retry, raw = await retries.next_of(SubmitClip)
    assert (retry.task_uuid, retry.attempt, retry.correlation_id) == (task_uuid, 2, "req-1")
    assert (retry.token, retry.request) == (first.token, first.request)
    assert retry.first_attempt_at is not None
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
    message = submit_of(world, project)
    # The crashed submitter got this far: Runware accepted the task, nothing was written.
    await world.runware.submit_video(video_request(message, webhook_url=None))

    await handler(message)

    assert (await world.project(project.id)).clips[0].status is ClipStatus.PROCESSING
    assert [m.task_uuid for m in world.publisher.sent_to(CHECK_CLIP)] == [message.task_uuid]
    assert world.publisher.sent_to(SUBMIT_CLIP) == []
    truth = await world.sim.task(message.task_uuid)
    assert (truth["submissions"], truth["billed"]) == (2, True)
    assert (await world.sim.stats())["tasks"] == 1


async def test_a_clip_accepted_at_the_end_of_its_wait_is_tracked_not_failed(
    world: World, settings: Settings
) -> None:
    no_wait = settings.model_copy(update={"poll_max_age_s": 0.001})
    handler = submit_handler(world, no_wait)
    project = await world.new_project("a fox [sim:drop]")  # stored and billed, answer lost

    await handler(submit_of(world, project))

    # No answer, and the wait is over: Runware is asked, once the task would be visible.
    (verify,) = world.publisher.sent_to(SUBMIT_CLIP)
    assert verify.final_error is not None
    assert verify.final_error["code"] == "runwareUnavailable"
    await handler(verify)

    assert (await world.project(project.id)).clips[0].status is ClipStatus.PROCESSING
    assert len(world.publisher.sent_to(CHECK_CLIP)) == 1
    truth = await world.sim.task(project.clips[0].task_uuid)
    assert (truth["submissions"], truth["billed"]) == (1, True)


async def test_after_the_last_attempt_an_unknown_task_is_awaited_for_the_visibility_grace(
    world: World, settings: Settings
) -> None:
    graceful = settings.model_copy(update={"not_found_grace_s": 120})
    clock = Clock()
    handler = submit_handler(world, graceful, clock)
    project = await world.new_project("a fox", duration=5)  # refused: 5 s is not offered
    # A later attempt: an earlier one may have reached Runware, so Runware is asked first.
    second = submit_of(world, project).model_copy(
        update={"attempt": 2, "first_attempt_at": clock()}
    )

    await handler(second)

    # Runware does not know the task, but it may not be visible yet: ask again later.
    (again,) = world.publisher.sent_to(SUBMIT_CLIP)
    assert again.final_error is not None
    assert again.final_error["code"] == "unsupportedDuration"
    assert again.first_attempt_at == second.first_attempt_at
    assert (await world.project(project.id)).clips[0].status is ClipStatus.QUEUED

    clock.ahead = timedelta(seconds=121)
    await handler(again)

    clip = (await world.project(project.id)).clips[0]
    assert clip.status is ClipStatus.FAILED
    assert clip.error is not None
    assert clip.error["code"] == "unsupportedDuration"
    assert (await world.sim.stats())["task_types"] == {"videoInference": 1, "getResponse": 2}


class RecoveringRunware(RunwareClient):
    """The test's Runware client; the simulator comes back right after the ``outage``-th
    refused submit, so the request after it is whatever the submitter does next."""

    def __init__(self, sim: RunningSimulator, outage: int) -> None:
        super().__init__(RunwareSettings(**runware_settings(sim)))
        self.sim = sim
        self.outage = outage
        self.refused = 0

    async def submit_video(self, request: VideoRequest) -> SubmitResult:
        try:
            return await super().submit_video(request)
        except RunwareError:
            self.refused += 1
            if self.refused == self.outage:
                self.sim.simulator.config = self.sim.config.model_copy(update={"rate_503": 0.0})
            raise


@RUNWARE_DOWN
async def test_a_runware_outage_spends_no_attempts_and_the_clip_is_submitted_once_it_is_back(
    world: World, settings: Settings, poller_settings: PollerSettings
) -> None:
    outage = 3 * MAX_ATTEMPTS  # every submit refused (503) for three attempt budgets
    project = await world.new_project("a fox")
    task_uuid = project.clips[0].task_uuid
    events = await world.events()

    async with (
        aclosing(RecoveringRunware(world.sim, outage)) as runware,
        world.consuming(SUBMIT_CLIP, SubmitClip, submit_handler(world, settings, runware=runware)),
        world.consuming(CHECK_CLIP, CheckClip, check_handler(world, poller_settings)),
    ):
        await world.publisher.send(SUBMIT_CLIP, submit_of(world, project))
        status = await clip_end(world, project)

    # Runware was down, it never refused the clip: the clip waited, queued, saying why,
    # and was submitted once Runware was back, then followed to its video.
    assert status is ClipStatus.SUCCESS
    assert runware.refused == outage
    updates = [e.clip for e in await world.settle_events(events) if isinstance(e, ClipUpdated)]
    assert [(clip.status, clip.waiting) for clip in updates] == [
        (
            ClipStatus.QUEUED,
            {
                "code": "serviceUnavailable",
                "message": "Temporary capacity constraint. Retry later.",
            },
        ),
        (ClipStatus.PROCESSING, None),
        (ClipStatus.SUCCESS, None),
    ]
    assert (await world.project(project.id)).clips[0].waiting is None
    # Runware's own record: one task, accepted at the first submit it answered, billed once.
    truth = await world.sim.task(task_uuid)
    assert (truth["accepted"], truth["submissions"], truth["billed"]) == (True, 1, True)
    assert (await world.sim.stats())["tasks"] == 1


@RUNWARE_DOWN
async def test_a_clip_runware_refuses_after_an_outage_fails_with_its_code_once_it_is_back(
    world: World, settings: Settings
) -> None:
    project = await world.new_project("a fox", duration=5)  # Veo 3.1 Fast: 4, 6, 7 or 8 s

    async with (
        aclosing(RecoveringRunware(world.sim, outage=2)) as runware,
        world.consuming(SUBMIT_CLIP, SubmitClip, submit_handler(world, settings, runware=runware)),
    ):
        await world.publisher.send(SUBMIT_CLIP, submit_of(world, project))
        status = await clip_end(world, project)

    assert status is ClipStatus.FAILED
    clip = (await world.project(project.id)).clips[0]
    assert clip.error is not None
    assert clip.error["code"] == "unsupportedDuration"
    assert clip.waiting is None
    # Refused at the first submit Runware answered, then asked (an earlier submit had
    # no answer) before it failed: three submits, one question, nothing billed.
    assert (await world.sim.stats())["task_types"] == {"videoInference": 3, "getResponse": 1}
    assert runware.refused == 3
    assert (await world.sim.stats())["tasks"] == 0


def an_hour_of_outage(world: World, project: Project, clock: Clock) -> SubmitClip:
    """The clip's submit after 39 unanswered ones, an hour after the first."""
    return submit_of(world, project).model_copy(
        update={"attempt": 40, "outages": 39, "first_attempt_at": clock() - timedelta(hours=1)}
    )


@RUNWARE_DOWN
async def test_past_its_wait_a_clip_fails_only_once_its_last_submit_would_be_visible(
    world: World, settings: Settings
) -> None:
    graceful = settings.model_copy(update={"not_found_grace_s": 120, "poll_max_age_s": 3600})
    clock = Clock()
    handler = submit_handler(world, graceful, clock)
    project = await world.new_project("a fox")

    await handler(an_hour_of_outage(world, project, clock))

    # Its last submit had no answer: Runware may have stored it a moment ago. Asking now
    # could find nothing yet and fail a clip whose task then appears (a retry would buy a
    # second one), so Runware is asked once that task would be visible.
    [sent] = world.publisher.sent
    verify = sent.message
    assert isinstance(verify, SubmitClip)
    assert (sent.work_queue, sent.delay_s) == (SUBMIT_CLIP, 120)
    assert verify.final_error is not None
    assert verify.final_error["code"] == "runwareUnavailable"
    assert (await world.project(project.id)).clips[0].status is ClipStatus.QUEUED
    assert "getResponse" not in (await world.sim.stats())["task_types"]

    # Runware is back and has no such task after the grace: the clip fails, nothing billed.
    world.sim.simulator.config = world.sim.config.model_copy(update={"rate_503": 0.0})
    clock.ahead = timedelta(seconds=121)
    await handler(verify)

    clip = (await world.project(project.id)).clips[0]
    assert clip.status is ClipStatus.FAILED
    assert clip.error is not None
    assert clip.error["code"] == "runwareUnavailable"
    assert clip.error["message"].startswith("Runware was unavailable for 1:00:00")
    assert (await world.sim.stats())["tasks"] == 0


@RUNWARE_DOWN
async def test_after_an_outage_the_grace_counts_from_the_last_unanswered_submit(
    world: World, settings: Settings
) -> None:
    # A grace longer than the ladder's longest wait (120 s): the verify comes before it ends.
    graceful = settings.model_copy(update={"not_found_grace_s": 300, "poll_max_age_s": 3600})
    clock = Clock()
    handler = submit_handler(world, graceful, clock)
    project = await world.new_project("a fox")
    await handler(an_hour_of_outage(world, project, clock))
    (verify,) = world.publisher.sent_to(SUBMIT_CLIP)
    world.publisher.sent.clear()

    # Runware is back, 121 s after that unanswered submit: it may not show the task yet.
    world.sim.simulator.config = world.sim.config.model_copy(update={"rate_503": 0.0})
    clock.ahead = timedelta(seconds=121)
    await handler(verify)

    assert (await world.project(project.id)).clips[0].status is ClipStatus.QUEUED
    (again,) = world.publisher.sent_to(SUBMIT_CLIP)
    clock.ahead = timedelta(seconds=301)
    await handler(again)
    clip = (await world.project(project.id)).clips[0]
    assert clip.status is ClipStatus.FAILED
    assert clip.error is not None
    assert clip.error["code"] == "runwareUnavailable"


async def test_a_refusal_after_an_unanswered_submit_waits_out_that_submits_grace(
    world: World, settings: Settings
) -> None:
    graceful = settings.model_copy(update={"not_found_grace_s": 120})
    clock = Clock()
    handler = submit_handler(world, graceful, clock)
    project = await world.new_project("a fox", duration=5)  # refused: 5 s is not offered
    # An hour of outage, the last unanswered submit 10 s ago, then Runware refuses.
    after_outage = submit_of(world, project).model_copy(
        update={
            "attempt": 2,
            "outages": 1,
            "first_attempt_at": clock() - timedelta(hours=1),
            "last_ambiguous_at": clock() - timedelta(seconds=10),
        }
    )

    await handler(after_outage)

    # That unanswered submit may have stored the task a moment ago: not failed yet.
    assert (await world.project(project.id)).clips[0].status is ClipStatus.QUEUED
    (verify,) = world.publisher.sent_to(SUBMIT_CLIP)
    assert verify.final_error is not None
    assert verify.final_error["code"] == "unsupportedDuration"
    clock.ahead = timedelta(seconds=111)
    await handler(verify)
    assert (await world.project(project.id)).clips[0].status is ClipStatus.FAILED


async def charged_project(
    world: World, limits: TenantLimits, prompt: str = "a fox", *, scenes: int = 1
) -> Project:
    """A project of ``scenes`` scenes of a tenant with a budget: each clip holds $0.25 on the
    ledger."""
    reserved = await world.projects.ledgers.reserve(
        world.tenant_id, limits, clips=scenes, usd=0.25 * scenes, now=utcnow()
    )
    assert reserved is not None
    new = NewProject(
        tenant_id=world.tenant_id,
        title="On a budget",
        model="google:3@3",
        scenes=[ClipRequest(prompt=prompt, duration=4) for _ in range(scenes)],
        charges=reserved.split([0.25] * scenes),
    )
    return await world.project((await world.projects.create(new)).project.id)


async def retried_on_budget(world: World, project: Project, limits: TenantLimits) -> None:
    """The tenant retries the project's failed clip: its new task holds $0.25 on the ledger."""

    async def reserve(_project: Project, clips: list[ClipState]) -> dict[int, Charge]:
        held = await world.projects.ledgers.reserve(
            world.tenant_id, limits, clips=len(clips), usd=0.25, now=utcnow()
        )
        assert held is not None
        return {clips[0].scene_index: held.split([0.25])[0]}

    assert await world.projects.retry(project.id, tenant_id=world.tenant_id, reserve=reserve)


@RUNWARE_DOWN
async def test_a_retrys_task_an_earlier_video_replaced_while_it_waited_is_never_bought(
    world: World, settings: Settings
) -> None:
    handler = submit_handler(world, settings)
    limits = TenantLimits(daily_budget_usd=10.0)
    project = await charged_project(world, limits)
    first = submit_of(world, project)
    lost = TaskFailed(code="taskFailedOrNotFound", message="Runware does not know the task.")
    await world.projects.record(project.id, 0, first.task_uuid, lost)  # its $0.25 freed
    await retried_on_budget(world, project, limits)
    second = submit_of(world, await world.project(project.id))
    await handler(second)  # Runware is down: no answer, the submit is retried later
    (again,) = world.publisher.sent_to(SUBMIT_CLIP)
    world.publisher.sent.clear()
    # Meanwhile the first task turns up at Runware after all: the clip takes its video.
    late = TaskSucceeded(video_url="https://cdn.test/late.mp4", cost=0.4)
    assert (await world.projects.record(project.id, 0, first.task_uuid, late)).applied

    world.sim.simulator.config = world.sim.config.model_copy(update={"rate_503": 0.0})
    await handler(again)

    # Runware is asked, never sent the task: it was not bought, and its money is freed.
    assert second.task_uuid not in {task["task_uuid"] for task in await world.sim.tasks()}
    # the one submit refused (503) during the outage, then one question
    assert (await world.sim.stats())["task_types"] == {"videoInference": 1, "getResponse": 1}
    assert world.publisher.sent_to(SUBMIT_CLIP) == []
    clip = (await world.project(project.id)).clips[0]
    assert (clip.task_uuid, clip.status) == (first.task_uuid, ClipStatus.SUCCESS)
    assert clip.attempts[second.task_uuid].status is ClipStatus.FAILED
    ledger = await world.projects.ledgers.read(world.tenant_id)
    assert ledger.open == 0
    assert ledger.committed_in(utcnow().strftime("%Y-%m-%d")) == pytest.approx(0.4)


async def unanswered_first_submit(
    world: World, handler: SubmitHandler, project: Project
) -> SubmitClip:
    """Submit the clip once, unanswered (Runware down, or the answer lost): the retry its
    chain scheduled (and nothing recorded as sent any more)."""
    await handler(submit_of(world, project))
    again: SubmitClip
    (again,) = world.publisher.sent_to(SUBMIT_CLIP)
    world.publisher.sent.clear()
    return again


async def stored_unanswered(
    world: World, settings: Settings, limits: TenantLimits
) -> tuple[Project, SubmitClip]:
    """A charged clip whose first submit Runware stored but whose answer was lost: the
    project, and the retry its chain scheduled."""
    project = await charged_project(world, limits, "a fox [sim:drop]")
    return project, await unanswered_first_submit(world, submit_handler(world, settings), project)


async def cancel(world: World, project: Project) -> None:
    """The tenant cancels the project, as the API does."""
    assert await world.projects.cancel(project.id, tenant_id=world.tenant_id) is not None


async def nothing_bought(world: World, project: Project) -> None:
    """Runware never had the cancelled clip's task: the chain sent nothing more, the clip
    stays cancelled (its task, which the cancel held with its charge, ended ``failed`` by
    its chain, never submitted, listed nowhere), and its tenant's ledger holds nothing."""
    task_uuid = project.clips[0].task_uuid
    assert task_uuid not in {task["task_uuid"] for task in await world.sim.tasks()}
    assert world.publisher.sent == []
    clip = (await world.project(project.id)).clips[0]
    assert clip.status is ClipStatus.CANCELLED
    ended = clip.attempts[task_uuid]
    assert (ended.status, ended.submitted_at, ended.lease) == (ClipStatus.FAILED, None, None)
    assert clip.view().attempts is None
    ledger = await world.projects.ledgers.read(world.tenant_id)
    assert (ledger.open, ledger.committed_in(utcnow().strftime("%Y-%m-%d"))) == (0, 0)


async def held(world: World) -> tuple[int, float]:
    """The tenant's clips in flight, and its dollars committed today."""
    ledger = await world.projects.ledgers.read(world.tenant_id)
    return ledger.open, ledger.committed_in(utcnow().strftime("%Y-%m-%d"))


def runware_back(world: World) -> None:
    """The simulator answers again after a ``RUNWARE_DOWN`` outage."""
    world.sim.simulator.config = world.sim.config.model_copy(update={"rate_503": 0.0})


@RUNWARE_DOWN
async def test_a_clip_cancelled_during_an_outage_is_not_bought_once_runware_is_back(
    world: World, settings: Settings
) -> None:
    handler = submit_handler(world, settings)
    project = await charged_project(world, TenantLimits(daily_budget_usd=10.0))
    again = await unanswered_first_submit(world, handler, project)
    await cancel(world, project)

    runware_back(world)
    await handler(again)

    # Not submitted again: only asked whether the unanswered submit had reached Runware
    # (it had not). The chain ends; the clip stays cancelled, with nothing billed.
    assert (await world.sim.stats())["task_types"] == {"videoInference": 1, "getResponse": 1}
    await nothing_bought(world, project)


async def test_a_cancelled_clips_chain_asks_runware_until_the_grace_is_over_without_a_lease(
    world: World, settings: Settings
) -> None:
    graceful = settings.model_copy(update={"not_found_grace_s": 120})
    clock = Clock()
    handler = submit_handler(world, graceful, clock)
    project = await world.new_project("a fox")
    # The chain's submit a moment ago went unanswered; its lease is about to need renewing.
    now = clock()
    retry = submit_of(world, project).model_copy(
        update={
            "attempt": 2,
            "outages": 1,
            "first_attempt_at": now,
            "last_ambiguous_at": now,
            "lease_until": now + timedelta(seconds=1),
        }
    )
    await cancel(world, project)

    await handler(retry)

    # Runware does not know the task yet, but may soon: the chain asks again later, though
    # the cancel took the lease it would have renewed (a task found then is followed).
    (again,) = world.publisher.sent_to(SUBMIT_CLIP)
    assert again.final_error is not None
    assert again.final_error["code"] == "clipGivenUp"
    world.publisher.sent.clear()
    clock.ahead = timedelta(seconds=121)
    await handler(again)

    # Past the grace: the chain ends, never having submitted, and the clip is as it was.
    assert (await world.sim.stats())["task_types"] == {"getResponse": 2}
    assert world.publisher.sent == []
    clip = (await world.project(project.id)).clips[0]
    assert (clip.status, clip.error) == (ClipStatus.CANCELLED, None)


def lease_renewals(world: World, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each lease renewal the store writes from now on matched its lease."""
    renewals: list[bool] = []
    collection = world.projects._projects
    update_one = collection.update_one

    async def counted(query: dict[str, Any], update: Any, **options: Any) -> Any:
        done = await update_one(query, update, **options)
        if any(name.endswith("lease.until") for name in update.get("$set", {})):
            renewals.append(done.matched_count == 1)
        return done

    monkeypatch.setattr(collection, "update_one", counted)
    return renewals


@pytest.mark.parametrize(
    "cancelled", [True, False], ids=["cancelled: held", "failed: nothing held"]
)
async def test_a_charged_given_up_chain_renews_only_the_lease_its_tasks_attempt_holds(
    world: World, settings: Settings, monkeypatch: pytest.MonkeyPatch, cancelled: bool
) -> None:
    graceful = settings.model_copy(update={"not_found_grace_s": 120})
    clock = Clock()
    handler = submit_handler(world, graceful, clock)
    project = await charged_project(world, TenantLimits(daily_budget_usd=10.0))
    task_uuid = project.clips[0].task_uuid
    # The chain's submit a moment ago went unanswered; its lease is about to need renewing.
    now = clock()
    soon = await lease_ends_soon(world, project, now + timedelta(seconds=1))
    retry = submit_of(world, project).model_copy(
        update={
            "attempt": 2,
            "outages": 1,
            "first_attempt_at": now,
            "last_ambiguous_at": now,
            "lease_until": soon,
        }
    )
    if cancelled:
        await cancel(world, project)  # the task waits in attempts.T, with the chain's lease
    else:
        # Failed by another path (a fork of the chain): the clip's end freed its charge.
        lost = TaskFailed(code="taskFailedOrNotFound", message="Runware does not know it.")
        assert (await world.projects.record(project.id, 0, task_uuid, lost)).applied
    renewals = lease_renewals(world, monkeypatch)

    await handler(retry)

    # Runware does not know the task yet: the chain asks again later. Its clip holds no
    # lease (given up on): it renews the one its task's attempt holds, if any, and no other.
    (again,) = world.publisher.sent_to(SUBMIT_CLIP)
    assert again.final_error is not None
    assert again.final_error["code"] == "clipGivenUp"
    attempt = (await world.project(project.id)).clips[0].attempts.get(task_uuid)
    if cancelled:
        assert renewals == [True]
        assert attempt is not None
        assert attempt.lease is not None
        assert attempt.lease.until == again.lease_until > soon
    else:
        assert renewals == []
        assert attempt is None
    world.publisher.sent.clear()
    clock.ahead = timedelta(seconds=121)
    await handler(again)

    # Past the grace: the chain ends, never having submitted; a held charge is freed, once.
    assert renewals == ([True] if cancelled else [])
    assert world.publisher.sent == []
    assert await held(world) == pytest.approx((0, 0.0))


async def lease_ends_soon(world: World, project: Project, until: datetime) -> datetime:
    """The clip's chain waited (in its lane, or through an outage): its lease ends ``until``."""
    await world.projects._projects.update_one(
        {"_id": project.id}, {"$set": {"clips.0.lease.until": until}}
    )
    lease = (await world.project(project.id)).clips[0].lease
    assert lease is not None
    return lease.until


class HeldThrottle(RunwareThrottle):
    """A 429's pause that lasts until the test lets submits go (sets ``released``)."""

    def __init__(self) -> None:
        super().__init__(Backoff(first_s=1.0, cap_s=1.0), utcnow)
        self.waiting = asyncio.Event()
        self.released = asyncio.Event()

    async def wait(self) -> None:
        self.waiting.set()
        await self.released.wait()


@RUNWARE_DOWN
async def test_a_clip_cancelled_while_submits_pause_for_a_rate_limit_is_not_bought(
    world: World, settings: Settings
) -> None:
    throttle = HeldThrottle()
    throttle.released.set()
    handler = submit_handler(world, settings, throttle=throttle)
    project = await world.new_project("a fox")
    again = await unanswered_first_submit(world, handler, project)

    throttle.released.clear()
    throttle.waiting.clear()
    retry = asyncio.create_task(handler(again))
    await asyncio.wait_for(throttle.waiting.wait(), DEADLINE_S)  # paused by another's 429
    await cancel(world, project)
    runware_back(world)
    throttle.released.set()
    await asyncio.wait_for(retry, DEADLINE_S)

    # The clip is read once the pause is over, not before it: not bought.
    assert (await world.sim.stats())["task_types"] == {"videoInference": 1, "getResponse": 1}
    assert (await world.project(project.id)).clips[0].status is ClipStatus.CANCELLED


async def test_a_task_an_unanswered_submit_got_to_runware_before_a_cancel_is_followed(
    world: World, settings: Settings, poller_settings: PollerSettings
) -> None:
    limits = TenantLimits(daily_budget_usd=10.0)
    project, again = await stored_unanswered(world, settings, limits)
    task_uuid = project.clips[0].task_uuid
    handler = submit_handler(world, settings)
    await cancel(world, project)

    await handler(again)

    # Runware has the task (and bills it): never submitted again, but followed to its end,
    # so the video the tenant pays for is recorded beside the cancelled clip.
    assert world.publisher.sent_to(SUBMIT_CLIP) == []
    assert [check.task_uuid for check in world.publisher.sent_to(CHECK_CLIP)] == [task_uuid]
    await followed_to_its_video(world, poller_settings, project)


def clip_reads(world: World, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The projects whose clip the submitter reads (``ProjectStore.clip_task``) from now on."""
    reads: list[str] = []
    read = world.projects.clip_task

    async def counted(
        project_id: str, scene_index: int, task_uuid: str | None = None
    ) -> ClipTask | None:
        reads.append(project_id)
        return await read(project_id, scene_index, task_uuid)

    monkeypatch.setattr(world.projects, "clip_task", counted)
    return reads


async def test_a_first_submit_that_comes_after_a_cancel_follows_the_task_it_bought(
    world: World,
    settings: Settings,
    poller_settings: PollerSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = submit_handler(world, settings)
    reads = clip_reads(world, monkeypatch)
    project = await charged_project(world, TenantLimits(daily_budget_usd=10.0))
    task_uuid = project.clips[0].task_uuid
    # Cancelled while its first submit was on its way, within ``submit_read_after_s`` of
    # the POST: a prompt first submit, handled for the first time, reads nothing, so Runware
    # takes the task (and bills it).
    await cancel(world, project)

    await handled_first(world, handler, submit_of(world, project))

    # The clip stays cancelled, and the chain follows the task it bought to its video.
    assert reads == []
    assert [check.task_uuid for check in world.publisher.sent_to(CHECK_CLIP)] == [task_uuid]
    await followed_to_its_video(world, poller_settings, project)


async def test_a_first_submit_that_waited_in_its_lane_past_a_cancel_costs_no_runware_call(
    world: World, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real visibility grace: a chain that asked Runware would ask again and again.
    graceful = settings.model_copy(update={"not_found_grace_s": 120})
    clock = Clock()
    handler = submit_handler(world, graceful, clock)
    handled = asyncio.Event()

    async def consumed(message: SubmitClip) -> None:
        await handler(message)
        handled.set()

    reads = clip_reads(world, monkeypatch)
    project = await charged_project(world, TenantLimits(daily_budget_usd=10.0))
    # The tenant's lane held the clip's first submit longer than ``submit_read_after_s``;
    # the tenant cancelled meanwhile. Its charge is held until its chain's word.
    await cancel(world, project)
    assert await held(world) == pytest.approx((1, 0.25))
    clock.ahead = timedelta(seconds=settings.submit_read_after_s + 1)
    await world.publisher.send(SUBMIT_CLIP, submit_of(world, project))
    world.publisher.sent.clear()

    async with world.consuming(SUBMIT_CLIP, SubmitClip, consumed):
        await asyncio.wait_for(handled.wait(), DEADLINE_S)

    # Read, found cancelled, and handled for the first time as the chain's first submit:
    # nothing of it can be at Runware, so nothing is asked, bought or followed. The message
    # is acknowledged, not retried or dead-lettered; the clip stays cancelled.
    assert reads == [project.id]
    assert (await world.sim.stats())["task_types"] == {}
    for queue in (
        world.topology.queue(SUBMIT_CLIP),
        world.topology.dead_letter_queue(SUBMIT_CLIP),
    ):
        assert await world.ready_count(queue) == 0
    await nothing_bought(world, project)


async def test_a_redelivered_first_submit_of_a_cancelled_clip_asks_runware_first(
    world: World, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    handler = submit_handler(world, settings, clock)
    reads = clip_reads(world, monkeypatch)
    project = await charged_project(world, TenantLimits(daily_budget_usd=10.0))
    message = submit_of(world, project)
    await cancel(world, project)
    assert await held(world) == pytest.approx((1, 0.25))  # until its chain's word
    clock.ahead = timedelta(seconds=settings.submit_read_after_s + 1)

    # Handled outside a first delivery (as a redelivery after its holder crashed): that
    # holder may have got the task to Runware, so Runware is asked (it had not).
    await handler(message)

    assert reads == [project.id]
    assert (await world.sim.stats())["task_types"] == {"getResponse": 1}
    await nothing_bought(world, project)


async def followed_to_its_video(world: World, settings: PollerSettings, project: Project) -> None:
    """The poll chain the submitter started records the cancelled clip's video in its
    ``attempts``, and the tenant's ledger holds its cost."""
    task_uuid = project.clips[0].task_uuid
    async with world.consuming(CHECK_CLIP, CheckClip, check_handler(world, settings)):

        async def recorded() -> bool:
            attempt = (await world.project(project.id)).clips[0].attempts.get(task_uuid)
            return attempt is not None and attempt.status is ClipStatus.SUCCESS

        await eventually(recorded, "the cancelled clip's video recorded in its attempts")

    truth = await world.sim.task(task_uuid)
    assert (truth["submissions"], truth["billed"]) == (1, True)
    clip = (await world.project(project.id)).clips[0]
    assert clip.status is ClipStatus.CANCELLED
    cost = clip.attempts[task_uuid].cost
    assert cost is not None
    ledger = await world.projects.ledgers.read(world.tenant_id)
    assert ledger.open == 0
    assert ledger.committed_in(utcnow().strftime("%Y-%m-%d")) == pytest.approx(cost)


@pytest.mark.parametrize("how", ["first submit in the no-read window", "unanswered submit"])
async def test_a_task_runware_takes_after_a_cancel_holds_its_charge_until_billed_once(
    world: World, settings: Settings, poller_settings: PollerSettings, how: str
) -> None:
    limits = TenantLimits(daily_budget_usd=10.0, max_clips_in_flight=1)
    if how == "unanswered submit":
        # Its first submit got through, its answer lost: the chain's retry asks Runware.
        project, message = await stored_unanswered(world, settings, limits)
    else:
        project = await charged_project(world, limits)
        message = submit_of(world, project)
    task_uuid = project.clips[0].task_uuid
    await cancel(world, project)
    # The chain may send it yet (or has): the cancel gives nothing back.
    assert await held(world) == pytest.approx((1, 0.25))

    if how == "unanswered submit":
        await submit_handler(world, settings)(message)
    else:
        await handled_first(world, submit_handler(world, settings), message)

    # Runware runs it: in flight still, its estimate committed, followed by the chain under
    # the lease the cancel moved with the task (no fresh token), its clip still cancelled.
    assert await held(world) == pytest.approx((1, 0.25))
    (check,) = world.publisher.sent_to(CHECK_CLIP)
    assert (check.task_uuid, check.token) == (task_uuid, message.token)
    await followed_to_its_video(
        world, poller_settings, project
    )  # billed once: its cost, 0 in flight
    attempt = (await world.project(project.id)).clips[0].attempts[task_uuid]
    assert attempt.late is False  # billed on the charge it held, not on its own


async def test_a_task_runware_took_before_its_clip_failed_and_was_retried_is_followed(
    world: World, settings: Settings, poller_settings: PollerSettings
) -> None:
    limits = TenantLimits(daily_budget_usd=10.0)
    project, again = await stored_unanswered(world, settings, limits)
    task_uuid = again.task_uuid
    # Meanwhile the clip fails by another path, and the tenant retries it: a new task is
    # the clip's, and the first one is a failed attempt.
    lost = TaskFailed(code="taskFailedOrNotFound", message="Runware does not know the task.")
    assert (await world.projects.record(project.id, 0, task_uuid, lost)).applied
    await retried_on_budget(world, project, limits)

    await submit_handler(world, settings)(again)

    # Not submitted again, but Runware has the first task and bills it: the chain follows
    # it, and the open clip takes its video.
    assert world.publisher.sent_to(SUBMIT_CLIP) == []
    assert [check.task_uuid for check in world.publisher.sent_to(CHECK_CLIP)] == [task_uuid]
    async with world.consuming(CHECK_CLIP, CheckClip, check_handler(world, poller_settings)):

        async def recorded() -> bool:
            clip = (await world.project(project.id)).clips[0]
            return (clip.task_uuid, clip.status) == (task_uuid, ClipStatus.SUCCESS)

        await eventually(recorded, "the first task's video taken by the retried clip")
    truth = await world.sim.task(task_uuid)
    assert (truth["submissions"], truth["billed"]) == (1, True)


@RUNWARE_DOWN
async def test_a_clip_whose_project_was_deleted_during_an_outage_is_not_bought(
    world: World, settings: Settings
) -> None:
    handler = submit_handler(world, settings)
    project = await world.new_project("a fox")
    again = await unanswered_first_submit(world, handler, project)
    assert (await world.projects._projects.delete_one({"_id": project.id})).deleted_count == 1

    runware_back(world)
    await handler(again)

    # Nowhere to record a task: neither bought nor asked about, and the chain ends.
    assert (await world.sim.stats())["task_types"] == {"videoInference": 1}
    assert world.publisher.sent == []


async def test_a_request_runware_refuses_fails_at_once_with_its_code_and_message(
    world: World, handler: SubmitHandler
) -> None:
    project = await world.new_project("a fox", duration=5)  # Veo 3.1 Fast: 4, 6, 7 or 8 s
    events = await world.events()

    await handled_first(world, handler, submit_of(world, project))

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


async def test_a_duplicate_submit_starts_no_second_chain_and_repeats_the_events(
    world: World, handler: SubmitHandler
) -> None:
    project = await world.new_project("a fox")
    message = submit_of(world, project)
    await handler(message)
    events = await world.events()

    await handler(message)

    [event] = await world.settle_events(events)
    assert isinstance(event, ClipUpdated)
    assert (event.seq, event.clip.status) == (1, ClipStatus.PROCESSING)
    assert len(world.publisher.sent_to(CHECK_CLIP)) == 1  # one live chain
    truth = await world.sim.task(message.task_uuid)
    # A duplicate (not the message's first handling) reads the clip, finds its task
    # processing, and sends nothing to Runware: nothing is bought twice.
    assert (truth["submissions"], truth["billed"]) == (1, True)
    assert (await world.sim.stats())["tasks"] == 1


async def test_a_duplicate_submit_for_a_finished_clip_only_repeats_its_events(
    world: World, handler: SubmitHandler
) -> None:
    project = await world.new_project("a fox", duration=5)
    message = submit_of(world, project)
    await handler(message)
    events = await world.events()

    await handler(message)

    published = await world.settle_events(events)
    assert [(type(e).__name__, e.seq) for e in published] == [
        ("ClipUpdated", 1),
        ("ProjectFinished", 2),
    ]
    assert world.publisher.sent == []
    assert (await world.project(project.id)).seq == 2


class OutOfCreditsUntilToppedUp(RunwareClient):
    """The test's Runware client: the account is out of credits, so every submit is refused
    outright, until the test tops it up (``topped_up``); then it is the simulator's."""

    def __init__(self, sim: RunningSimulator) -> None:
        super().__init__(RunwareSettings(**runware_settings(sim)))
        self.topped_up = False

    async def submit_video(self, request: VideoRequest) -> SubmitResult:
        if not self.topped_up:
            raise RunwareError("Insufficient credits.", code="insufficientCredits", http_status=402)
        return await super().submit_video(request)


async def test_a_first_submit_handled_again_after_its_clip_failed_and_was_retried_buys_nothing(
    world: World, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await world.new_project("a fox")
    first = submit_of(world, project)
    handled: list[SubmitClip] = []
    failed_once = asyncio.Event()
    retried = asyncio.Event()
    copy_handled = asyncio.Event()
    publish_events = world.publisher.publish_events

    async def unconfirmed_once(events: Any) -> None:
        if not failed_once.is_set():
            raise PublishError("the broker did not confirm the events")
        await publish_events(events)

    monkeypatch.setattr(world.publisher, "publish_events", unconfirmed_once)
    # However slow the machine, the copy comes "within submit_read_after_s": only its being
    # a copy can make it read the clip.
    prompt = settings.model_copy(update={"submit_read_after_s": 3600.0})
    async with aclosing(OutOfCreditsUntilToppedUp(world.sim)) as runware:
        handler = submit_handler(world, prompt, runware=runware)

        async def consumed(message: SubmitClip) -> None:
            handled.append(message)
            if len(handled) > 1:  # the copy the consume policy retries
                await retried.wait()
                await handler(message)
                copy_handled.set()
                return
            try:
                await handler(message)
            finally:
                failed_once.set()

        await world.publisher.send(SUBMIT_CLIP, first)
        async with world.consuming(SUBMIT_CLIP, SubmitClip, consumed):
            # The clip's first submit, handled for the first time and refused outright (out of
            # credits), fails the clip unasked; the broker does not confirm its events, so the
            # consume policy retries the message (a copy, a moment later).
            await asyncio.wait_for(failed_once.wait(), DEADLINE_S)
            clip = (await world.project(project.id)).clips[0]
            assert clip.error is not None
            assert (clip.status, clip.error["code"]) == (ClipStatus.FAILED, "insufficientCredits")
            # Credits topped up, the tenant retries the failed clip at once: a new task,
            # submitted and bought.
            runware.topped_up = True
            assert await world.projects.retry(project.id, tenant_id=world.tenant_id)
            second = submit_of(world, await world.project(project.id))
            assert second.task_uuid != first.task_uuid
            await handler(second)
            retried.set()
            # The retried copy of the first submit comes within ``submit_read_after_s`` of
            # the clip's queueing.
            await asyncio.wait_for(copy_handled.wait(), DEADLINE_S)

    # The copy read the clip and did not send the task the retry replaced: Runware bills the
    # clip once, for its new task, which alone is followed.
    assert [message.message_id for message in handled] == [first.message_id] * 2
    assert (await world.sim.task(first.task_uuid))["submissions"] == 0
    billed = [task["task_uuid"] for task in await world.sim.tasks() if task["billed"]]
    assert billed == [second.task_uuid]
    assert [check.task_uuid for check in world.publisher.sent_to(CHECK_CLIP)] == [second.task_uuid]
    # What the tenant sees: the clip runs its new task; the refused one is a failed attempt
    # that never reached Runware and costs nothing.
    clip = (await world.project(project.id)).clips[0]
    assert (clip.task_uuid, clip.status) == (second.task_uuid, ClipStatus.PROCESSING)
    refused = clip.attempts[first.task_uuid]
    assert (refused.status, refused.submitted_at, refused.cost) == (ClipStatus.FAILED, None, None)
    for queue in (
        world.topology.queue(SUBMIT_CLIP),
        world.topology.dead_letter_queue(SUBMIT_CLIP),
    ):
        assert await world.ready_count(queue) == 0


async def test_a_chain_whose_clip_another_chain_took_starts_nothing(
    world: World, handler: SubmitHandler
) -> None:
    project = await world.new_project("a fox")
    message = submit_of(world, project)
    stale = message.model_copy(update={"token": "taken-over-by-the-reconciler"})

    await handler(stale)

    assert (await world.project(project.id)).clips[0].status is ClipStatus.QUEUED
    assert world.publisher.sent == []


async def test_a_retry_close_to_the_end_of_its_lease_renews_it_and_a_stale_one_stops(
    world: World, handler: SubmitHandler, settings: Settings
) -> None:
    project = await world.new_project("a fox [sim:drop]")
    message = submit_of(world, project)
    soon = utcnow() + timedelta(seconds=1)
    await world.projects.renew_lease(
        project.id, 0, token=message.token, until_was=message.lease_until, until=soon
    )
    ending = message.model_copy(update={"lease_until": soon})

    await handler(ending)

    (retry,) = world.publisher.sent_to(SUBMIT_CLIP)
    lease = (await world.project(project.id)).clips[0].lease
    assert lease is not None
    assert retry.lease_until == lease.until > utcnow() + timedelta(seconds=LEASE_S / 2)

    stale = ending.model_copy(update={"token": "another-chain"})
    await submit_handler(world, settings)(stale)
    assert len(world.publisher.sent_to(SUBMIT_CLIP)) == 1  # no retry for the stale chain


def world_settings(handler: SubmitHandler) -> Settings:
    settings: Settings = handler._settings
    return settings


def messages_handled(outcome: str) -> float:
    sample = REGISTRY.get_sample_value(
        "reelflow_messages_total", {"queue": SUBMIT_CLIP, "outcome": outcome}
    )
    return sample or 0.0


async def clip_status(world: World, project: Project) -> ClipStatus:
    return (await world.project(project.id)).clips[0].status


async def clip_end(world: World, project: Project) -> ClipStatus:
    """Wait for the first clip to end (success, failed or cancelled), and return how."""

    async def ended() -> ClipStatus | None:
        status = await clip_status(world, project)
        return status if status.is_terminal else None

    return await eventually_returns(ended, "the clip's end")


async def test_main_submits_clips_and_returns_soon_after_stop(
    world: World, settings: Settings
) -> None:
    project = await world.new_project("a fox")
    stop = asyncio.Event()
    async with running(main(settings, stop=stop), stop) as task:
        await world.publisher.send(SUBMIT_CLIP, submit_of(world, project))
        await eventually(
            lambda: _is(clip_status(world, project), ClipStatus.PROCESSING), "clip processing"
        )
        assert not task.done()
    assert task.exception() is None


async def test_main_sends_clips_submitted_together_in_shared_runware_requests(
    world: World, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenes = 6
    project = await world.new_project(*(f"scene {i}" for i in range(scenes)))
    # Windows long enough that clips delivered together surely meet in them, however
    # slowly a loaded machine records them.
    settings = settings.model_copy(
        update={"submit_batch_window_s": 0.5, "submit_batch_quiet_s": 0.5}
    )
    monkeypatch.setattr(submitter_main, "CheckBundles", partial(CheckBundles, linger_s=0.5))
    requests_before = (await world.sim.stats())["requests"]
    checks = await world.inbox(CHECK_CLIP)
    stop = asyncio.Event()
    async with running(main(settings, stop=stop), stop):
        for index in range(scenes):
            await world.publisher.send(SUBMIT_CLIP, submit_of(world, project, index))

        async def all_processing() -> bool:
            clips = (await world.project(project.id)).clips
            return all(clip.status is ClipStatus.PROCESSING for clip in clips)

        await eventually(all_processing, "every clip processing")

    assert (await world.sim.stats())["requests"] - requests_before < scenes
    # Their first checks, made together, travel together: fewer messages than clips.
    checked: list[str] = []
    messages = 0
    while len(checked) < scenes:
        raw = await checks.next()
        messages += 1
        if raw.type == CheckClips.message_type:
            checked += [c.task_uuid for c in CheckClips.model_validate_json(raw.body).checks]
        else:
            checked.append(CheckClip.model_validate_json(raw.body).task_uuid)
    assert sorted(checked) == sorted(clip.task_uuid for clip in project.clips)
    assert messages < scenes
    for clip in project.clips:
        truth = await world.sim.task(clip.task_uuid)
        assert (truth["accepted"], truth["submissions"], truth["billed"]) == (True, 1, True)


async def test_a_retry_goes_to_runware_alone_not_through_the_shared_requests(
    world: World, settings: Settings
) -> None:
    project = await world.new_project("a fox")
    # Nothing shared would go out before the test's deadline.
    shared = SubmitBatcher(world.runware, batch_size=16, window_s=3600.0)
    handler = submit_handler(world, settings, shared=shared)
    retry = submit_of(world, project).model_copy(update={"attempt": 2})

    await asyncio.wait_for(handler(retry), DEADLINE_S)

    assert (await world.project(project.id)).clips[0].status is ClipStatus.PROCESSING
    truth = await world.sim.task(project.clips[0].task_uuid)
    assert (truth["accepted"], truth["submissions"]) == (True, 1)
    await shared.aclose()


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
            await world.publisher.send(SUBMIT_CLIP, submit_of(world, project))
            await eventually(lambda: runware.connections > 0, "submit in flight")
        assert task.exception() is None

    # Cancelled in flight, never acknowledged: the broker has it for the next submitter,
    # in the tenant's lane the sorter had moved it to.
    async def back_in_queue() -> bool:
        return await world.ready_count(world.topology.lane_queue(world.tenant_id)) == 1

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
            }
        )
        stop = asyncio.Event()
        async with running(main(flaky, stop=stop), stop) as task:
            runware.go_down()
            acked = messages_handled("acked")
            await world.publisher.send(SUBMIT_CLIP, submit_of(world, first))
            # Each failed submit is acknowledged and comes back as a retry with attempt + 1.
            await eventually(lambda: messages_handled("acked") >= acked + 3, "submit retries")
            runware.come_back()
            await eventually(
                lambda: _is(clip_status(world, first), ClipStatus.PROCESSING), "first processing"
            )

            mongo.go_down()
            retried = messages_handled("retried")
            await world.publisher.send(SUBMIT_CLIP, submit_of(world, second))
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


# --- budgets ----------------------------------------------------------------------------


async def test_a_budget_spent_mid_project_fails_the_remaining_clips_before_runware_sees_them(
    world: World, settings: Settings, runware_sim: RunningSimulator
) -> None:
    # The budget is read before every submit here (no time between reads).
    handler = submit_handler(world, settings.model_copy(update={"budget_check_ttl_s": 0}))
    now = utcnow()
    project = await charged_project(world, TenantLimits(daily_budget_usd=1.0), scenes=3)
    await handler(submit_of(world, project, 0))
    # The first clip cost far more than its estimate: $0.90 + $0.50 reserved > $1.00.
    first = project.clips[0].task_uuid
    await world.projects.record(
        project.id, 0, first, TaskSucceeded(video_url="https://cdn.test/0.mp4", cost=0.9)
    )

    await handled_first(world, handler, submit_of(world, project, 1))
    await handled_first(world, handler, submit_of(world, project, 2))

    after = await world.project(project.id)
    assert [clip.status for clip in after.clips] == ["success", "failed", "failed"]
    for clip in after.clips[1:]:
        assert clip.error is not None
        assert clip.error["code"] == "budgetExceeded"
        assert "daily budget" in clip.error["message"]
        assert "resets at" in clip.error["message"]
    # Ground truth: Runware never got the stopped clips, so nothing was spent on them, and
    # first submits (nothing of theirs can be at Runware) failed without asking it.
    assert (await runware_sim.stats())["task_types"] == {"videoInference": 1}
    submitted = {task["task_uuid"] for task in await runware_sim.tasks()}
    assert first in submitted
    assert not submitted & {clip.task_uuid for clip in after.clips[1:]}
    ledger = await world.projects.ledgers.read(world.tenant_id)
    assert ledger.open == 0
    assert ledger.committed_in(now.strftime("%Y-%m-%d")) == pytest.approx(0.9)
    assert after.status is ProjectStatus.PARTIAL


async def test_a_clip_whose_reserved_day_is_spent_and_over_is_told_a_retry_works_now(
    world: World, settings: Settings
) -> None:
    project = await charged_project(world, TenantLimits(daily_budget_usd=1.0), scenes=2)
    first = project.clips[0].task_uuid
    await world.projects.record(
        project.id, 0, first, TaskSucceeded(video_url="https://cdn.test/0.mp4", cost=0.9)
    )
    # Its day was spent while it waited in its lane; the gate comes after that day's end.
    next_day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    later = next_day + timedelta(seconds=5)
    handler = submit_handler(
        world, settings.model_copy(update={"budget_check_ttl_s": 0}), clock=lambda: later
    )

    await handler(submit_of(world, project, 1))

    clip = (await world.project(project.id)).clips[1]
    assert clip.error is not None
    assert clip.error["code"] == "budgetExceeded"
    assert "That period has ended: a retry now counts in the current one." in clip.error["message"]
    assert "resets at" not in clip.error["message"]


#: how a chain comes to submit again a task an earlier try of its may have got to Runware
MAY_HAVE_SUBMITTED = pytest.mark.parametrize(
    "how",
    [
        # handled outside a first delivery: its holder crashed after Runware took the task
        "redelivered after a crash",
        # first delivered, but the reconciler re-armed it: the chain it replaces was lost
        # after it submitted (the reconciler sets ``last_ambiguous_at``)
        "re-armed by the reconciler",
    ],
)


async def resubmitted(world: World, handler: SubmitHandler, message: SubmitClip, how: str) -> None:
    if how == "redelivered after a crash":
        await handler(message)
    else:
        rearmed = message.model_copy(update={"last_ambiguous_at": utcnow()})
        await handled_first(world, handler, rearmed)


async def followed_not_failed(world: World, project: Project, index: int) -> None:
    """Runware runs the clip's task, bought by an earlier try: the clip tracks it (processing,
    its first check sent) and its charge stays in flight until its end settles it."""
    task_uuid = project.clips[index].task_uuid
    clip = (await world.project(project.id)).clips[index]
    assert (clip.status, clip.error) == (ClipStatus.PROCESSING, None)
    assert [check.task_uuid for check in world.publisher.sent_to(CHECK_CLIP)] == [task_uuid]
    truth = await world.sim.task(task_uuid)
    assert (truth["submissions"], truth["billed"]) == (1, True)


@MAY_HAVE_SUBMITTED
async def test_a_budget_spent_after_an_earlier_try_may_have_submitted_asks_runware_first(
    world: World, settings: Settings, how: str
) -> None:
    handler = submit_handler(world, settings.model_copy(update={"budget_check_ttl_s": 0}))
    project = await charged_project(world, TenantLimits(daily_budget_usd=1.0), scenes=2)
    second = submit_of(world, project, 1)
    # An earlier try of the second clip's chain got its task to Runware, unseen.
    await world.runware.submit_video(video_request(second, webhook_url=None))
    # The first clip cost far more than its estimate: $0.90 + $0.25 held > $1.00.
    await world.projects.record(
        project.id,
        0,
        project.clips[0].task_uuid,
        TaskSucceeded(video_url="https://cdn.test/0.mp4", cost=0.9),
    )

    await resubmitted(world, handler, second, how)

    # The budget stops buying, not a task Runware runs: it is followed and billed.
    await followed_not_failed(world, project, 1)
    ledger = await world.projects.ledgers.read(world.tenant_id)
    assert ledger.open == 1


class SubmitRefused(RunwareClient):
    """The test's Runware client: every submit refused outright (the account out of credits,
    say: an answer about the request, not about the task an earlier try got there)."""

    def __init__(self, sim: RunningSimulator) -> None:
        super().__init__(RunwareSettings(**runware_settings(sim)))
        self.submits = 0

    async def submit_video(self, request: VideoRequest) -> SubmitResult:
        self.submits += 1
        raise RunwareError("Insufficient credits.", code="insufficientCredits", http_status=402)


@MAY_HAVE_SUBMITTED
async def test_a_refused_resubmit_of_a_task_runware_may_hold_asks_runware_first(
    world: World, settings: Settings, how: str
) -> None:
    project = await world.new_project("a fox")
    message = submit_of(world, project)
    await world.runware.submit_video(video_request(message, webhook_url=None))
    async with aclosing(SubmitRefused(world.sim)) as refusing:
        handler = submit_handler(world, settings, runware=refusing)

        await resubmitted(world, handler, message, how)

    assert refusing.submits == 1
    await followed_not_failed(world, project, 0)
