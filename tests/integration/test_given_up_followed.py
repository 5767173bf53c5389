"""A task Runware may bill after its clip was cancelled is followed to its end, durably.

Cancelling does not stop Runware. A cancelled processing clip's lease moves to the
attempt of its own task, and a task Runware took after the cancel (the submitter's or
the reconciler's ``Change.given_up``) is leased there too: its chain renews that lease,
and if the chain is lost the attempts reconciler re-arms it. Its video is recorded in
the clip's ``attempts``, billed once, with one ``clip.attempt_succeeded``; the clip stays
cancelled. On a real RabbitMQ, MongoDB and the simulator, with one-second leases.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from pymongo.errors import AutoReconnect

from reelflow_common.accounting import TenantLimits
from reelflow_common.domain import ClipRequest, ClipStatus
from reelflow_common.errors import TransientError
from reelflow_common.messages import AttemptSucceeded, CheckClip
from reelflow_common.polling import FixedLadderPlanner
from reelflow_common.polling.delivery import send_check
from reelflow_common.store import (
    TIMED_OUT,
    Attempt,
    Change,
    ClipState,
    NewProject,
    Project,
    ProjectStore,
    TaskFailed,
    TaskSucceeded,
)
from reelflow_common.store.timefmt import as_utc, utcnow
from reelflow_common.topology import CHECK_CLIP, SUBMIT_CLIP
from reelflow_common.tracking.attempts import AttemptsReconciler
from reelflow_poller.settings import Settings
from reelflow_runware_sim.testing import RunningSimulator
from reelflow_submitter.handlers import SubmitHandler
from reelflow_submitter.service import video_request
from reelflow_submitter.settings import Settings as SubmitterSettings
from tests.integration.test_reconciler import (
    GRACE_S,
    LEASE_S,
    MAX_AGE_S,
    CancelledBeforeTakeover,
    expired,
    reconciler,
    settings,
)
from tests.integration.worker_helpers import (
    FAST_LADDERS,
    World,
    check_handler,
    handled_first,
    refuse_checks,
    runware_settings,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration

__all__ = ["settings"]  # the poller's settings of test_reconciler: one-second leases

ESTIMATE_USD = 0.5


async def charged_project(
    world: World, prompt: str, *, projects: ProjectStore | None = None
) -> Project:
    """A one-clip project whose clip holds a reservation on its tenant's ledger (stored by
    ``projects``, by default the world's store)."""
    limits = TenantLimits(max_clips_in_flight=10)
    charge = await world.projects.ledgers.reserve(
        world.tenant_id, limits, clips=1, usd=ESTIMATE_USD, now=utcnow()
    )
    assert charge is not None
    new = NewProject(
        tenant_id=world.tenant_id,
        title="cancelled",
        model="google:3@3",
        scenes=[ClipRequest(prompt=prompt, duration=4, width=1280, height=720)],
        charges=[charge],
    )
    created = (await (projects or world.projects).create(new)).project
    return await world.project(created.id)


async def cancel(world: World, project: Project, *, projects: ProjectStore | None = None) -> None:
    store = projects or world.projects
    assert await store.cancel(project.id, tenant_id=world.tenant_id) is not None


async def ledger(world: World) -> tuple[int, float]:
    """Clips in flight, and dollars committed today, on the tenant's ledger."""
    view = await world.projects.ledgers.read(world.tenant_id)
    return view.open, view.committed_in(utcnow().strftime("%Y-%m-%d"))


async def own_attempt(
    world: World, project: Project, task_uuid: str | None = None
) -> Attempt | None:
    """The clip's attempt of ``task_uuid``, by default of its own task."""
    clip = (await world.project(project.id)).clips[0]
    return clip.attempts.get(task_uuid or clip.task_uuid)


async def until_recorded(world: World, project: Project) -> Attempt:
    async def recorded() -> bool:
        attempt = await own_attempt(world, project)
        return attempt is not None and attempt.status is ClipStatus.SUCCESS

    await eventually(recorded, "the cancelled clip's video recorded in its attempts")
    attempt = await own_attempt(world, project)
    assert attempt is not None
    return attempt


async def lease_ran_out(world: World, project: Project, task_uuid: str | None = None) -> Attempt:
    """Wait until the lease in the clip's attempt of ``task_uuid`` (by default of its own
    task) has run out by the grace."""

    async def run_out() -> bool:
        attempt = await own_attempt(world, project, task_uuid)
        limit = utcnow() - timedelta(seconds=GRACE_S)
        return attempt is not None and attempt.lease is not None and attempt.lease.until < limit

    await eventually(run_out, "the followed task's lease ran out", timeout_s=5)
    attempt = await own_attempt(world, project, task_uuid)
    assert attempt is not None
    return attempt


async def billed_once(
    world: World, project: Project, attempt: Attempt, *, late: bool = True
) -> float:
    """The video is the task's, the clip stays cancelled, its cost is counted once.

    ``late``: the task's reservation was freed when it was given up on (it was not known to
    be at Runware then), so the video is billed on its own; else the reservation was held
    with the task until this end.
    """
    task_uuid = project.clips[0].task_uuid
    truth = await world.sim.task(task_uuid)
    assert truth["billed"]
    after = await world.project(project.id)
    assert after.clips[0].status is ClipStatus.CANCELLED
    assert (attempt.status, attempt.cost, attempt.late, attempt.lease) == (
        ClipStatus.SUCCESS,
        truth["cost"],
        late,
        None,
    )
    assert after.cost.usd == pytest.approx(truth["cost"])
    assert after.cost.known == 1
    assert await ledger(world) == pytest.approx((0, truth["cost"]))
    cost: float = truth["cost"]
    return cost


