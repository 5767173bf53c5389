"""``CheckClip`` (a due poll) and ``CheckHintedTasks`` (a webhook): Runware's answer, recorded.

Checks made together come as one ``CheckClips``: each is handled as if it had come
alone, side by side, at most ``concurrency`` checks at once in all. When some fail,
only those go again (``PartlyHandled``): those that met an outage retried, those
that met a bug counted, each part a message of its own; the others have recorded
their end or sent their next check, and making them twice would fork their chains.

A check of a task still processing reads and writes nothing in the database:
the message carries the chain's lease, and only a next check that would come
too close to the lease's end renews it (a renewal that matches nothing means
this chain is stale, and it stops). A terminal answer is recorded whatever the
chain's token: what Runware says is the truth. A webhook only makes the poller
ask Runware now; its body is never recorded.

Every delay comes from the poll planner. The check whose write records a
success tells the planner when the task finished: between the chain's last
check that saw it processing (``seen_processing_at``, with the progress seen
then) and now. A hint whose write records a success tells it too: the
webhook comes as the task ends, so at the recorded completion. Only the write
that applied counts, so a redelivered or duplicated check or hint never counts a
completion twice.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from reelflow_common import leases
from reelflow_common.accounting import CostBook
from reelflow_common.broker import Publisher
from reelflow_common.broker.consume import PartlyHandled
from reelflow_common.clock import Clock
from reelflow_common.errors import TransientError
from reelflow_common.logging import bound_context, get_logger
from reelflow_common.messages import (
    CheckClip,
    CheckClips,
    CheckHintedTasks,
    ClipUpdated,
    Event,
    Message,
)
from reelflow_common.polling import PollPlanner
from reelflow_common.polling.delivery import CheckBundles, not_yet_due_s, send_check
from reelflow_common.runware import RunwareClient, RunwareError, TaskChecker, TaskState
from reelflow_common.store import ClipWithRequest, TaskSucceeded
from reelflow_common.tracking.policy import (
    Keep,
    Policy,
    Record,
    Watch,
    describe,
    profile_of,
    profile_of_request,
    progress_to_store,
    seconds_between,
    terminal_result,
)
from reelflow_common.tracking.recorder import ClipRecorder
from reelflow_common.transient import is_transient
from reelflow_poller.late import LateChecks

log = get_logger(__name__)


class CheckHandler:
    """Asks Runware where a task stands; records its end or schedules the next check."""

    def __init__(
        self,
        recorder: ClipRecorder,
        runware: TaskChecker,
        publisher: Publisher,
        *,
        policy: Policy,
        planner: PollPlanner,
        clock: Clock,
        lease_s: float,
        progress_step: int = 0,
        costs: CostBook | None = None,
        concurrency: int = 32,
        bundles: CheckBundles | None = None,
    ) -> None:
        self._recorder = recorder
        self._costs = costs
        self._runware = runware
        self._publisher = publisher
        self._policy = policy
        self._planner = planner
        self._now = clock
        self._lease_s = lease_s
        self._progress_step = progress_step
        #: checks made at once, alone or in ``CheckClips``
        self._slots = asyncio.Semaphore(concurrency)
        #: the next checks, sent together when they come together (None: one message each)
        self._bundles = bundles
        #: a late follow's start and next checks (``late.py``)
        self._late = LateChecks(recorder.projects, policy, lease_s=lease_s, send=self._send)

    async def __call__(self, message: CheckClip | CheckClips) -> None:
        if isinstance(message, CheckClip):
            await self._check(message)
            return
        outcomes = await asyncio.gather(
            *(self._check_of_several(check) for check in message.checks), return_exceptions=True
        )
        failed = [
            (check, outcome)
            for check, outcome in zip(message.checks, outcomes, strict=True)
            if isinstance(outcome, BaseException)
        ]
        if not failed:
            return
        for _, error in failed:
            if not isinstance(error, Exception):
                raise error  # cancelled: the message goes back whole when its channel closes
        # The checks that met an outage are retried, those that met a bug counted (and
        # dead-lettered at the last), each part on its own; the checks made are done.
        parts: list[tuple[Exception, Message]] = []
        for transient in (False, True):
            same = [(c, e) for c, e in failed if is_transient(e) is transient]
            if same:
                cause = same[0][1]
                assert isinstance(cause, Exception)
                part = CheckClips.model_validate(
                    message.model_dump() | {"checks": [c.model_dump() for c, _ in same]}
                )
                parts.append((cause, part))
        if len(parts) == 1 and len(failed) == len(message.checks):
            raise parts[0][0]  # the whole message failed, as one
        raise PartlyHandled(parts)

    async def _check_of_several(self, message: CheckClip) -> None:
        with bound_context(
            correlation_id=message.correlation_id,
            project_id=message.project_id,
            task_uuid=message.task_uuid,
        ):
            try:
                await self._check(message)
            except Exception as exc:
                # Its own error object (CheckBundles gives each caller one), so the note is
                # about this check alone.
                exc.add_note(f"in the check of task {message.task_uuid}")
                raise

    async def _send(self, check: CheckClip, *, delay_s: float, now: datetime) -> None:
        if self._bundles is None:
            await send_check(self._publisher, check, delay_s=delay_s, now=now)
        else:
            await self._bundles.send(check, delay_s=delay_s, now=now)

    async def _check(self, message: CheckClip) -> None:
        async with self._slots:
            await self._make(message)

    async def _make(self, message: CheckClip) -> None:
        arrived = self._now()
        wait_s = not_yet_due_s(self._publisher, message, arrived)
        if wait_s is not None:
            # Its wait queue's TTL fell short of the planned delay: on for the rest,
            # counted from the same reading of the clock (its due time does not move).
            await self._send(message, delay_s=wait_s, now=arrived)
            return
        outcome: TaskState | RunwareError
        try:
            outcome = await self._runware.get_response(message.task_uuid)
        except RunwareError as error:
            log.warning("clip_check_failed", error=str(error), retryable=error.retryable)
            outcome = error
        now = self._now()
        late = message.follow_until
        watch = Watch(
            since_submit_s=seconds_between(message.submitted_at, now),
            watched_s=seconds_between(message.watched_since, now),
            last_error=message.last_error,
            ceiling_s=None if late is None else seconds_between(message.watched_since, late),
        )
        decision = self._policy.decide(outcome, watch)
        if isinstance(decision, Record):
            change = await self._recorder.record(
                message.project_id,
                message.scene_index,
                message.task_uuid,
                decision.result,
                submitted_at=message.submitted_at,
                correlation_id=message.correlation_id,
                chain_token=message.token,
                # With webhooks the hint has mostly recorded the end already: trying the
                # finish first would only cost this duplicate one more round trip. A late
                # follow's clip has ended.
                only_clip=message.scene_count == 1 and not message.webhooks and late is None,
                late_follow_s=decision.late_follow_s,
                chain_goes_on=True,
            )
            if change.follow is not None and change.follow.lease.token == message.token:
                await self._late.start(message, change.follow, now)
            if change.applied and isinstance(decision.result, TaskSucceeded):
                if late is None:  # a task hours past its ceiling teaches the planner nothing
                    self._observe(message, watch)
                if self._costs is not None:  # what budgets estimate the next clips from
                    self._costs.observe(
                        message.model,
                        message.duration,
                        decision.result.cost,
                        width=message.width,
                        height=message.height,
                    )
            return
        if late is not None:
            await self._late.follow(message, decision, now, late)
            return
        running = isinstance(outcome, TaskState) and outcome.status == "processing"
        if running:
            await self._store_progress(message, decision.progress)
        await self._check_again(message, decision, watch, now, running=running)

    async def _store_progress(self, message: CheckClip, progress: int | None) -> None:
        """Runware's progress on the clip, for the people watching: a write now and then."""
        value = progress_to_store(
            progress, seen_before=message.seen_progress, step=self._progress_step
        )
        if value is None:
            return
        change = await self._recorder.projects.record_progress(
            message.project_id,
            message.scene_index,
            message.task_uuid,
            value,
            submitted_at=message.submitted_at,
            correlation_id=message.correlation_id,
        )
        await self._publisher.publish_events(change.events)

    def _observe(self, message: CheckClip, watch: Watch) -> None:
        """The task finished after this chain last saw it processing (or its submission)."""
        seen = message.seen_processing_at
        since_s = 0.0 if seen is None else seconds_between(message.submitted_at, seen)
        self._planner.observe_completion(
            profile_of(message),
            elapsed_s=watch.since_submit_s,
            since_s=max(0.0, since_s),
            since_progress=message.seen_progress if seen is not None else None,
        )

    async def _check_again(
        self, message: CheckClip, decision: Keep, watch: Watch, now: datetime, *, running: bool
    ) -> None:
        delay_s = self._planner.next_check_s(
            profile_of(message), elapsed_s=watch.since_submit_s, progress=decision.progress
        )
        delay_s = leases.bounded_step_s(delay_s, self._lease_s)
        lease_until = message.lease_until
        next_at = now + timedelta(seconds=delay_s)
        if leases.renewal_due(next_at=next_at, lease_until=lease_until, lease_s=self._lease_s):
            lease_until = leases.renewed_until(now, self._lease_s)
            renewed = await self._recorder.projects.renew_lease(
                message.project_id,
                message.scene_index,
                token=message.token,
                until_was=message.lease_until,
                task_uuid=message.task_uuid,
                until=lease_until,
            )
            if not renewed:
                # Another chain holds the clip now, or a fork of this one renewed first,
                # or the clip ended: this chain stops here.
                log.info("clip_check_chain_stale", check=message.check)
                return
        seen: dict[str, object] = {}
        if running:  # an outage's answer says nothing about where the task stands
            seen = {"seen_processing_at": now, "seen_progress": decision.progress}
        following = message.following(
            check=message.check + 1,
            lease_until=lease_until,
            last_error=decision.last_error,
            **seen,
        )
        await self._send(following, delay_s=delay_s, now=now)
        log.debug("clip_check_scheduled", check=following.check, delay_s=round(delay_s, 3))


