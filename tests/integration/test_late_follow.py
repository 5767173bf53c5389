"""A clip our ceiling fails (``timedOut``) keeps its task followed, late, with webhooks off.

Runware never said the task failed, so it may still finish it and bill it. Its check chain
follows it on, slowly, under a lease in the clip's ``attempts`` entry of that task and with
the clip's reservation held, for ``late_follow_s``: a video that comes is recorded there
and billed once (the project's cost, the tenant's usage and ledger); an error, not found or
the end of that window stops it, and the reservation is released. A retry meanwhile watches
the task again on its clip with that same reservation, reserving nothing more. On a real
RabbitMQ, MongoDB and the simulator (1000 times faster), with a one-second ceiling.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from reelflow_api.settings import Settings as ApiSettings
from reelflow_common.accounting import TenantLimits, UsageStore
from reelflow_common.accounting.limits import day_key, month_key
from reelflow_common.admin.projects import project_state, render_project
from reelflow_common.broker import PublishError
from reelflow_common.domain import ClipRequest, ClipStatus, ProjectStatus
from reelflow_common.messages import AttemptSucceeded, CheckClip, ProjectFinished
from reelflow_common.polling.delivery import send_check
from reelflow_common.store import TIMED_OUT, Attempt, NewProject, Project, TaskSucceeded
from reelflow_common.store.timefmt import as_utc, utcnow
from reelflow_common.topology import CHECK_CLIP
from reelflow_common.tracking.attempts import AttemptsReconciler
from reelflow_poller.settings import Settings
from reelflow_runware_sim.testing import RunningSimulator
from tests.integration.api_helpers import running_api
from tests.integration.test_reconciler import reconciler
from tests.integration.worker_helpers import (
    FAST_LADDERS,
    World,
    check_handler,
    refuse_checks,
    runware_settings,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration

LEASE_S = 2.0
GRACE_S = 0.1
#: the ceiling: a second after its submit, the clip fails timedOut
MAX_AGE_S = 1.0
#: the late follow: long enough for every task here that finishes
LATE_FOLLOW_S = 60.0
#: the late follow's checks: 0.2 s (the check ladder's top), then 0.4 s apart
LATE_MAX_DELAY_S = 0.4
ESTIMATE_USD = 0.5
#: the task finishes 6 s after its submit (simulated 6000 s at 1000 times): 5 s past the ceiling
FINISHES_LATE = "a fox [sim:latency=6000]"


@pytest.fixture
def settings(settings_for: Callable[..., Any], runware_sim: RunningSimulator) -> Settings:
    found: Settings = settings_for(
        Settings,
        http_host="127.0.0.1",
        http_port=0,
        lease_s=LEASE_S,
        reconcile_interval_s=0.1,
        reconcile_grace_s=GRACE_S,
        poll_max_age_s=MAX_AGE_S,
        late_follow_s=LATE_FOLLOW_S,
        late_follow_max_delay_s=LATE_MAX_DELAY_S,
        **FAST_LADDERS,
        **runware_settings(runware_sim),
    )
    return found


async def charged_project(world: World, *prompts: str) -> Project:
    """A project of the world's tenant, each clip holding a reservation on the ledger,
    submitted to Runware and recorded processing (as the submitter leaves it)."""
    limits = TenantLimits(max_clips_in_flight=10, daily_budget_usd=100)
    charge = await world.projects.ledgers.reserve(
        world.tenant_id, limits, clips=len(prompts), usd=ESTIMATE_USD * len(prompts), now=utcnow()
    )
    assert charge is not None
    new = NewProject(
        tenant_id=world.tenant_id,
        title="late",
        model="google:3@3",
        scenes=[
            ClipRequest(prompt=prompt, duration=4, width=1280, height=720) for prompt in prompts
        ],
        charges=charge.split([ESTIMATE_USD] * len(prompts)),
    )
    created = (await world.projects.create(new)).project
    return await world.processing(await world.project(created.id))


async def ledger(world: World, tenant_id: str | None = None) -> tuple[int, float]:
    """Clips in flight, and dollars committed today, on the tenant's ledger."""
    view = await world.projects.ledgers.read(tenant_id or world.tenant_id)
    return view.open, view.committed_in(day_key(utcnow()))