async def test_a_cancelled_processing_clips_task_is_followed_to_its_video_and_billed_once(
    world: World, settings: Settings, mongo_db: Any
) -> None:
    # Runs past several one-second leases: its chain must renew the lease after the cancel.
    project = await world.processing(await charged_project(world, "a fox [sim:latency=3000]"))
    task_uuid = project.clips[0].task_uuid
    check = await world.check_of(project)
    events = await world.events()
    await cancel(world, project)
    # Runware runs it on: the tenant's ledger holds it in flight, its estimate committed.
    assert await ledger(world) == pytest.approx((1, ESTIMATE_USD))

    async with world.consuming(CHECK_CLIP, CheckClip, check_handler(world, settings)):
        await send_check(world.publisher, check, delay_s=0.05, now=utcnow())
        attempt = await until_recorded(world, project)

    cost = await billed_once(world, project, attempt, late=False)
    seen = await world.settle_events(events)
    told = [event for event in seen if isinstance(event, AttemptSucceeded)]
    assert [(event.attempt.task_uuid, event.attempt.cost) for event in told] == [(task_uuid, cost)]
    # A redelivered check of the chain (its old lease, Runware's same answer): nothing more.
    seq = (await world.project(project.id)).seq
    await check_handler(world, settings)(check)
    assert (await world.project(project.id)).seq == seq
    await billed_once(world, project, attempt, late=False)
    # Nothing open is left in attempts: the project leaves the attempts reconciler's index.
    attempts = reconciler(world, settings, kind=AttemptsReconciler)

    async def left_the_index() -> bool:
        await attempts.run_once()
        doc = await mongo_db["projects"].find_one({"_id": project.id})
        return "attempts_due_at" not in doc

    await eventually(left_the_index, "attempts_due_at removed", timeout_s=5)


async def test_a_cancelled_processing_clips_task_that_fails_frees_its_reservation_at_its_end(
    world: World, settings: Settings
) -> None:
    project = await world.processing(
        await charged_project(world, "a fox [sim:latency=1500] [sim:fail]")
    )
    check = await world.check_of(project)
    await cancel(world, project)
    assert await ledger(world) == pytest.approx((1, ESTIMATE_USD))  # Runware runs it on

    async with world.consuming(CHECK_CLIP, CheckClip, check_handler(world, settings)):
        await send_check(world.publisher, check, delay_s=0.05, now=utcnow())

        async def ended() -> bool:
            attempt = await own_attempt(world, project)
            return attempt is not None and attempt.status is ClipStatus.FAILED

        await eventually(ended, "the cancelled clip's task's failure recorded in its attempts")

    # Its end frees the reservation, once: nothing in flight, nothing committed.
    assert await ledger(world) == pytest.approx((0, 0.0))
    await check_handler(world, settings)(check)  # a redelivered check of the chain
    assert await ledger(world) == pytest.approx((0, 0.0))
    after = await world.project(project.id)
    assert (after.clips[0].status, after.cost.usd) == (ClipStatus.CANCELLED, 0.0)


async def test_a_given_up_task_whose_chain_is_lost_is_recorded_by_the_attempts_reconciler(
    world: World, settings: Settings, mongo_db: Any
) -> None:
    project = await charged_project(world, "a fox [sim:latency=1500]")
    # The submitter died after Runware accepted the task, before it recorded anything.
    await world.runware.submit_video(video_request(world.submit_of(project), webhook_url=None))
    await expired(world, project)
    store = CancelledBeforeTakeover(mongo_db, lease_s=LEASE_S)
    store.tenant_id = world.tenant_id
    assert await reconciler(world, settings, store).run_once() == 1
    # The reconciler follows the task Runware bills, under a lease in its attempt (where
    # the cancel moved the queued task with its charge: marked processing there)...
    (lost,) = world.publisher.sent_to(CHECK_CLIP)
    held = await own_attempt(world, project)
    assert held is not None
    assert held.lease is not None
    assert (held.status, held.lease.token) == (ClipStatus.PROCESSING, lost.token)
    assert await ledger(world) == pytest.approx((1, ESTIMATE_USD))  # in flight with it
    # ... and its check is lost (never delivered): no chain renews that lease.
    world.publisher.sent.clear()
    await world.until_finished_at_runware(project.clips[0].task_uuid)
    await lease_ran_out(world, project)
    events = await world.events()

    assert await reconciler(world, settings, kind=AttemptsReconciler).run_once() == 1

    attempt = await own_attempt(world, project)
    assert attempt is not None
    await billed_once(world, project, attempt, late=False)
    assert world.publisher.sent == []
    (told,) = await world.settle_events(events)
    assert isinstance(told, AttemptSucceeded)
    # The lost check turns up after all: it changes nothing.
    seq = (await world.project(project.id)).seq
    await check_handler(world, settings)(lost)
    assert (await world.project(project.id)).seq == seq
    await billed_once(world, project, attempt, late=False)


