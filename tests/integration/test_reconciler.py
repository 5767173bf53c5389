"""The reconciler, and the chains it heals, on a real RabbitMQ, MongoDB and the simulator.

Leases here last a second, so a lost chain is noticed within a test's patience.
Chains are run with the same handlers the poller runs, through the recording
publisher, so every ``CheckClip`` of every chain is seen with its token.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aio_pika
import pytest
from prometheus_client import REGISTRY
from pymongo.errors import AutoReconnect
from structlog.testing import capture_logs

from reelflow_common.accounting import Charge, TenantLimits
from reelflow_common.domain import ClipRequest, ClipStatus, ProjectStatus
from reelflow_common.lifecycle import every
from reelflow_common.messages import CheckClip, ProjectFinished, SubmitClip
from reelflow_common.polling import FixedLadderPlanner
from reelflow_common.store import (
    TIMED_OUT,
    Attempt,
    Change,
    ClipState,
    Lease,
    NewProject,
    Project,
    ProjectStore,
    TaskFailed,
    TaskSucceeded,
)
from reelflow_common.store.timefmt import as_utc, utcnow
from reelflow_common.topology import CHECK_CLIP, SUBMIT_CLIP
from reelflow_common.tracking.attempts import AttemptsReconciler
from reelflow_common.tracking.policy import Policy
from reelflow_common.tracking.reconciler import Reconciler
from reelflow_common.tracking.recorder import ClipRecorder
from reelflow_common.tracking.settlesweep import SettleSweep
from reelflow_poller.settings import Settings
from reelflow_runware_sim.testing import RunningSimulator
from reelflow_submitter.service import video_request
from tests.integration.worker_helpers import (
    FAST_LADDERS,
    CompletionsSeen,
    World,
    check_handler,
    running,
    runware_settings,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration

LEASE_S = 1.0
GRACE_S = 0.1
MAX_AGE_S = 60.0


@pytest.fixture
def settings(settings_for: Callable[..., Any], runware_sim: RunningSimulator) -> Settings:
    settings: Settings = settings_for(
        Settings,
        http_host="127.0.0.1",
        http_port=0,
        lease_s=LEASE_S,
        reconcile_interval_s=0.1,
        reconcile_grace_s=GRACE_S,
        poll_max_age_s=MAX_AGE_S,
        not_found_grace_s=0,
        **FAST_LADDERS,
        **runware_settings(runware_sim),
    )
    return settings


def reconciler(
    world: World,
    settings: Settings,
    projects: ProjectStore | None = None,
    *,
    planner: FixedLadderPlanner | None = None,
    kind: type[Reconciler | AttemptsReconciler] = Reconciler,
) -> Reconciler | AttemptsReconciler:
    """The poller's pass over open clips (``kind``: or over replaced tasks)."""
    projects = projects or world.projects
    return kind(
        projects,
        world.runware,
        world.publisher,
        ClipRecorder(projects, world.publisher),
        policy=Policy.from_settings(settings),
        planner=planner or FixedLadderPlanner.from_settings(settings),
        clock=utcnow,
        grace_s=settings.reconcile_grace_s,
        batch_size=settings.reconcile_batch_size,
    )


async def expired(world: World, project: Project) -> Project:
    """Wait until every open clip's lease has run out by the grace (a second or so)."""

    async def all_expired() -> bool:
        stored = await world.project(project.id)
        limit = utcnow() - timedelta(seconds=GRACE_S)
        return all(c.lease is None or c.lease.until < limit for c in stored.clips)

    await eventually(all_expired, "the leases ran out", timeout_s=5)
    return await world.project(project.id)


def tokens(messages: list[Any]) -> list[str]:
    return [message.token for message in messages]


# --- one pass ---------------------------------------------------------------------------------


async def test_a_clip_whose_chain_was_lost_gets_what_runware_says(
    world: World, settings: Settings
) -> None:
    project = await world.processing(await world.new_project("a fox"))  # no CheckClip: lost
    await world.until_finished_at_runware(project.clips[0].task_uuid)
    await expired(world, project)
    events = await world.events()
    recorded = {"action": "recorded"}
    before = REGISTRY.get_sample_value("reelflow_clips_reconciled_total", recorded) or 0.0

    completions = CompletionsSeen.from_settings(settings)
    assert isinstance(completions, CompletionsSeen)
    assert await reconciler(world, settings, planner=completions).run_once() == 1

    # The planner learns the completion: some time between the submission and now.
    ((model, elapsed_s, since_s),) = completions.seen
    assert (model, since_s) == (project.model, 0.0)
    assert elapsed_s > 0
    assert REGISTRY.get_sample_value("reelflow_projects_past_lease") == 1.0
    assert REGISTRY.get_sample_value("reelflow_clips_reconciled_total", recorded) == before + 1
    after = await world.project(project.id)
    assert after.clips[0].status is ClipStatus.SUCCESS
    assert after.status is ProjectStatus.COMPLETED
    assert after.due_at is not None
    assert after.due_at > utcnow()  # released: nothing open is due any more
    published = await world.settle_events(events)
    assert [type(e).__name__ for e in published] == ["ClipUpdated", "ProjectFinished"]
    assert world.publisher.sent == []
    assert await reconciler(world, settings).run_once() == 0  # finished: never due again
    assert REGISTRY.get_sample_value("reelflow_projects_past_lease") == 0.0