async def own_attempt(world: World, project: Project) -> Attempt | None:
    clip = (await world.project(project.id)).clips[0]
    return clip.attempts.get(clip.task_uuid)


async def until_timed_out(world: World, project: Project) -> Attempt:
    """Wait until the ceiling failed the clip; its task's late follow, as stored."""

    async def followed() -> bool:
        clip = (await world.project(project.id)).clips[0]
        return clip.status is ClipStatus.FAILED and clip.task_uuid in clip.attempts

    await eventually(followed, "the clip timed out, its task followed late")
    attempt = await own_attempt(world, project)
    assert attempt is not None
    return attempt


async def until_followed_to(world: World, project: Project, status: ClipStatus) -> Attempt:
    """Wait until the late follow's end (``status``) is recorded in the clip's attempts."""

    async def ended() -> bool:
        attempt = await own_attempt(world, project)
        return attempt is not None and attempt.status is status and attempt.end_recorded

    await eventually(ended, f"the late follow recorded {status.value}")
    attempt = await own_attempt(world, project)
    assert attempt is not None
    return attempt


async def checks_on_their_way(world: World) -> int:
    """The checks in the broker: ready in the work queue, or waiting in one of its wait queues
    (with no poller consuming: one being handled went back when its consumer stopped)."""
    names = [world.topology.queue(CHECK_CLIP)]
    names += [
        world.topology.wait_queue(CHECK_CLIP, ms) for ms in world.topology.ladders[CHECK_CLIP]
    ]
    return sum([await world.ready_count(name) for name in names])


async def test_a_timed_out_clips_task_that_finishes_later_is_recorded_and_billed_once(
    world: World, settings: Settings, mongo_db: Any
) -> None:
    project = await charged_project(world, FINISHES_LATE)
    task_uuid = project.clips[0].task_uuid
    events = await world.events()

    async with world.consuming(CHECK_CLIP, CheckClip, check_handler(world, settings)):
        await send_check(world.publisher, await world.check_of(project), delay_s=0, now=utcnow())
        followed = await until_timed_out(world, project)
        # The clip failed on our side; Runware runs the task on, and the tenant's ledger
        # holds it in flight with its estimate until the follow's end.
        assert followed.follow_until is not None
        assert followed.lease is not None
        assert followed.charge is not None
        assert await ledger(world) == pytest.approx((1, ESTIMATE_USD))
        attempt = await until_followed_to(world, project, ClipStatus.SUCCESS)

    truth = await world.sim.task(task_uuid)
    assert truth["state"] == "success"
    after = await world.project(project.id)
    clip = after.clips[0]
    # A terminal clip never changes: the video is the attempt's, with its cost.
    assert clip.status is ClipStatus.FAILED
    assert clip.error is not None
    assert clip.error["code"] == TIMED_OUT
    assert after.status is ProjectStatus.FAILED
    assert attempt.video_url is not None
    assert truth["video_uuids"][0] in attempt.video_url
    assert (attempt.cost, attempt.lease) == (truth["cost"], None)
    assert [(a.task_uuid, a.video_url) for a in clip.view().attempts or []] == [
        (task_uuid, attempt.video_url)
    ]
    # Billed once: in the project's cost, the tenant's usage, and its ledger (the estimate
    # released, the cost committed).
    assert after.cost.usd == pytest.approx(truth["cost"])
    assert after.cost.known == 1
    assert await ledger(world) == pytest.approx((0, truth["cost"]))
    usage = await UsageStore(mongo_db, world.projects.ledgers).month(
        world.tenant_id, month_key(utcnow()), TenantLimits(daily_budget_usd=100)
    )
    assert usage.month.usd == pytest.approx(truth["cost"])
    assert (usage.month.known_cost_clips, usage.clips_in_flight) == (1, 0)
    seen = await world.settle_events(events)
    told = [e for e in seen if isinstance(e, AttemptSucceeded)]
    assert [(e.attempt.task_uuid, e.attempt.cost) for e in told] == [(task_uuid, truth["cost"])]
    assert len([e for e in seen if isinstance(e, ProjectFinished)]) == 1
    seqs = [e.seq for e in seen]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # gap-free
    # Nothing follows the task any more; a duplicate of its end changes nothing.
    assert await checks_on_their_way(world) == 0
    video = TaskSucceeded(video_url=attempt.video_url, cost=attempt.cost)
    await world.projects.record(project.id, 0, task_uuid, video)
    assert (await world.project(project.id)).cost == after.cost
    assert await ledger(world) == pytest.approx((0, truth["cost"]))