@pytest.mark.parametrize("sent", [False, True], ids=["never sent", "sent before the crash"])
async def test_a_cancelled_queued_task_whose_submit_chain_is_lost_is_settled_by_the_reconciler(
    world: World, settings: Settings, sent: bool
) -> None:
    project = await charged_project(world, "a fox [sim:latency=1500]")
    task_uuid = project.clips[0].task_uuid
    if sent:
        # Its first submit (within the no-read window) reached Runware; its holder died
        # before it recorded anything.
        await world.runware.submit_video(video_request(world.submit_of(project), webhook_url=None))
    await cancel(world, project)
    # The cancel holds the charge with the queued task, under its chain's lease; the chain
    # is lost (its message dead-lettered, say): nobody will give its word.
    waiting = await own_attempt(world, project)
    assert waiting is not None
    assert (waiting.status, waiting.lease) == (ClipStatus.QUEUED, project.clips[0].lease)
    assert await ledger(world) == pytest.approx((1, ESTIMATE_USD))
    await lease_ran_out(world, project)
    attempts = reconciler(world, settings, kind=AttemptsReconciler)

    assert await attempts.run_once() == 1

    if not sent:
        # Runware never had it (past the grace, from the lease's end): ended, charge freed.
        ended = await own_attempt(world, project)
        assert ended is not None
        assert (ended.status, ended.lease) == (ClipStatus.FAILED, None)
        assert await ledger(world) == pytest.approx((0, 0.0))
        assert world.publisher.sent == []
        assert (await world.sim.stats())["task_types"] == {"getResponse": 1}
        return
    # Runware runs it: one chain re-armed to follow it, the charge held until its end.
    (rearmed,) = world.publisher.sent_to(CHECK_CLIP)
    assert rearmed.task_uuid == task_uuid
    assert await ledger(world) == pytest.approx((1, ESTIMATE_USD))
    async with world.consuming(CHECK_CLIP, CheckClip, check_handler(world, settings)):
        await send_check(world.publisher, rearmed, delay_s=0.05, now=utcnow())
        attempt = await until_recorded(world, project)
    await billed_once(world, project, attempt, late=False)


@pytest.fixture
def submitter_settings(
    settings_for: Callable[..., Any], runware_sim: RunningSimulator
) -> SubmitterSettings:
    found: SubmitterSettings = settings_for(
        SubmitterSettings,
        http_host="127.0.0.1",
        http_port=0,
        lease_s=LEASE_S,
        not_found_grace_s=0,
        **FAST_LADDERS,
        **runware_settings(runware_sim),
    )
    return found


def submit_handler(world: World, settings: SubmitterSettings) -> SubmitHandler:
    return SubmitHandler(
        world.projects,
        world.runware,
        world.publisher,
        settings,
        planner=FixedLadderPlanner.from_settings(settings),
        clock=utcnow,
        rng=random.Random(0),
    )


async def test_a_task_bought_after_a_cancel_whose_chain_is_lost_is_rearmed_and_recorded(
    world: World, settings: Settings, submitter_settings: SubmitterSettings
) -> None:
    project = await charged_project(world, "a fox [sim:latency=4000]")
    task_uuid = project.clips[0].task_uuid
    submit = world.submit_of(project)
    # Cancelled while its first submit was on its way: Runware takes the task (and bills it).
    await cancel(world, project)
    submitter = submit_handler(world, submitter_settings)
    assert await ledger(world) == pytest.approx((1, ESTIMATE_USD))  # held: its chain may send it
    await handled_first(world, submitter, submit)  # in the no-read window
    assert world.publisher.sent_to(SUBMIT_CLIP) == []
    (lost,) = world.publisher.sent_to(CHECK_CLIP)  # never delivered
    assert lost.task_uuid == task_uuid
    held = await lease_ran_out(world, project)
    assert held.lease is not None
    # The chain goes on under its own lease, which the cancel moved with the queued task.
    assert (held.status, held.lease.token, lost.token) == (
        ClipStatus.PROCESSING,
        lost.token,
        submit.token,
    )
    assert await ledger(world) == pytest.approx((1, ESTIMATE_USD))  # Runware runs it
    world.publisher.sent.clear()

    # Runware still runs it: the attempts reconciler re-arms one chain under a fresh token.
    assert await reconciler(world, settings, kind=AttemptsReconciler).run_once() == 1
    (rearmed,) = world.publisher.sent_to(CHECK_CLIP)
    assert (rearmed.task_uuid, rearmed.token != lost.token) == (task_uuid, True)
    check = check_handler(world, settings)
    await check(lost)  # the lost chain turns up: its renewal matches nothing, it stops
    assert world.publisher.sent_to(CHECK_CLIP) == [rearmed]

    async with world.consuming(CHECK_CLIP, CheckClip, check):
        await send_check(world.publisher, rearmed, delay_s=0.05, now=utcnow())
        attempt = await until_recorded(world, project)
    await billed_once(world, project, attempt, late=False)
    # The submit redelivered (its holder crashed): the task is followed already, nothing more.
    world.publisher.sent.clear()
    seq = (await world.project(project.id)).seq
    await submitter(submit)
    assert world.publisher.sent == []
    assert (await world.project(project.id)).seq == seq
    await billed_once(world, project, attempt, late=False)


#: the token of a chain the reconciler re-armed the queued clip under, whose submit reaches
#: Runware although the cancel's last try moved the lease it had replaced (as last read)
REARMED = "rearmed-chain"