class ClaimAnswerLost(ProjectStore):
    """A store whose claim lands but its answer is lost (a connection closed under it)."""

    async def claim(self, project_id: str, *, due_at: datetime, until: datetime) -> Project | None:
        await super().claim(project_id, due_at=due_at, until=until)
        raise AutoReconnect("connection is already closed")


async def test_a_claim_whose_answer_was_lost_leaves_the_project_due_for_the_next_pass(
    world: World, settings: Settings, mongo_db: Any
) -> None:
    project = await world.processing(await world.new_project("a fox"))  # no CheckClip: lost
    await world.until_finished_at_runware(project.clips[0].task_uuid)
    due_at = (await expired(world, project)).due_at
    assert due_at is not None

    lost = ClaimAnswerLost(mongo_db, lease_s=LEASE_S)
    assert await reconciler(world, settings, lost).run_once() == 0

    # Given back, not held for a whole lease: the next pass reconciles it at once.
    assert (await world.project(project.id)).due_at == due_at
    assert await reconciler(world, settings).run_once() == 1
    assert (await world.project(project.id)).clips[0].status is ClipStatus.SUCCESS


async def test_a_pass_that_fails_half_way_leaves_the_clip_it_did_not_settle_due_at_once(
    world: World, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await world.new_project("a fox", "a cat")  # the API died before publishing
    stale = await expired(world, project)
    cat_lease = stale.clips[1].lease
    assert cat_lease is not None
    pass_ = reconciler(world, settings)
    assert isinstance(pass_, Reconciler)
    settle = pass_._settle

    async def broker_gone_at_the_cat(project: Project, clip: Any, outcome: Any) -> Any:
        if clip.scene_index == 1:
            raise aio_pika.exceptions.AMQPConnectionError("the broker went away")
        return await settle(project, clip, outcome)

    monkeypatch.setattr(pass_, "_settle", broker_gone_at_the_cat)
    with capture_logs() as lines:
        assert await pass_.run_once() == 0
    assert "reconcile_failed" in [line["event"] for line in lines]

    # The fox has a new chain; the cat is due again once the grace is over (from the
    # failed pass), not once the fox's new lease or the claim runs out, and not at its old
    # lease's end, which would put the project first in every pass while it keeps failing.
    after = await world.project(project.id)
    fox_lease = after.clips[0].lease
    assert fox_lease is not None
    assert fox_lease.token != stale.clips[0].lease.token  # type: ignore[union-attr]
    assert after.due_at is not None
    assert cat_lease.until < after.due_at <= utcnow()

    async def claimed_again() -> bool:
        return await reconciler(world, settings).run_once() == 1

    await eventually(claimed_again, "a pass after the grace claims the project", timeout_s=5)
    sent: list[SubmitClip] = world.publisher.sent_to(SUBMIT_CLIP)
    assert sorted(message.scene_index for message in sent) == [0, 1]


async def test_a_clip_still_running_gets_exactly_one_new_chain_under_a_fresh_token(
    world: World, settings: Settings
) -> None:
    project = await world.processing(await world.new_project("a fox [sim:hang]"))
    old = project.clips[0].lease
    assert old is not None
    stale = await expired(world, project)

    claimed = await asyncio.gather(
        reconciler(world, settings).run_once(), reconciler(world, settings).run_once()
    )

    assert sorted(claimed) == [0, 1]  # two replicas, one claim
    (rearmed,) = world.publisher.sent_to(CHECK_CLIP)
    lease = (await world.project(project.id)).clips[0].lease
    assert lease is not None
    assert (rearmed.token, rearmed.lease_until) == (lease.token, lease.until)
    assert rearmed.token != old.token
    assert rearmed.submitted_at == stale.clips[0].submitted_at
    assert (await world.sim.task(project.clips[0].task_uuid))["polls"] == 1


async def test_a_queued_clip_runware_does_not_know_is_submitted_again(
    world: World, settings: Settings
) -> None:
    project = await world.new_project("a fox", "a cat")  # the API died before publishing
    await expired(world, project)

    await reconciler(world, settings).run_once()

    sent: list[SubmitClip] = world.publisher.sent_to(SUBMIT_CLIP)
    stored = await world.project(project.id)
    assert sorted((m.scene_index, m.task_uuid) for m in sent) == [
        (clip.scene_index, clip.task_uuid) for clip in stored.clips
    ]
    assert {m.token for m in sent} == {c.lease.token for c in stored.clips if c.lease}
    assert [m.request.prompt for m in sorted(sent, key=lambda m: m.scene_index)] == [
        "a fox",
        "a cat",
    ]
    assert all(clip.status is ClipStatus.QUEUED for clip in stored.clips)


async def test_a_queued_clip_runware_holds_becomes_processing_and_is_checked(
    world: World, settings: Settings
) -> None:
    project = await world.new_project("a fox [sim:hang]")
    # The submitter died after Runware accepted the task, before it recorded anything.
    await world.runware.submit_video(video_request(world.submit_of(project), webhook_url=None))
    await expired(world, project)
    events = await world.events()

    await reconciler(world, settings).run_once()

    clip = (await world.project(project.id)).clips[0]
    assert clip.status is ClipStatus.PROCESSING
    (check,) = world.publisher.sent_to(CHECK_CLIP)
    assert clip.lease is not None
    assert check.token == clip.lease.token
    assert world.publisher.sent_to(SUBMIT_CLIP) == []
    (event,) = await world.settle_events(events)
    assert event.seq == 1
    assert (await world.sim.task(clip.task_uuid))["submissions"] == 1


class CancelledBeforeTakeover(ProjectStore):
    """A store whose project is cancelled just before the reconciler records a task processing."""

    tenant_id: str

    async def mark_processing(
        self,
        project_id: str,
        scene_index: int,
        task_uuid: str,
        *,
        token: str | None,
        correlation_id: str | None = None,
        new_token: str | None = None,
    ) -> Change:
        assert await self.cancel(project_id, tenant_id=self.tenant_id) is not None
        return await super().mark_processing(
            project_id,
            scene_index,
            task_uuid,
            token=token,
            correlation_id=correlation_id,
            new_token=new_token,
        )


async def test_a_queued_clip_runware_holds_cancelled_during_the_pass_is_still_followed(
    world: World, settings: Settings, mongo_db: Any
) -> None:
    project = await world.new_project("a fox [sim:latency=3000]")
    # The submitter died after Runware accepted the task, before it recorded anything.
    await world.runware.submit_video(video_request(world.submit_of(project), webhook_url=None))
    await expired(world, project)
    store = CancelledBeforeTakeover(mongo_db, lease_s=LEASE_S)
    store.tenant_id = world.tenant_id

    assert await reconciler(world, settings, store).run_once() == 1

    task_uuid = project.clips[0].task_uuid
    assert (await world.project(project.id)).clips[0].status is ClipStatus.CANCELLED
    # Runware bills the task: a chain follows it to its end, recorded in the clip's attempts.
    (check,) = world.publisher.sent_to(CHECK_CLIP)
    assert check.task_uuid == task_uuid
    await world.until_finished_at_runware(task_uuid)
    await check_handler(world, settings)(check.model_copy(update={"due_at": None}))
    after = await world.project(project.id)
    truth = await world.sim.task(task_uuid)
    assert after.clips[0].status is ClipStatus.CANCELLED
    ended = after.clips[0].attempts[task_uuid]
    assert (ended.status, ended.cost) == (ClipStatus.SUCCESS, truth["cost"])


async def test_past_the_ceiling_a_clip_runware_still_runs_times_out(
    world: World, settings: Settings, mongo_db: Any
) -> None:
    # Submitted long ago (the store's clock says so), still running at Runware.
    long_ago = ProjectStore(
        mongo_db, lease_s=LEASE_S, clock=lambda: utcnow() - timedelta(seconds=MAX_AGE_S + 5)
    )
    new = NewProject(
        tenant_id=world.tenant_id,
        title="old",
        model="google:3@3",
        scenes=[ClipRequest(prompt="a fox [sim:hang]", duration=4)],
    )
    project = (await long_ago.create(new)).project
    message = world.submit_of(project)
    await world.runware.submit_video(video_request(message, webhook_url=None))
    await long_ago.mark_processing(project.id, 0, message.task_uuid, token=message.token)

    await reconciler(world, settings).run_once()

    after = (await world.project(project.id)).clips[0]
    assert after.status is ClipStatus.FAILED
    assert after.error is not None
    assert after.error["code"] == TIMED_OUT
    assert world.publisher.sent == []


async def test_a_project_left_unfinished_by_a_crash_is_finished(
    world: World, settings: Settings, mongo_db: Any
) -> None:
    project = await world.new_project("a fox")
    clip = project.clips[0]
    # The last clip ended, then the writer died before its finisher ran.
    await mongo_db["projects"].update_one(
        {"_id": project.id},
        {
            "$set": {"clips.0.status": "success", "clips.0.video_url": "https://v/0.mp4"},
            "$unset": {"clips.0.lease": ""},
            "$inc": {"counts.pending": -1, "counts.completed": 1},
        },
    )
    await mongo_db["projects"].update_one(
        {"_id": project.id}, {"$set": {"due_at": utcnow() - timedelta(seconds=1)}}
    )
    events = await world.events()

    await reconciler(world, settings).run_once()

    after = await world.project(project.id)
    assert after.status is ProjectStatus.COMPLETED
    (finished,) = await world.settle_events(events)
    assert isinstance(finished, ProjectFinished)
    assert clip.task_uuid == after.clips[0].task_uuid


async def test_leases_still_running_are_left_alone_and_set_the_next_due(
    world: World, settings: Settings, mongo_db: Any
) -> None:
    project = await world.new_project("a fox")
    await mongo_db["projects"].update_one(
        {"_id": project.id}, {"$set": {"due_at": utcnow() - timedelta(seconds=1)}}
    )

    assert await reconciler(world, settings).run_once() == 1

    after = await world.project(project.id)
    lease = after.clips[0].lease
    assert lease is not None
    assert after.due_at == lease.until
    assert world.publisher.sent == []
    assert (await world.sim.stats())["requests"] == 0


# --- chains lost, dead-lettered, forked: all end in one chain and Runware's answer ----------


async def heal(world: World, settings: Settings, project: Project) -> list[CheckClip]:
    """Run the checks and the reconciler until the clip ends; every CheckClip sent meanwhile."""
    stop = asyncio.Event()

    async def ended() -> bool:
        return (await world.project(project.id)).clips[0].status.is_terminal

    async with (
        world.consuming(CHECK_CLIP, CheckClip, check_handler(world, settings), concurrency=4),
        running(every(0.1, reconciler(world, settings).run_once, stop=stop, name="t"), stop),
    ):
        await eventually(ended, "the clip ended", timeout_s=20)
    sent: list[CheckClip] = world.publisher.sent_to(CHECK_CLIP)
    return sent


async def test_a_check_lost_from_the_queue_is_rearmed_and_the_clip_ends(
    world: World, settings: Settings
) -> None:
    project = await world.processing(await world.new_project("a fox [sim:latency=3000]"))
    original = project.clips[0].lease
    assert original is not None
    # The first CheckClip was lost: nothing is published for this chain at all.

    sent = await heal(world, settings, project)

    clip = (await world.project(project.id)).clips[0]
    assert clip.status is ClipStatus.SUCCESS
    assert original.token not in tokens(sent)
    assert len(set(tokens(sent))) == 1  # exactly one chain, the re-armed one


async def test_a_check_in_its_dlq_is_rearmed_and_moving_it_back_changes_nothing(
    world: World, settings: Settings
) -> None:
    project = await world.processing(await world.new_project("a fox [sim:latency=3000]"))
    poisoned = await world.check_of(project)
    dlq = world.topology.dead_letter_queue(CHECK_CLIP)
    await world.channel.default_exchange.publish(
        _amqp(poisoned), routing_key=dlq
    )  # where a chain ends after its delivery limit

    sent = await heal(world, settings, project)

    clip = (await world.project(project.id)).clips[0]
    assert clip.status is ClipStatus.SUCCESS
    assert poisoned.token not in tokens(sent)
    assert len(set(tokens(sent))) == 1
    assert await world.ready_count(dlq) == 1
    # An operator moves it back: it is one more check of a finished clip, and starts nothing.
    seq = (await world.project(project.id)).seq
    before = len(world.publisher.sent_to(CHECK_CLIP))
    await check_handler(world, settings)(poisoned)
    assert (await world.project(project.id)).seq == seq
    assert len(world.publisher.sent_to(CHECK_CLIP)) == before


async def test_a_forked_chain_is_one_chain_again_after_a_renewal(
    world: World, settings: Settings
) -> None:
    project = await world.processing(await world.new_project("a fox [sim:latency=4000]"))
    first = await world.check_of(project)
    # A lost ack: the same check handled twice, each copy goes on with the same token.
    await world.publisher.send(CHECK_CLIP, first)
    await world.publisher.send(CHECK_CLIP, first)

    sent = await heal(world, settings, project)

    clip = (await world.project(project.id)).clips[0]
    assert clip.status is ClipStatus.SUCCESS
    per_check = Counter(message.check for message in sent if message.token == first.token)
    last_checks = sorted(per_check)[-3:]
    # Both copies run until the first renewal; from then on each check is sent once.
    assert per_check[2] == 2
    assert [per_check[n] for n in last_checks] == [1, 1, 1]
    assert len(set(tokens(sent))) == 1


def _amqp(message: CheckClip) -> aio_pika.Message:
    return aio_pika.Message(
        message.model_dump_json().encode(),
        type=message.message_type,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


# --- a replaced task whose chain was lost: the reconciler follows it to its end ----------------

#: what each reservation holds (creation and retry), and the earlier task's late video's cost
ESTIMATE_USD = 0.5
FIRST_COST = 0.1


@dataclass(frozen=True)
class Replaced:
    """A clip whose retry's task an earlier task's video replaced; that task's chain is lost."""

    project: Project
    task_uuid: str
    #: a check of the lost chain, if the task had reached Runware (else a submit chain was lost)
    lost: CheckClip | None
    #: the reservations' day on the tenant's ledger
    day: str


async def replaced(
    world: World, prompt: str, *, at_runware: bool, projects: ProjectStore | None = None
) -> Replaced:
    """Create (reserved), fail, retry (reserved) and let the first task's video come late.

    ``at_runware``: the retry's task had reached Runware (processing), else it was queued.
    ``projects``: the store that writes it all (another clock), the world's by default.
    """
    projects = projects or world.projects
    limits = TenantLimits(max_clips_in_flight=10)

    async def reserve(_project: Project, clips: list[ClipState]) -> dict[int, Charge]:
        charge = await world.projects.ledgers.reserve(
            world.tenant_id, limits, clips=len(clips), usd=ESTIMATE_USD, now=utcnow()
        )
        assert charge is not None
        return {clip.scene_index: charge for clip in clips}

    charge = await world.projects.ledgers.reserve(
        world.tenant_id, limits, clips=1, usd=ESTIMATE_USD, now=utcnow()
    )
    assert charge is not None
    new = NewProject(
        tenant_id=world.tenant_id,
        title="late",
        model="google:3@3",
        scenes=[ClipRequest(prompt=prompt, duration=4, width=1280, height=720)],
        charges=[charge],
    )
    project = (await projects.create(new)).project
    first = project.clips[0].task_uuid
    failed = TaskFailed(code="taskFailedOrNotFound", message="not at Runware (yet)")
    await projects.record(project.id, 0, first, failed)
    retried = await projects.retry(project.id, tenant_id=world.tenant_id, reserve=reserve)
    assert retried is not None
    second = world.submit_of(retried.project)
    lost = None
    if at_runware:
        await world.runware.submit_video(video_request(second, webhook_url=None))
        change = await world.projects.mark_processing(
            project.id, 0, second.task_uuid, token=second.token
        )
        assert change.applied
        lost = await world.check_of(retried.project)
    # The first task was at Runware after all: its video replaces the retry's task.
    video = TaskSucceeded(video_url="https://v/first.mp4", video_uuid="first", cost=FIRST_COST)
    assert (await projects.record(project.id, 0, first, video)).applied
    after = await world.project(project.id)
    assert after.clips[0].task_uuid == first
    assert after.status is ProjectStatus.COMPLETED  # finished while the retry's task runs on
    return Replaced(after, second.task_uuid, lost, charge.day)


async def attempt_expired(world: World, found: Replaced) -> Attempt:
    """Wait until the replaced task's lease (in its attempt) has run out by the grace."""

    async def run_out() -> bool:
        attempt = (await world.project(found.project.id)).clips[0].attempts[found.task_uuid]
        limit = utcnow() - timedelta(seconds=GRACE_S)
        return attempt.lease is not None and attempt.lease.until < limit

    await eventually(run_out, "the replaced task's lease ran out", timeout_s=5)
    return (await world.project(found.project.id)).clips[0].attempts[found.task_uuid]


async def ledger(world: World, found: Replaced) -> tuple[int, float]:
    """What the tenant's ledger holds: clips in flight, and dollars committed that day."""
    view = await world.projects.ledgers.read(world.tenant_id)
    return view.open, view.committed_in(found.day)


async def test_a_replaced_task_whose_chain_was_lost_is_billed_once_when_runware_finished_it(
    world: World, settings: Settings, mongo_db: Any
) -> None:
    found = await replaced(world, "a fox", at_runware=True)
    assert found.lost is not None
    await world.until_finished_at_runware(found.task_uuid)
    await attempt_expired(world, found)
    assert (await ledger(world, found))[0] == 1  # its reservation is still held

    assert await reconciler(world, settings, kind=AttemptsReconciler).run_once() == 1

    after = await world.project(found.project.id)
    ended = after.clips[0].attempts[found.task_uuid]
    truth = await world.sim.task(found.task_uuid)
    assert (ended.status, ended.cost, ended.lease) == (ClipStatus.SUCCESS, truth["cost"], None)
    assert after.cost.known == 2
    assert (after.status, after.counts) == (found.project.status, found.project.counts)
    assert await ledger(world, found) == pytest.approx((0, FIRST_COST + truth["cost"]))
    assert world.publisher.sent == []
    # The lost chain's check comes after all (a redelivery): it changes nothing.
    await check_handler(world, settings)(found.lost)
    assert (await world.project(found.project.id)).seq == after.seq
    assert (await world.project(found.project.id)).cost == after.cost
    assert await ledger(world, found) == pytest.approx((0, FIRST_COST + truth["cost"]))

    async def left_the_index() -> bool:
        await reconciler(world, settings, kind=AttemptsReconciler).run_once()
        doc = await mongo_db["projects"].find_one({"_id": found.project.id})
        return "attempts_due_at" not in doc

    # Nothing open is left in attempts: the project leaves the reconciler's index.
    await eventually(left_the_index, "attempts_due_at removed", timeout_s=5)


async def test_a_replaced_task_runware_never_got_ends_failed_and_its_reservation_is_released(
    world: World, settings: Settings
) -> None:
    found = await replaced(world, "a fox", at_runware=False)
    assert (await ledger(world, found))[0] == 1

    await attempt_expired(world, found)
    assert await reconciler(world, settings, kind=AttemptsReconciler).run_once() == 1

    ended = (await world.project(found.project.id)).clips[0].attempts[found.task_uuid]
    assert (ended.status, ended.lease) == (ClipStatus.FAILED, None)
    assert await ledger(world, found) == pytest.approx((0, FIRST_COST))
    assert world.publisher.sent == []  # never submitted again
    assert found.task_uuid not in {task["task_uuid"] for task in await world.sim.tasks()}


async def test_a_replaced_task_still_running_gets_one_new_chain_and_the_old_one_stops(
    world: World, settings: Settings
) -> None:
    found = await replaced(world, "a fox [sim:latency=5000]", at_runware=True)
    assert found.lost is not None
    await attempt_expired(world, found)

    assert await reconciler(world, settings, kind=AttemptsReconciler).run_once() == 1

    (rearmed,) = world.publisher.sent_to(CHECK_CLIP)
    held = (await world.project(found.project.id)).clips[0].attempts[found.task_uuid].lease
    assert held is not None
    assert (rearmed.task_uuid, rearmed.token, rearmed.lease_until) == (
        found.task_uuid,
        held.token,
        held.until,
    )
    assert rearmed.token != found.lost.token
    # The lost chain turns up: its renewal matches nothing, so it stops and sends nothing.
    check = check_handler(world, settings)
    await check(found.lost)
    assert world.publisher.sent_to(CHECK_CLIP) == [rearmed]
    after_stale = (await world.project(found.project.id)).clips[0].attempts[found.task_uuid]
    assert after_stale.lease == held

    # The new chain records the task's end in its attempt, billed once.
    await world.until_finished_at_runware(found.task_uuid)
    await check(rearmed)
    after = await world.project(found.project.id)
    ended = after.clips[0].attempts[found.task_uuid]
    truth = await world.sim.task(found.task_uuid)
    assert (ended.status, ended.cost, ended.lease) == (ClipStatus.SUCCESS, truth["cost"], None)
    assert await ledger(world, found) == pytest.approx((0, FIRST_COST + truth["cost"]))
    await check(found.lost)  # the old token with Runware's answer: a duplicate
    assert (await world.project(found.project.id)).seq == after.seq
    assert await ledger(world, found) == pytest.approx((0, FIRST_COST + truth["cost"]))


class RenewedBeforeRearm(ProjectStore):
    """A store whose replaced task's lost chain renews its lease just before the re-arm."""

    async def rearm_attempt(
        self,
        project_id: str,
        scene_index: int,
        task_uuid: str,
        lease: Lease,
        *,
        token: str,
        until: datetime,
    ) -> bool:
        renewed = await self.renew_lease(
            project_id,
            scene_index,
            token=lease.token,
            until_was=lease.until,
            until=utcnow() + timedelta(seconds=30),
            task_uuid=task_uuid,
        )
        assert renewed
        return await super().rearm_attempt(
            project_id, scene_index, task_uuid, lease, token=token, until=until
        )


async def test_a_replaced_task_whose_slow_chain_renews_during_the_pass_stays_due(
    world: World, settings: Settings, mongo_db: Any
) -> None:
    found = await replaced(world, "a fox [sim:latency=5000]", at_runware=True)
    await attempt_expired(world, found)
    store = RenewedBeforeRearm(mongo_db, lease_s=LEASE_S)

    assert await reconciler(world, settings, store, kind=AttemptsReconciler).run_once() == 1

    assert world.publisher.sent == []  # the renewed chain keeps the task
    held = (await world.project(found.project.id)).clips[0].attempts[found.task_uuid].lease
    assert held is not None
    doc = await mongo_db["projects"].find_one({"_id": found.project.id})
    # Still due, no later than the live lease ends: a chain lost after this is re-armed.
    assert doc.get("attempts_due_at") is not None
    assert as_utc(doc["attempts_due_at"]) <= held.until


async def test_a_queued_replaced_task_gets_runwares_visibility_grace_from_its_last_lease(
    world: World, settings: Settings, mongo_db: Any
) -> None:
    # Queued long ago (the store's clock says so); its chain held the task until a second ago,
    # and could have submitted it then, without an answer: Runware may not show it yet.
    grace_s = 30.0
    earlier = ProjectStore(
        mongo_db, lease_s=LEASE_S, clock=lambda: utcnow() - timedelta(seconds=grace_s + 15)
    )
    found = await replaced(world, "a fox", at_runware=False, projects=earlier)
    held = (await world.project(found.project.id)).clips[0].attempts[found.task_uuid].lease
    assert held is not None
    last = utcnow() - timedelta(seconds=1)
    assert await world.projects.renew_lease(
        found.project.id,
        0,
        token=held.token,
        until_was=held.until,
        until=last,
        task_uuid=found.task_uuid,
    )
    lost = (await attempt_expired(world, found)).lease
    assert lost is not None
    graceful = settings.model_copy(update={"not_found_grace_s": grace_s})

    assert await reconciler(world, graceful, kind=AttemptsReconciler).run_once() == 1

    attempt = (await world.project(found.project.id)).clips[0].attempts[found.task_uuid]
    assert attempt.status is ClipStatus.QUEUED  # not failed: its reservation is still held
    assert (await ledger(world, found))[0] == 1
    (rearmed,) = world.publisher.sent_to(CHECK_CLIP)
    assert rearmed.task_uuid == found.task_uuid
    # The new chain counts the grace from there too.
    assert rearmed.submitted_at == lost.until


# --- settlements no message stands behind: the settle sweep -------------------------------


class Crashed(Exception):
    """The writer stopped here (its process died): nothing after this point runs."""


def crash_before_the_ledger(store: ProjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """``store``'s writer dies between an end's write and the ledger's ``$inc``."""

    async def crashed(*_args: Any) -> bool:
        raise Crashed("died between the end's write and the ledger's $inc")

    monkeypatch.setattr(store.ledgers, "settle", crashed)


def settle_sweep(world: World) -> SettleSweep:
    """The poller's sweep, taking every mark at once (no grace)."""
    return SettleSweep(world.projects, clock=utcnow, after_s=0.0, batch_size=10)


async def charged(world: World, *prompts: str) -> Project:
    """A project of the world's tenant holding ``ESTIMATE_USD`` per clip on its ledger."""
    limits = TenantLimits(max_clips_in_flight=10)
    charge = await world.projects.ledgers.reserve(
        world.tenant_id, limits, clips=len(prompts), usd=ESTIMATE_USD * len(prompts), now=utcnow()
    )
    assert charge is not None
    new = NewProject(
        tenant_id=world.tenant_id,
        title="charged",
        model="google:3@3",
        scenes=[
            ClipRequest(prompt=prompt, duration=4, width=1280, height=720) for prompt in prompts
        ],
        charges=charge.split([ESTIMATE_USD] * len(prompts)),
    )
    return (await world.projects.create(new)).project


async def ledger_now(world: World) -> tuple[int, float]:
    """The tenant's clips in flight and dollars committed today."""
    view = await world.projects.ledgers.read(world.tenant_id)
    return view.open, view.committed_in(utcnow().strftime("%Y-%m-%d"))


async def marks_of(mongo_db: Any, project_id: str) -> dict[str, Any]:
    doc = await mongo_db["projects"].find_one(
        {"_id": project_id}, {"settle_due_at": 1, "settle_owed": 1, "settled": 1}
    )
    assert doc is not None
    return {key: value for key, value in doc.items() if key != "_id"}


async def test_a_settlement_a_crash_cut_from_a_passs_record_is_made_once_by_the_settle_sweep(
    world: World, settings: Settings, mongo_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await world.processing(await charged(world, "a fox"))  # its chain is lost
    task_uuid = project.clips[0].task_uuid
    await world.until_finished_at_runware(task_uuid)
    await expired(world, project)
    with monkeypatch.context() as crashing, capture_logs() as lines:
        crash_before_the_ledger(world.projects, crashing)
        assert await reconciler(world, settings).run_once() == 0  # the pass died half-way
    assert "reconcile_failed" in [line["event"] for line in lines]

    assert (await world.project(project.id)).clips[0].status is ClipStatus.SUCCESS
    assert await ledger_now(world) == pytest.approx((1, ESTIMATE_USD))  # no message repeats it

    assert await settle_sweep(world).run_once() == 1

    cost = (await world.sim.task(task_uuid))["cost"]
    assert await ledger_now(world) == pytest.approx((0, cost))
    marks = await marks_of(mongo_db, project.id)
    assert "settle_due_at" not in marks
    assert "settle_owed" not in marks
    assert [key.split(":", 1)[1] for key in marks["settled"]] == [task_uuid]
    # Swept again, or the end told again (the lost chain's check after all): nothing more.
    assert await settle_sweep(world).run_once() == 0
    await world.projects.record(project.id, 0, task_uuid, TaskSucceeded(video_url="x", cost=cost))
    assert await ledger_now(world) == pytest.approx((0, cost))


async def test_a_settlement_its_pass_made_is_not_made_again_and_its_mark_goes(
    world: World, settings: Settings, mongo_db: Any
) -> None:
    project = await world.processing(await charged(world, "a fox"))
    task_uuid = project.clips[0].task_uuid
    await world.until_finished_at_runware(task_uuid)
    await expired(world, project)
    assert await reconciler(world, settings).run_once() == 1
    cost = (await world.sim.task(task_uuid))["cost"]
    assert await ledger_now(world) == pytest.approx((0, cost))
    assert "settle_owed" in await marks_of(mongo_db, project.id)

    assert await settle_sweep(world).run_once() == 0

    assert await ledger_now(world) == pytest.approx((0, cost))
    marks = await marks_of(mongo_db, project.id)
    assert "settle_due_at" not in marks
    assert "settle_owed" not in marks


async def test_a_passs_end_of_a_clip_without_a_charge_marks_nothing(
    world: World, settings: Settings, mongo_db: Any
) -> None:
    """A tenant without a ledger has nothing to settle: the pass's end is not marked owed, so
    no sweep claims and unmarks the project for nothing."""
    project = await world.processing(await world.new_project("a fox"))
    await world.until_finished_at_runware(project.clips[0].task_uuid)
    await expired(world, project)

    assert await reconciler(world, settings).run_once() == 1

    assert (await world.project(project.id)).clips[0].status is ClipStatus.SUCCESS
    assert await marks_of(mongo_db, project.id) == {}


class OwedDuringTheSweep(ProjectStore):
    """A store whose sweep, between its claim and its unmark, meets another end whose writer
    died before the ledger's ``$inc`` (``writer``)."""

    writer: ProjectStore
    #: the project, and the clip as the writer read it
    end: tuple[str, ClipState]

    async def _settle_all(self, doc: Any, owed: Any) -> list[str]:
        project_id, clip = self.end
        with pytest.raises(Crashed):
            await self.writer.record(
                project_id,
                clip.scene_index,
                clip.task_uuid,
                TaskFailed(code="x", message="y"),
                unattended=clip,
            )
        return await super()._settle_all(doc, owed)


async def test_an_end_owed_while_a_sweep_runs_keeps_its_project_marked_for_the_next(
    world: World, mongo_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await world.processing(await charged(world, "a fox", "a hare"))
    writer = ProjectStore(mongo_db, lease_s=LEASE_S)
    crash_before_the_ledger(writer, monkeypatch)
    first, second = project.clips
    with pytest.raises(Crashed):
        await writer.record(
            project.id, 0, first.task_uuid, TaskFailed(code="x", message="y"), unattended=first
        )
    sweeping = OwedDuringTheSweep(mongo_db, lease_s=LEASE_S)
    sweeping.writer, sweeping.end = writer, (project.id, second)

    made = await SettleSweep(sweeping, clock=utcnow, after_s=0.0, batch_size=10).run_once()

    assert made == 1  # the first end's
    assert await ledger_now(world) == pytest.approx((1, ESTIMATE_USD))
    assert "settle_due_at" in await marks_of(mongo_db, project.id)  # the second is owed still
    assert await settle_sweep(world).run_once() == 1
    assert await ledger_now(world) == pytest.approx((0, 0.0))
    assert "settle_due_at" not in await marks_of(mongo_db, project.id)


async def test_a_replaced_tasks_settlement_a_crash_cut_from_the_attempts_pass_is_swept(
    world: World, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = await replaced(world, "a fox", at_runware=False)
    await attempt_expired(world, found)
    with monkeypatch.context() as crashing, capture_logs() as lines:
        crash_before_the_ledger(world.projects, crashing)
        assert await reconciler(world, settings, kind=AttemptsReconciler).run_once() == 0
    assert "reconcile_attempts_failed" in [line["event"] for line in lines]

    ended = (await world.project(found.project.id)).clips[0].attempts[found.task_uuid]
    assert ended.status is ClipStatus.FAILED
    assert (await ledger(world, found))[0] == 1  # no message repeats it

    assert await settle_sweep(world).run_once() == 1

    assert await ledger(world, found) == pytest.approx((0, FIRST_COST))
    assert await settle_sweep(world).run_once() == 0


async def test_a_mark_without_entries_goes_with_the_next_sweep(world: World, mongo_db: Any) -> None:
    """No writer marks without an entry, but a hand's edit can: the sweep settles nothing
    and removes the mark, so the project is not taken again at every interval."""
    project = await world.new_project("a fox")
    await mongo_db["projects"].update_one(
        {"_id": project.id}, {"$set": {"settle_due_at": utcnow()}}
    )

    assert await settle_sweep(world).run_once() == 0

    assert await marks_of(mongo_db, project.id) == {}
    assert await world.projects.settlements_due(before=utcnow(), limit=10) == []


async def test_a_retry_makes_the_settlement_its_timed_out_clip_owes_before_watching_it_again(
    world: World, mongo_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass timed the clip out and died before the ledger's ``$inc``; the tenant retries
    before the sweep: the rewatch replaces the clip's charge and end, so the retry makes
    the settlement first, from the clip as read, and the sweep finds it made."""
    project = await world.processing(await charged(world, "a fox"))
    read = project.clips[0]
    assert read.charge is not None
    writer = ProjectStore(mongo_db, lease_s=LEASE_S)
    crash_before_the_ledger(writer, monkeypatch)
    timed_out = TaskFailed(code=TIMED_OUT, message="no end in time")
    with pytest.raises(Crashed):
        await writer.record(project.id, 0, read.task_uuid, timed_out, unattended=read)
    limits = TenantLimits(max_clips_in_flight=10)

    async def reserve(_project: Project, clips: list[ClipState]) -> dict[int, Charge]:
        charge = await world.projects.ledgers.reserve(
            world.tenant_id, limits, clips=len(clips), usd=ESTIMATE_USD, now=utcnow()
        )
        assert charge is not None
        return {clip.scene_index: charge for clip in clips}

    retried = await world.projects.retry(project.id, tenant_id=world.tenant_id, reserve=reserve)

    assert retried is not None
    assert retried.rewatch == [0]
    watched = (await world.project(project.id)).clips[0]
    assert watched.status is ClipStatus.PROCESSING
    assert watched.charge is not None
    assert watched.charge.id != read.charge.id
    assert await ledger_now(world) == pytest.approx((1, ESTIMATE_USD))  # the retry's alone
    with capture_logs() as lines:
        assert await settle_sweep(world).run_once() == 0  # made already
    assert "settlement_owed_not_found" not in [line["event"] for line in lines]
    marks = await marks_of(mongo_db, project.id)
    assert marks == {"settled": [f"{read.charge.id}:{read.task_uuid}"]}


async def test_an_owed_settlement_found_nowhere_is_logged_for_a_recount(
    world: World, mongo_db: Any
) -> None:
    """An entry neither made nor on its clip (the clip moved on by a way no one foresaw) is
    one the sweep cannot make: it says so, so that an operator recounts the ledger."""
    project = await charged(world, "a fox")
    entry = f"0:gone:{project.clips[0].task_uuid}"
    await mongo_db["projects"].update_one(
        {"_id": project.id}, {"$set": {"settle_due_at": utcnow(), "settle_owed": [entry]}}
    )

    with capture_logs() as lines:
        assert await settle_sweep(world).run_once() == 0

    (warning,) = [line for line in lines if line["event"] == "settlement_owed_not_found"]
    assert warning["entries"] == [entry]
    assert warning["log_level"] == "warning"
    assert await marks_of(mongo_db, project.id) == {}