async def test_a_task_that_never_finishes_is_followed_until_the_window_ends_then_released(
    world: World, settings: Settings, runware_sim: RunningSimulator
) -> None:
    window = settings.model_copy(update={"late_follow_s": 2.0})
    project = await charged_project(world, "a fox [sim:hang]")
    task_uuid = project.clips[0].task_uuid

    async with world.consuming(CHECK_CLIP, CheckClip, check_handler(world, window)):
        await send_check(world.publisher, await world.check_of(project), delay_s=0, now=utcnow())
        followed = await until_timed_out(world, project)
        assert await ledger(world) == pytest.approx((1, ESTIMATE_USD))  # held while followed
        # An operator's ``reelflow-admin project show`` says so.
        shown = render_project(project_state(await world.project(project.id), []), now=utcnow())
        assert f"earlier task {task_uuid}: failed" in shown
        assert "followed late until" in shown
        attempt = await until_followed_to(world, project, ClipStatus.FAILED)
    polls = (await runware_sim.task(task_uuid))["polls"]

    # The chain stopped at its end: no check of it is left on its way.
    assert await checks_on_their_way(world) == 0
    assert (await runware_sim.task(task_uuid))["polls"] == polls
    assert followed.follow_until is not None
    assert attempt.completed_at is not None
    assert attempt.completed_at >= followed.follow_until
    assert attempt.error is not None
    assert attempt.error["code"] == TIMED_OUT
    assert "late follow is over" in attempt.error["message"]
    assert attempt.lease is None
    # Its reservation is released: nothing in flight, nothing committed, nothing billed.
    assert await ledger(world) == pytest.approx((0, 0.0))
    after = await world.project(project.id)
    assert (after.clips[0].status, after.cost.usd, after.cost.known) == (ClipStatus.FAILED, 0, 0)
    # The clip's view says it all: a task followed to no video is not listed.
    assert after.clips[0].view().attempts is None


async def test_a_task_runware_fails_after_the_ceiling_ends_its_follow_at_once(
    world: World, settings: Settings
) -> None:
    project = await charged_project(world, "a fox [sim:latency=3000] [sim:fail]")

    async with world.consuming(CHECK_CLIP, CheckClip, check_handler(world, settings)):
        await send_check(world.publisher, await world.check_of(project), delay_s=0, now=utcnow())
        await until_timed_out(world, project)
        attempt = await until_followed_to(world, project, ClipStatus.FAILED)

    assert attempt.error is not None
    assert attempt.error["code"] != TIMED_OUT  # Runware's own word, long before the window
    assert await ledger(world) == pytest.approx((0, 0.0))