@pytest.mark.parametrize(
    "word",
    [
        # it reads the cancel before any submit of its own
        "never submitted",
        # its verify (over budget, say) does not see the task yet (Runware's visibility lags
        # the other chain's submit) and fails its clip, as ``SubmitHandler._fail`` writes
        "failed by its verify",
    ],
)
async def test_a_held_task_another_chain_got_to_runware_is_followed_not_freed_by_its_holder(
    world: World, settings: Settings, submitter_settings: SubmitterSettings, word: str
) -> None:
    project = await charged_project(world, "a fox [sim:latency=1500]")
    task_uuid = project.clips[0].task_uuid
    holder = world.submit_of(project)
    await cancel(world, project)  # held under the lease it read: its first chain's

    # A chain under another token gets the task to Runware (it read the clip just before the
    # cancel): it does not hold the entry.
    rearmed_chain = holder.model_copy(update={"token": REARMED})
    await handled_first(world, submit_handler(world, submitter_settings), rearmed_chain)

    assert world.publisher.sent == []  # it leaves the task to the entry's holder
    waiting = await own_attempt(world, project)
    assert waiting is not None
    assert waiting.lease is not None
    assert (waiting.status, waiting.lease.token) == (ClipStatus.QUEUED, holder.token)
    assert waiting.submitted_at is not None  # when Runware took it
    # The holder's chain says Runware never got the task: its word frees nothing, as
    # Runware runs the task.
    if word == "never submitted":
        given_up = {"code": "clipGivenUp", "message": "cancelled before Runware had it"}
        freed = await world.projects.never_submitted(
            project.id, 0, task_uuid, given_up, token=holder.token
        )
        assert not freed
    else:
        failed = await world.projects.record(
            project.id,
            0,
            task_uuid,
            TaskFailed(code="budgetExceeded", message="The daily budget is spent."),
            token=holder.token,
            statuses=(ClipStatus.QUEUED,),
            submit_word=True,
        )
        assert not failed.applied
    still = await own_attempt(world, project)
    assert still is not None
    assert (still.status, still.lease) == (ClipStatus.QUEUED, waiting.lease)
    assert await ledger(world) == pytest.approx((1, ESTIMATE_USD))
    # Its lease runs out: the attempts reconciler finds the task at Runware and follows it.
    await lease_ran_out(world, project)
    assert await reconciler(world, settings, kind=AttemptsReconciler).run_once() == 1
    (rearmed,) = world.publisher.sent_to(CHECK_CLIP)
    async with world.consuming(CHECK_CLIP, CheckClip, check_handler(world, settings)):
        await send_check(world.publisher, rearmed, delay_s=0.05, now=utcnow())
        attempt = await until_recorded(world, project)
    await billed_once(world, project, attempt, late=False)


async def test_a_held_task_another_chain_submitted_past_our_ceiling_ends_and_frees_once(
    world: World, settings: Settings, submitter_settings: SubmitterSettings, mongo_db: Any
) -> None:
    project = await charged_project(world, "a fox [sim:hang]")  # Runware never finishes it
    task_uuid = project.clips[0].task_uuid
    holder = world.submit_of(project)
    await cancel(world, project)
    rearmed_chain = holder.model_copy(update={"token": REARMED})  # read the clip before the cancel
    await handled_first(world, submit_handler(world, submitter_settings), rearmed_chain)
    # That submit was recorded longer ago than our ceiling, and the holder's chain is lost.
    await mongo_db["projects"].update_one(
        {"_id": project.id},
        {
            "$set": {
                f"clips.0.attempts.{task_uuid}.submitted_at": utcnow()
                - timedelta(seconds=MAX_AGE_S + 60)
            }
        },
    )
    await lease_ran_out(world, project)

    # The attempts reconciler ends it at our ceiling (not the submit chain's word, which a
    # recorded submit guards out): failed, its charge freed, once.
    await reconciler(world, settings, kind=AttemptsReconciler).run_once()

    attempt = await own_attempt(world, project)
    assert attempt is not None
    assert attempt.error is not None
    assert (attempt.status, attempt.error["code"], attempt.lease) == (
        ClipStatus.FAILED,
        "timedOut",
        None,
    )
    assert await ledger(world) == pytest.approx((0, 0.0))
    assert await reconciler(world, settings, kind=AttemptsReconciler).run_once() == 0
    assert await ledger(world) == pytest.approx((0, 0.0))


async def test_a_held_tasks_submit_by_another_chain_starts_runwares_grace_for_the_reconciler(
    world: World, settings: Settings, mongo_db: Any
) -> None:
    grace_s = 30.0
    # Queued and cancelled long ago (the store's clock says so): the lease the cancel's last
    # try moved, as it read it, ran out long before a re-armed chain's submit just now.
    earlier = ProjectStore(
        mongo_db, lease_s=LEASE_S, clock=lambda: utcnow() - timedelta(seconds=grace_s + 15)
    )
    project = await charged_project(world, "a fox", projects=earlier)
    task_uuid = project.clips[0].task_uuid
    await cancel(world, project, projects=earlier)
    change = await world.projects.mark_processing(project.id, 0, task_uuid, token=REARMED)
    assert not change.applied
    submitted = await own_attempt(world, project)
    assert submitted is not None
    assert submitted.submitted_at is not None
    graceful = settings.model_copy(update={"not_found_grace_s": grace_s})

    # Runware does not show the task yet (its visibility lags): within the grace of that
    # submit, not of the lease's end.
    assert await reconciler(world, graceful, kind=AttemptsReconciler).run_once() == 1

    attempt = await own_attempt(world, project)
    assert attempt is not None
    assert attempt.status is ClipStatus.QUEUED  # not failed: its charge is still held
    assert await ledger(world) == pytest.approx((1, ESTIMATE_USD))
    (rearmed,) = world.publisher.sent_to(CHECK_CLIP)
    assert (rearmed.task_uuid, rearmed.submitted_at) == (task_uuid, submitted.submitted_at)