class HintHandler:
    """A webhook named tasks: ask Runware about each now and record what it says."""

    def __init__(
        self,
        recorder: ClipRecorder,
        runware: RunwareClient,
        *,
        planner: PollPlanner,
        costs: CostBook | None = None,
    ) -> None:
        self._recorder = recorder
        self._runware = runware
        self._planner = planner
        self._costs = costs

    async def __call__(self, message: CheckHintedTasks) -> None:
        outcomes = await self._runware.get_responses(message.task_uuids)
        unanswered = [
            task_uuid
            for task_uuid, outcome in outcomes.items()
            if isinstance(outcome, RunwareError) and outcome.retryable
        ]
        for task_uuid, outcome in outcomes.items():
            with bound_context(task_uuid=task_uuid):
                result = terminal_result(outcome) if isinstance(outcome, TaskState) else None
                if result is None:
                    # Still running, unknown, or Runware cannot say: the clip's own chain
                    # and the reconciler carry on; nothing from the webhook is believed.
                    log.info("hint_without_result", outcome=describe(outcome))
                    continue
                scene_index = message.scene_index
                if scene_index is None:
                    scene_index = await self._scene_of(message.project_id, task_uuid)
                    if scene_index is None:
                        log.info("hint_for_unknown_task")
                        continue
                # The clip as it is: its submit, which the end's clip.updated shows as a read
                # does (a check's message carries it), and what it asked for, to learn from.
                read = await self._recorder.projects.clip_with_request(
                    message.project_id, scene_index
                )
                if read is None:
                    log.info("hint_for_unknown_task")
                    continue
                own = read.clip.task_uuid == task_uuid
                change = await self._recorder.record(
                    message.project_id,
                    scene_index,
                    task_uuid,
                    result,
                    submitted_at=read.clip.submitted_at if own else None,
                    correlation_id=message.correlation_id,
                )
                if change.applied and isinstance(result, TaskSucceeded):
                    self._observe(read, task_uuid, result.cost, change.events)
        if unanswered:
            # Ask again later (the retry ladder), for a fast result once Runware is back.
            raise TransientError(f"Runware could not say where {len(unanswered)} tasks stand")

    def _observe(
        self, read: ClipWithRequest, task_uuid: str, cost: float | None, events: list[Event]
    ) -> None:
        """Runware posts a webhook as its task ends: the completion counts at the time the
        success was recorded (the clip its ``clip.updated`` shows, a read's ``read`` made
        before for its request), and its cost is what budgets estimate the next clips from,
        as a check's is (with webhooks on, the hint records most successes: the check after
        it finds them recorded)."""
        profile = profile_of_request(read.model, read.request)
        if self._costs is not None:  # an earlier task's late video is billed as well
            self._costs.observe(
                profile.model, profile.duration, cost, width=profile.width, height=profile.height
            )
        for event in events:
            if not isinstance(event, ClipUpdated) or event.clip.task_uuid != task_uuid:
                continue
            clip = event.clip
            if clip.submitted_at is not None and clip.completed_at is not None:
                self._planner.observe_completion(
                    profile, elapsed_s=seconds_between(clip.submitted_at, clip.completed_at)
                )

    async def _scene_of(self, project_id: str, task_uuid: str) -> int | None:
        """The scene a task belongs to (current or earlier attempt): one read, for old URLs."""
        project = await self._recorder.projects.get(project_id)
        if project is None:
            return None
        for clip in project.clips:
            if clip.task_uuid == task_uuid or task_uuid in clip.attempts:
                return clip.scene_index
        return None