async def test_a_retry_during_the_follow_watches_the_task_again_and_reserves_nothing_more(
    world: World,
    settings: Settings,
    settings_for: Callable[..., Any],
    mongo_db: Any,
    amqp_connection: Any,
) -> None:
    async with running_api(settings_for(ApiSettings), mongo_db, amqp_connection) as api:
        tenant_id, auth = await api.new_tenant("late")
        await api.keys.set_limits(
            tenant_id, TenantLimits(max_clips_in_flight=10, daily_budget_usd=100)
        )
        body = {"scenes": [{"prompt": FINISHES_LATE, "duration": 4}]}
        created = await api.create(auth, body)
        assert created.status_code == 202, created.text
        project_id = created.json()["project_id"]
        await api.drain()  # its SubmitClip: the test submits it, as the submitter would
        project = await world.processing(await world.project(project_id))
        task_uuid = project.clips[0].task_uuid
        charge = project.clips[0].charge
        assert charge is not None

        async with world.consuming(CHECK_CLIP, CheckClip, check_handler(world, settings)):
            await send_check(
                world.publisher, await world.check_of(project), delay_s=0, now=utcnow()
            )
            await until_timed_out(world, project)
        # The late follow's next check waits in the broker meanwhile.
        held = await ledger(world, tenant_id)
        assert held == pytest.approx((1, charge.usd))

        retried = await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth)

        assert retried.status_code == 202, retried.text
        assert retried.json()["clips_changed"] == 1
        # The same task watched again on its clip, with the reservation its follow held:
        # nothing more reserved, nothing released.
        clip = (await world.project(project_id)).clips[0]
        assert (clip.status, clip.task_uuid, clip.charge) == (
            ClipStatus.PROCESSING,
            task_uuid,
            charge,
        )
        assert clip.attempts == {}
        assert await ledger(world, tenant_id) == pytest.approx(held)

        async def succeeded() -> bool:
            return (await world.project(project_id)).clips[0].status is ClipStatus.SUCCESS

        # Watched with a ceiling the task finishes within (the late chain's check stops at
        # its renewal, or records the video on the clip: Runware's answer either way).
        patient = settings.model_copy(update={"poll_max_age_s": 60.0})
        async with world.consuming(CHECK_CLIP, CheckClip, check_handler(world, patient)):
            await eventually(succeeded, "the rewatched clip's video recorded")

        truth = await world.sim.task(task_uuid)
        after = await world.project(project_id)
        assert (after.status, after.clips[0].cost) == (ProjectStatus.COMPLETED, truth["cost"])
        assert after.cost.usd == pytest.approx(truth["cost"])
        assert after.cost.known == 1
        assert await ledger(world, tenant_id) == pytest.approx((0, truth["cost"]))
        usage = (await api.client.get("/v1/usage", headers=auth)).json()
        assert usage["month"]["usd"] == pytest.approx(truth["cost"])
        assert (usage["month"]["known_cost_clips"], usage["clips_in_flight"]) == (1, 0)


async def test_a_retry_after_runware_failed_the_followed_task_buys_a_new_one(
    world: World,
    settings: Settings,
    settings_for: Callable[..., Any],
    mongo_db: Any,
    amqp_connection: Any,
) -> None:
    async with running_api(settings_for(ApiSettings), mongo_db, amqp_connection) as api:
        tenant_id, auth = await api.new_tenant("late")
        await api.keys.set_limits(
            tenant_id, TenantLimits(max_clips_in_flight=10, daily_budget_usd=100)
        )
        body = {"scenes": [{"prompt": "a fox [sim:latency=3000] [sim:fail]", "duration": 4}]}
        created = await api.create(auth, body)
        assert created.status_code == 202, created.text
        project_id = created.json()["project_id"]
        await api.drain()  # its SubmitClip: the test submits it, as the submitter would
        project = await world.processing(await world.project(project_id))
        task_uuid = project.clips[0].task_uuid
        charge = project.clips[0].charge
        assert charge is not None
        async with world.consuming(CHECK_CLIP, CheckClip, check_handler(world, settings)):
            await send_check(
                world.publisher, await world.check_of(project), delay_s=0, now=utcnow()
            )
            await until_timed_out(world, project)
            ended = await until_followed_to(world, project, ClipStatus.FAILED)
        assert ended.error is not None
        assert ended.error["code"] != TIMED_OUT  # Runware's own word
        # The clip still says timedOut; its reservation was released with the follow's end.
        failed = (await world.project(project_id)).clips[0]
        assert (failed.error or {}).get("code") == TIMED_OUT
        assert await ledger(world, tenant_id) == pytest.approx((0, 0.0))

        retried = await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth)

        assert retried.status_code == 202, retried.text
        assert retried.json()["clips_changed"] == 1
        # Runware failed that task: a new one is bought (and reserved for), not the dead one
        # watched again; the follow's end stays in the clip's attempts.
        clip = (await world.project(project_id)).clips[0]
        assert clip.status is ClipStatus.QUEUED
        assert clip.task_uuid != task_uuid
        assert clip.charge is not None
        assert clip.charge.id != charge.id
        assert clip.attempts == {task_uuid: ended}
        assert await ledger(world, tenant_id) == pytest.approx((1, clip.charge.usd))
        submits = await api.drain()
        assert [message.body["task_uuid"] for message in submits] == [clip.task_uuid]
        assert await checks_on_their_way(world) == 0  # nothing watches the failed task
        after = await world.project(project_id)
        assert (after.status, after.cost.usd, after.cost.known) == (ProjectStatus.GENERATING, 0, 0)