class RenewedAfterRead(ProjectStore):
    """A store whose clip's chain renews its lease just after the cancel read the clip."""

    async def get(
        self, project_id: str, *, tenant_id: str | None = None, with_requests: bool = False
    ) -> Project | None:
        read = await super().get(project_id, tenant_id=tenant_id, with_requests=with_requests)
        lease = None if read is None else read.clips[0].lease
        if lease is not None:
            until = lease.until + timedelta(seconds=30)
            assert await self.renew_lease(
                project_id, 0, token=lease.token, until_was=lease.until, until=until
            )
        return read


async def test_a_cancel_that_read_a_lease_since_renewed_reads_again_and_moves_the_live_one(
    world: World, mongo_db: Any
) -> None:
    project = await world.processing(await world.new_project("a fox"))
    read = project.clips[0].lease
    assert read is not None
    store = RenewedAfterRead(mongo_db, lease_s=LEASE_S)

    assert await store.cancel(project.id, tenant_id=world.tenant_id) is not None

    clip = (await world.project(project.id)).clips[0]
    assert clip.status is ClipStatus.CANCELLED
    moved = clip.attempts[clip.task_uuid].lease
    assert moved is not None
    # The chain's lease as it is now (renewed after the read): that chain goes on renewing it.
    assert (moved.token, moved.until) == (read.token, read.until + timedelta(seconds=30))


class FollowedAfterRetryRead(ProjectStore):
    """A store whose failed clip's task is found at Runware (and followed) just after a retry
    read the project."""

    followed: str | None = None

    async def get(
        self, project_id: str, *, tenant_id: str | None = None, with_requests: bool = False
    ) -> Project | None:
        read = await super().get(project_id, tenant_id=tenant_id, with_requests=with_requests)
        if read is not None and self.followed is None:
            lease = await self.follow_given_up(project_id, 0, read.clips[0].task_uuid)
            assert lease is not None
            self.followed = lease.token
        return read


async def test_a_retry_racing_a_given_up_task_found_reads_again_and_watches_that_task(
    world: World, mongo_db: Any
) -> None:
    project = await world.new_project("a fox")
    task_uuid = project.clips[0].task_uuid
    failed = TaskFailed(code="taskFailedOrNotFound", message="not found")
    assert (await world.projects.record(project.id, 0, task_uuid, failed)).applied
    store = FollowedAfterRetryRead(mongo_db, lease_s=LEASE_S)

    outcome = await store.retry(project.id, tenant_id=world.tenant_id)

    # Read again (not taken for a concurrent retry): Runware runs the clip's task after all,
    # so the clip watches it again, nothing bought; the follow's chain stops at its renewal.
    assert outcome is not None
    assert (outcome.rewatch, outcome.resubmit) == ([0], [])
    clip = (await world.project(project.id)).clips[0]
    assert (clip.status, clip.task_uuid) == (ClipStatus.PROCESSING, task_uuid)
    assert task_uuid not in clip.attempts
    assert clip.lease is not None
    assert clip.lease.token != store.followed


async def test_a_retried_clip_whose_task_runware_took_after_it_failed_buys_no_second_task(
    world: World, submitter_settings: SubmitterSettings
) -> None:
    project = await world.new_project("a fox [sim:latency=20000]")
    task_uuid = project.clips[0].task_uuid
    holder = world.submit_of(project)
    # The clip's chain fails it on its own word (over budget, Runware never asked) while a
    # duplicate of its SubmitClip, which read the clip queued a moment before, gets the task
    # to Runware, whose chain then follows it.
    over_budget = TaskFailed(code="budgetExceeded", message="The daily budget is spent.")
    failed = await world.projects.record(
        project.id,
        0,
        task_uuid,
        over_budget,
        token=holder.token,
        statuses=(ClipStatus.QUEUED,),
        submit_word=True,
    )
    assert failed.applied
    await handled_first(world, submit_handler(world, submitter_settings), holder.model_copy())
    assert (await world.sim.task(task_uuid))["state"] == "processing"
    followed = (await world.project(project.id)).clips[0].attempts[task_uuid].lease
    assert followed is not None

    outcome = await world.projects.retry(project.id, tenant_id=world.tenant_id)

    # The tenant's retry watches the task Runware runs (and bills) instead of buying another.
    assert outcome is not None
    assert (outcome.rewatch, outcome.resubmit) == ([0], [])
    clip = (await world.project(project.id)).clips[0]
    assert (clip.status, clip.task_uuid, clip.error) == (ClipStatus.PROCESSING, task_uuid, None)
    assert clip.submitted_at is not None
    assert task_uuid not in clip.attempts  # one chain: the follow's stops at its renewal
    assert clip.lease is not None
    assert clip.lease.token != followed.token