async def test_a_retry_after_the_late_video_takes_it_and_charges_nothing_more(
    world: World, settings: Settings
) -> None:
    project = await charged_project(world, FINISHES_LATE)
    task_uuid = project.clips[0].task_uuid
    async with world.consuming(CHECK_CLIP, CheckClip, check_handler(world, settings)):
        await send_check(world.publisher, await world.check_of(project), delay_s=0, now=utcnow())
        await until_timed_out(world, project)
        attempt = await until_followed_to(world, project, ClipStatus.SUCCESS)
    billed = await ledger(world)
    assert billed == pytest.approx((0, attempt.cost))

    outcome = await world.projects.retry(project.id, tenant_id=world.tenant_id)

    assert outcome is not None
    assert (outcome.resubmit, outcome.rewatch) == ([], [])
    after = await world.project(project.id)
    assert (after.status, after.clips[0].status) == (ProjectStatus.COMPLETED, ClipStatus.SUCCESS)
    assert after.clips[0].video_url == attempt.video_url
    assert after.cost.usd == pytest.approx(attempt.cost)
    assert after.cost.known == 1
    assert await ledger(world) == pytest.approx(billed)
    # A duplicate of the task's end (a webhook, a redelivered check) settles nothing again.
    video = TaskSucceeded(video_url=attempt.video_url or "", cost=attempt.cost)
    await world.projects.record(project.id, 0, task_uuid, video)
    assert await ledger(world) == pytest.approx(billed)


async def test_a_cancel_during_the_follow_leaves_the_timed_out_clip_and_its_follow_alone(
    world: World, settings: Settings
) -> None:
    project = await charged_project(world, FINISHES_LATE, "a second scene [sim:hang]")
    task_uuid = project.clips[0].task_uuid
    events = await world.events()
    async with world.consuming(CHECK_CLIP, CheckClip, check_handler(world, settings)):
        # Only the first clip's chain runs: the second stays processing (its lease holds).
        await send_check(world.publisher, await world.check_of(project), delay_s=0, now=utcnow())
        await until_timed_out(world, project)
        assert (await world.project(project.id)).status is ProjectStatus.GENERATING

        cancelled = await world.projects.cancel(project.id, tenant_id=world.tenant_id)

        assert cancelled is not None
        await world.publisher.publish_events(cancelled.events)  # as the api does
        assert cancelled.clips_changed == 1  # the processing one: a failed clip is not open
        after = await world.project(project.id)
        assert [clip.status for clip in after.clips] == [ClipStatus.FAILED, ClipStatus.CANCELLED]
        assert after.status is ProjectStatus.CANCELLED
        # Both tasks may still be billed: each holds its reservation in its attempt.
        assert await ledger(world) == pytest.approx((2, 2 * ESTIMATE_USD))
        attempt = await until_followed_to(world, project, ClipStatus.SUCCESS)

    truth = await world.sim.task(task_uuid)
    after = await world.project(project.id)
    assert (after.status, after.clips[0].status) == (ProjectStatus.CANCELLED, ClipStatus.FAILED)
    assert attempt.cost == truth["cost"]
    assert after.cost.usd == pytest.approx(truth["cost"])
    assert await ledger(world) == pytest.approx((1, ESTIMATE_USD + truth["cost"]))
    seen = await world.settle_events(events)
    assert len([e for e in seen if isinstance(e, ProjectFinished)]) == 1
    seqs = [e.seq for e in seen]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


async def test_a_clip_the_reconciler_times_out_is_followed_late_by_a_chain_it_re_arms(
    world: World, settings: Settings
) -> None:
    # The clip's chain is lost (no CheckClip at all): the reconciler finds it past the ceiling.
    project = await charged_project(world, FINISHES_LATE)
    task_uuid = project.clips[0].task_uuid

    async def past_ceiling_and_lease() -> bool:
        clip = (await world.project(project.id)).clips[0]
        assert clip.lease is not None
        assert clip.submitted_at is not None
        now = utcnow() - timedelta(seconds=GRACE_S)
        return clip.lease.until < now and clip.submitted_at + timedelta(seconds=MAX_AGE_S) < now

    await eventually(past_ceiling_and_lease, "the clip's lease and ceiling passed", timeout_s=5)
    assert await reconciler(world, settings).run_once() == 1
    followed = await own_attempt(world, project)
    assert followed is not None
    assert followed.follow_until is not None
    assert followed.lease is not None
    assert followed.lease.until <= utcnow()  # no chain yet: the attempts pass starts one
    assert world.publisher.sent_to(CHECK_CLIP) == []
    attempts = reconciler(world, settings, kind=AttemptsReconciler)

    async def rearmed() -> bool:
        await attempts.run_once()
        return bool(world.publisher.sent_to(CHECK_CLIP))

    await eventually(rearmed, "the late follow's chain re-armed", timeout_s=5)
    (late,) = world.publisher.sent_to(CHECK_CLIP)
    assert (late.task_uuid, late.follow_until) == (task_uuid, followed.follow_until)
    async with world.consuming(CHECK_CLIP, CheckClip, check_handler(world, settings)):
        attempt = await until_followed_to(world, project, ClipStatus.SUCCESS)

    truth = await world.sim.task(task_uuid)
    assert attempt.cost == truth["cost"]
    assert await ledger(world) == pytest.approx((0, truth["cost"]))


async def test_a_redelivered_ceiling_does_not_end_the_late_follow(
    world: World, settings: Settings
) -> None:
    project = await charged_project(world, "a fox [sim:hang]")
    decided = await world.check_of(project, age_s=MAX_AGE_S + 1)
    handler = check_handler(world, settings)
    await handler(decided)
    followed = await own_attempt(world, project)
    assert followed is not None
    assert followed.follow_until is not None

    # The check that decided the ceiling, handled again (a crash before its ack); a forked
    # copy of the clip's chain; the reconciler's pass beside it: the clip's ceiling again.
    await handler(decided)

    again = await own_attempt(world, project)
    assert again == followed
    assert await ledger(world) == pytest.approx((1, ESTIMATE_USD))
    late = [check for check in world.publisher.sent_to(CHECK_CLIP) if check.follow_until]
    assert len(late) == 1  # one late follow, one chain


async def test_a_late_follow_whose_first_check_is_not_sent_expires_its_lease_at_once(
    world: World, settings: Settings, mongo_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ceiling is recorded and its task's follow leased in the attempt, but the follow's
    first check is not confirmed: its lease there expires at once (the attempts reconciler
    re-arms it after its grace, not a whole lease later) and the check is tried again."""
    project = await charged_project(world, "a fox [sim:hang]")
    decided = await world.check_of(project, age_s=MAX_AGE_S + 1)
    refuse_checks(world, monkeypatch, PublishError("the check was not confirmed"))

    with pytest.raises(PublishError, match="the check was not confirmed"):
        await check_handler(world, settings)(decided)

    followed = await own_attempt(world, project)
    assert followed is not None
    assert followed.follow_until is not None
    assert followed.lease is not None
    assert followed.lease.token == decided.token  # the follow's, expired, not taken over
    assert followed.lease.until <= utcnow()
    doc = await mongo_db["projects"].find_one({"_id": project.id})
    assert as_utc(doc["attempts_due_at"]) <= followed.lease.until