async def test_an_end_the_reconciler_records_is_settled_though_an_outage_met_its_settlement(
    world: World, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await world.processing(await charged_project(world, "a fox"))
    await world.until_finished_at_runware(project.clips[0].task_uuid)
    await expired(world, project)
    assert await ledger(world) == (1, ESTIMATE_USD)
    settle = world.projects.ledgers.settle
    outage = ["the connection reset (a failover)"]

    async def failing_once(*args: Any, **kwargs: Any) -> bool:
        if outage:
            raise AutoReconnect(outage.pop())
        return await settle(*args, **kwargs)

    monkeypatch.setattr(world.projects.ledgers, "settle", failing_once)

    # The success lands on the clip; the ledger's settlement after it meets the outage. No
    # message stands behind the reconciler's write to repeat it: the pass records it again.
    assert await reconciler(world, settings).run_once() == 1

    clip = (await world.project(project.id)).clips[0]
    assert clip.status is ClipStatus.SUCCESS
    assert clip.cost is not None
    assert outage == []
    in_flight, committed = await ledger(world)
    assert in_flight == 0
    assert committed == pytest.approx(clip.cost)


async def test_a_rearmed_follow_counts_its_ceiling_from_the_watch_the_cancel_copied(
    world: World, settings: Settings, mongo_db: Any
) -> None:
    project = await world.processing(await world.new_project("a fox [sim:latency=60000]"))
    task_uuid = project.clips[0].task_uuid
    # Submitted long ago, watched again just now (a retry of a clip that timed out): the
    # ceiling counts from the watch.
    now = utcnow()
    await mongo_db["projects"].update_one(
        {"_id": project.id},
        {
            "$set": {
                "clips.0.submitted_at": now - timedelta(seconds=MAX_AGE_S + 60),
                "clips.0.watched_since": now,
            }
        },
    )
    await cancel(world, project)
    held = await own_attempt(world, project)
    assert held is not None
    assert held.watched_since == now.replace(microsecond=now.microsecond // 1000 * 1000)
    await lease_ran_out(world, project)

    assert await reconciler(world, settings, kind=AttemptsReconciler).run_once() == 1

    # Still within its ceiling: re-armed (one chain, watched from the copied start), not
    # timed out from the submit.
    (rearmed,) = world.publisher.sent_to(CHECK_CLIP)
    assert (rearmed.task_uuid, rearmed.watched_since) == (task_uuid, held.watched_since)
    attempt = await own_attempt(world, project)
    assert attempt is not None
    assert attempt.lease is not None
    assert (attempt.status, attempt.lease.token) == (ClipStatus.CANCELLED, rearmed.token)


async def test_expiring_a_chains_lease_expires_it_in_its_tasks_attempt_too(
    world: World, mongo_db: Any
) -> None:
    project = await world.processing(await world.new_project("a fox"))
    task_uuid = project.clips[0].task_uuid
    await cancel(world, project)  # the chain's lease moves to attempts.T, token and end as were
    held = await own_attempt(world, project)
    assert held is not None
    assert held.lease is not None
    before = utcnow()

    # A stale token expires nothing; the chain's own does, in the attempt.
    await world.projects.expire_leases(project.id, {0: "stale"}, tasks={0: task_uuid})
    kept = await own_attempt(world, project)
    assert kept is not None
    assert kept.lease == held.lease
    await world.projects.expire_leases(project.id, {0: held.lease.token}, tasks={0: task_uuid})

    expired_now = await own_attempt(world, project)
    assert expired_now is not None
    assert expired_now.lease is not None
    assert expired_now.lease.token == held.lease.token
    assert before - timedelta(seconds=1) <= expired_now.lease.until <= utcnow()
    doc = await mongo_db["projects"].find_one({"_id": project.id})
    # The attempts reconciler takes it at its next pass.
    assert as_utc(doc["attempts_due_at"]) <= expired_now.lease.until


async def test_a_stale_chain_of_a_followed_task_never_times_out_the_clip_watched_again(
    world: World, settings: Settings
) -> None:
    project = await world.new_project("a fox [sim:latency=60000]")
    task_uuid = project.clips[0].task_uuid
    await world.runware.submit_video(video_request(world.submit_of(project), webhook_url=None))
    ceiling = TaskFailed(code=TIMED_OUT, message="Runware had not finished the task.")
    assert (await world.projects.record(project.id, 0, task_uuid, ceiling)).applied
    # Runware holds the timed-out clip's task: a chain follows it in attempts.T...
    lease = await world.projects.follow_given_up(project.id, 0, task_uuid)
    assert lease is not None
    # ... until a retry watches the task again on the clip, under a chain of its own.
    outcome = await world.projects.retry(project.id, tenant_id=world.tenant_id)
    assert outcome is not None
    assert outcome.rewatch == [0]
    watched = await world.project(project.id)
    assert watched.clips[0].status is ClipStatus.PROCESSING
    own = await world.check_of(watched)
    stale = own.model_copy(
        update={
            "token": lease.token,
            "lease_until": lease.until,
            "watched_since": utcnow() - timedelta(seconds=MAX_AGE_S + 60),
        }
    )

    # The followed task's old chain reaches its ceiling: it is not the clip's chain.
    await check_handler(world, settings)(stale)

    clip = (await world.project(project.id)).clips[0]
    assert (clip.status, clip.lease) == (ClipStatus.PROCESSING, watched.clips[0].lease)
    assert (await world.project(project.id)).seq == watched.seq
    # The clip's own chain past the ceiling does time it out.
    past = own.model_copy(update={"watched_since": stale.watched_since})
    await check_handler(world, settings)(past)
    clip = (await world.project(project.id)).clips[0]
    assert (clip.status, (clip.error or {}).get("code")) == (ClipStatus.FAILED, TIMED_OUT)


async def test_a_stray_leased_attempt_of_an_open_clips_own_task_is_dropped_not_followed(
    world: World, settings: Settings, mongo_db: Any
) -> None:
    project = await world.processing(await world.new_project("a fox [sim:latency=60000]"))
    clip = project.clips[0]
    # Left by a release before this one: the clip's own task, leased in attempts as well.
    ran_out = utcnow() - timedelta(seconds=30)
    stray = {"status": "cancelled", "lease": {"token": "stray", "until": ran_out}}
    await mongo_db["projects"].update_one(
        {"_id": project.id},
        {"$set": {f"clips.0.attempts.{clip.task_uuid}": stray, "attempts_due_at": ran_out}},
    )

    assert await reconciler(world, settings, kind=AttemptsReconciler).run_once() == 1

    # No second chain for the task: the stray is gone, the clip and its chain as they were.
    assert world.publisher.sent_to(CHECK_CLIP) == []
    after = (await world.project(project.id)).clips[0]
    assert (after.status, after.lease, after.attempts) == (ClipStatus.PROCESSING, clip.lease, {})
    doc = await mongo_db["projects"].find_one({"_id": project.id})
    assert "attempts_due_at" not in doc


async def test_a_replaced_tasks_chain_that_cannot_start_its_checks_expires_its_attempts_lease(
    world: World, submitter_settings: SubmitterSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await world.new_project("a fox [sim:latency=60000]")
    first = project.clips[0].task_uuid
    lost = TaskFailed(code="taskFailedOrNotFound", message="Runware does not know the task.")
    assert (await world.projects.record(project.id, 0, first, lost)).applied
    assert await world.projects.retry(project.id, tenant_id=world.tenant_id) is not None
    retried = world.submit_of(await world.project(project.id))
    # An earlier submit of the retry's task got to Runware unanswered...
    await world.runware.submit_video(video_request(retried, webhook_url=None))
    # ... and the first task's video comes after all: the clip takes it, the retry's task
    # (still queued as far as the store knows) moves to its attempt with its chain's lease.
    late = TaskSucceeded(video_url="https://cdn.test/late.mp4", cost=0.4)
    assert (await world.projects.record(project.id, 0, first, late)).applied
    refuse_checks(world, monkeypatch, TransientError("the broker did not confirm"))
    submitter = submit_handler(world, submitter_settings)

    # Its chain finds the task at Runware, marks the attempt processing, and cannot start
    # the checks: its lease, in the attempt, expires at once for the attempts reconciler.
    with pytest.raises(TransientError):
        await submitter(retried)

    attempt = (await world.project(project.id)).clips[0].attempts[retried.task_uuid]
    assert attempt.lease is not None
    assert (attempt.status, attempt.lease.token) == (ClipStatus.PROCESSING, retried.token)
    assert attempt.lease.until <= utcnow()


async def test_a_replaced_task_we_ended_ourselves_is_followed_when_found_at_runware(
    world: World,
) -> None:
    project = await world.new_project("a fox")
    first = project.clips[0].task_uuid
    lost = TaskFailed(code="taskFailedOrNotFound", message="Runware does not know the task.")
    assert (await world.projects.record(project.id, 0, first, lost)).applied
    assert await world.projects.retry(project.id, tenant_id=world.tenant_id) is not None
    retried = world.submit_of(await world.project(project.id))
    late = TaskSucceeded(video_url="https://cdn.test/late.mp4", cost=0.4)
    assert (await world.projects.record(project.id, 0, first, late)).applied
    # The retry's chain, the task no longer wanted and not at Runware (past the grace),
    # ends its attempt itself: our decision, not the task's last word.
    replaced = TaskFailed(code="taskReplaced", message="The clip took an earlier task's video.")
    ended = await world.projects.record(
        project.id, 0, retried.task_uuid, replaced, token=retried.token,
        statuses=(ClipStatus.QUEUED,),
    )  # fmt: skip
    assert ended.applied
    attempt = (await world.project(project.id)).clips[0].attempts[retried.task_uuid]
    assert (attempt.status, attempt.end_recorded) == (ClipStatus.FAILED, False)

    # A fork of its submit got the task to Runware after all: Runware bills it, so a chain
    # that finds it there follows it.
    lease = await world.projects.follow_given_up(project.id, 0, retried.task_uuid)

    assert lease is not None
    attempt = (await world.project(project.id)).clips[0].attempts[retried.task_uuid]
    assert attempt.lease == lease


async def test_a_replaced_task_that_waited_in_the_queue_counts_its_ceiling_from_its_submit(
    world: World, settings: Settings, mongo_db: Any
) -> None:
    project = await world.new_project("a fox [sim:latency=60000]")
    first = project.clips[0].task_uuid
    lost = TaskFailed(code="taskFailedOrNotFound", message="Runware does not know the task.")
    assert (await world.projects.record(project.id, 0, first, lost)).applied
    assert await world.projects.retry(project.id, tenant_id=world.tenant_id) is not None
    # The retry's task waited in the queue (an outage) longer than the ceiling...
    queued_long_ago = utcnow() - timedelta(seconds=MAX_AGE_S + 30)
    await mongo_db["projects"].update_one(
        {"_id": project.id}, {"$set": {"clips.0.queued_at": queued_long_ago}}
    )
    retried = world.submit_of(await world.project(project.id))
    await world.runware.submit_video(video_request(retried, webhook_url=None))
    # ... the first task's video came meanwhile (the retry's task moves to its attempt),
    # and then the retry's submit reached Runware: Runware bills it from now.
    late = TaskSucceeded(video_url="https://cdn.test/late.mp4", cost=0.4)
    assert (await world.projects.record(project.id, 0, first, late)).applied
    submitted = await world.projects.mark_processing(
        project.id, 0, retried.task_uuid, token=retried.token
    )
    assert submitted.applied

    # Its chain lost, the attempts reconciler re-arms it: seconds into its watch.
    await lease_ran_out(world, project, retried.task_uuid)
    await reconciler(world, settings, kind=AttemptsReconciler).run_once()

    attempt = (await world.project(project.id)).clips[0].attempts[retried.task_uuid]
    assert (attempt.status, attempt.error) == (ClipStatus.PROCESSING, None)
    assert world.publisher.sent_to(CHECK_CLIP) != []


class DropsStrayAfterRead(ProjectStore):
    """A store whose reads race the attempts reconciler's repair of a stray attempts.T."""

    async def get(
        self, project_id: str, *, tenant_id: str | None = None, with_requests: bool = False
    ) -> Project | None:
        read = await super().get(project_id, tenant_id=tenant_id, with_requests=with_requests)
        assert read is not None
        clip = read.clips[0]
        await self.drop_stray_attempt(project_id, clip, clip.task_uuid)
        return read


async def test_a_cancel_racing_the_drop_of_a_stray_attempt_still_follows_the_task(
    world: World, mongo_db: Any
) -> None:
    project = await world.processing(await world.new_project("a fox [sim:latency=60000]"))
    clip = project.clips[0]
    ran_out = utcnow() - timedelta(seconds=30)
    stray = {"status": "cancelled", "lease": {"token": "stray", "until": ran_out}}
    await mongo_db["projects"].update_one(
        {"_id": project.id},
        {"$set": {f"clips.0.attempts.{clip.task_uuid}": stray, "attempts_due_at": ran_out}},
    )
    store = DropsStrayAfterRead(mongo_db, lease_s=LEASE_S)

    assert await store.cancel(project.id, tenant_id=world.tenant_id) is not None

    # The cancel read the stray, the repair dropped it: the cancel read again and moved the
    # clip's lease to a new attempts.T, so the cancelled clip's task is still followed.
    after = (await world.project(project.id)).clips[0]
    assert (after.status, after.lease) == (ClipStatus.CANCELLED, None)
    followed = after.attempts[clip.task_uuid]
    assert followed.lease == clip.lease


class EndsAttemptAfterRead(ProjectStore):
    """A store whose repair of a replaced task's submit races the attempts reconciler, which
    records that task (still queued as read) not found at Runware, past the grace."""

    ended: bool = False

    async def _earlier_submitted(
        self,
        project_id: str,
        clip: ClipState,
        task_uuid: str,
        token: str | None,
        new_token: str | None,
    ) -> Change | None:
        if not self.ended:
            self.ended = True
            lost = TaskFailed(code="taskFailedOrNotFound", message="not found")
            assert (await self.record(project_id, clip.scene_index, task_uuid, lost)).applied
        return await super()._earlier_submitted(project_id, clip, task_uuid, token, new_token)


async def test_a_replaced_tasks_submit_racing_its_end_reads_again_and_follows_it(
    world: World, mongo_db: Any
) -> None:
    project = await world.new_project("a fox [sim:latency=60000]")
    first = project.clips[0].task_uuid
    lost = TaskFailed(code="taskFailedOrNotFound", message="Runware does not know the task.")
    assert (await world.projects.record(project.id, 0, first, lost)).applied
    assert await world.projects.retry(project.id, tenant_id=world.tenant_id) is not None
    retried = world.submit_of(await world.project(project.id))
    # The retry's submit is on its way to Runware, which takes it (and bills it)...
    await world.runware.submit_video(video_request(retried, webhook_url=None))
    # ... while the first task's video comes: the retry's task moves to its attempt, queued.
    late = TaskSucceeded(video_url="https://cdn.test/late.mp4", cost=0.4)
    assert (await world.projects.record(project.id, 0, first, late)).applied
    store = EndsAttemptAfterRead(mongo_db, lease_s=LEASE_S)

    # Its chain marks the attempt processing; between that repair's read and its write the
    # attempt is recorded failed: the repair reads again and says it was given up on.
    change = await store.mark_processing(project.id, 0, retried.task_uuid, token=retried.token)

    assert (change.applied, change.given_up) == (False, True)
    lease = await store.follow_given_up(project.id, 0, retried.task_uuid)
    assert lease is not None
    attempt = (await world.project(project.id)).clips[0].attempts[retried.task_uuid]
    assert (attempt.status, attempt.lease) == (ClipStatus.FAILED, lease)
