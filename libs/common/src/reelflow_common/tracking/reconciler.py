"""The reconciler: the safety net under every chain. Any number of replicas, no leader.

It runs in every poller (:meth:`Reconciler.run_once`) and, for one project on an
operator's word, in ``reelflow-admin reconcile`` (:meth:`Reconciler.reconcile_now`).

Every ``reconcile_interval_s`` it looks for generating projects whose ``due_at``
(a lower bound of their open clips' lease expiries) is more than
``reconcile_grace_s`` in the past. It claims each with a conditional update on
the ``due_at`` it read, so exactly one replica works on a project at a time, and
the claim itself lasts one lease (a reconciler that dies mid-way is replaced by
the next one after that). For every open clip whose lease ran out by the grace
it asks Runware, then:

- records the end Runware reports (or the ceiling, ``timedOut``);
- re-arms exactly one chain under a fresh token: a ``CheckClip`` for a task
  Runware holds (moving a queued clip to ``processing`` first), a ``SubmitClip``
  for a queued clip Runware does not know or cannot answer about;
- finishes a project none of whose clips is pending (a crash before its finisher);

and finally sets ``due_at`` to the earliest open lease. A lost, dead-lettered or
forked chain, or a crashed service, so ends in Runware's truth within
``lease_s + reconcile_grace_s + reconcile_interval_s``.

The tasks an earlier task's video replaced are followed the same way, whatever the
project's status (it has often finished): their chains hold leases in the clips'
``attempts``, and ``attempts_due_at`` (index ``attempts_due``, set only on that rare
path) says when one may have run out. A pass claims it like ``due_at``, records the
end Runware reports (in ``attempts``: billed, or the reservation released) or re-arms
a ``CheckClip`` under a fresh token, then sets it to the earliest open attempt's lease,
or removes it once none is open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from reelflow_common import leases
from reelflow_common.broker import Publisher
from reelflow_common.clock import Clock
from reelflow_common.commands import check_command, submit_command
from reelflow_common.domain import ClipStatus, ProjectStatus
from reelflow_common.errors import TransientError
from reelflow_common.logging import bound_context, get_logger
from reelflow_common.messages import CheckClip, Message
from reelflow_common.metrics import CLIPS_RECONCILED_TOTAL, PROJECTS_PAST_LEASE
from reelflow_common.polling import PollPlanner
from reelflow_common.polling.delivery import send_check
from reelflow_common.runware import RunwareClient, RunwareError, TaskState, is_task_not_found
from reelflow_common.store import (
    ClipState,
    Lease,
    Project,
    ProjectStore,
    TaskSucceeded,
    new_token,
)
from reelflow_common.topology import CHECK_CLIP, SUBMIT_CLIP
from reelflow_common.tracking.policy import (
    Keep,
    Policy,
    Record,
    Watch,
    describe,
    profile_of,
    profile_of_clip,
    seconds_between,
    terminal_result,
)
from reelflow_common.tracking.recorder import ClipRecorder

log = get_logger(__name__)


class Action(StrEnum):
    """What a pass did with one open clip."""

    #: Runware's end of the task (or the ceiling, ``timedOut``) recorded
    RECORDED = "recorded"
    #: a queued clip Runware has: now processing, followed by a new check chain
    TAKEN_OVER = "taken over"
    CHECK_REARMED = "check re-armed"
    SUBMIT_REARMED = "submit re-armed"
    #: a queued clip Runware has, cancelled (or failed) since the claim: its task still followed
    GIVEN_UP_FOLLOWED = "given-up task followed"
    #: another writer changed the clip since the claim: it is theirs to follow
    MOVED = "moved meanwhile"
    #: the re-armed chain's first command could not be published: due again at once
    NOT_STARTED = "not started"


@dataclass(frozen=True)
class Settled:
    """One open clip after a pass."""

    scene_index: int
    task_uuid: str
    #: what Runware said about the task
    runware: str
    action: Action
    #: the end of the lease its chain holds now; None once over, or when it moved
    lease_until: datetime | None = None


@dataclass(frozen=True)
class Pass:
    """What one pass over one project did."""

    project_id: str
    settled: list[Settled] = field(default_factory=list)
    #: this pass finished a project none of whose clips was pending
    finished: bool = False


class Reconciler:
    """One pass at a time: :meth:`run_once` every ``reconcile_interval_s``."""

    def __init__(
        self,
        projects: ProjectStore,
        runware: RunwareClient,
        publisher: Publisher,
        recorder: ClipRecorder,
        *,
        policy: Policy,
        planner: PollPlanner,
        clock: Clock,
        grace_s: float,
        batch_size: int,
    ) -> None:
        self._projects = projects
        self._runware = runware
        self._publisher = publisher
        self._recorder = recorder
        self._policy = policy
        self._planner = planner
        self._now = clock
        self._grace = timedelta(seconds=grace_s)
        self._batch_size = batch_size
        self._lease = timedelta(seconds=projects.lease_s)

    async def run_once(self) -> int:
        """Reconcile every project due now (up to a batch); how many this replica claimed."""
        due = await self._projects.due(before=self._now() - self._grace, limit=self._batch_size)
        PROJECTS_PAST_LEASE.set(len(due))
        claimed = 0
        for project_id, due_at in due:
            with bound_context(project_id=project_id):
                try:
                    done = await self._reconcile(project_id, due_at, every_open_clip=False)
                except Exception:
                    # One project's trouble (a bug, an outage) must not stall the others.
                    log.exception("reconcile_failed")
                    continue
                claimed += done is not None
        due = await self._projects.attempts_due(
            before=self._now() - self._grace, limit=self._batch_size
        )
        for project_id, due_at in due:
            with bound_context(project_id=project_id):
                try:
                    done = await self._reconcile_attempts(project_id, due_at)
                except Exception:
                    log.exception("reconcile_attempts_failed")
                    continue
                claimed += done is not None
        return claimed

    async def reconcile_now(self, project: Project) -> Pass | None:
        """One pass over ``project`` at once, taking every open clip whatever its lease.

        For an operator (``reelflow-admin reconcile``) who will not wait for leases to
        run out. A chain still running under a clip's old lease is stale from now on
        and stops at its next renewal, as any stale chain does. None when the project
        is not generating or changed since it was read (or another pass holds it).
        """
        if project.status is not ProjectStatus.GENERATING or project.due_at is None:
            return None
        with bound_context(project_id=project.id):
            return await self._reconcile(project.id, project.due_at, every_open_clip=True)

    async def _reconcile(
        self, project_id: str, due_at: datetime, *, every_open_clip: bool
    ) -> Pass | None:
        now = self._now()
        claimed_until = now + self._lease
        project = await self._projects.claim(project_id, due_at=due_at, until=claimed_until)
        if project is None:
            return None  # another replica took it
        expired = [
            clip
            for clip in project.clips
            if not clip.status.is_terminal
            and (every_open_clip or clip.lease is None or clip.lease.until < now - self._grace)
        ]
        leases_after: list[datetime] = [
            clip.lease.until
            for clip in project.clips
            if not clip.status.is_terminal and clip.lease is not None and clip not in expired
        ]
        done = Pass(project_id)
        try:
            with bound_context(correlation_id=project.correlation_id):
                if expired:
                    outcomes = await self._runware.get_responses(clip.task_uuid for clip in expired)
                    for clip in expired:
                        outcome = outcomes[clip.task_uuid]
                        with bound_context(task_uuid=clip.task_uuid):
                            action, until = await self._settle(project, clip, outcome)
                        CLIPS_RECONCILED_TOTAL.labels(action=action.name.lower()).inc()
                        if until is not None:
                            leases_after.append(until)
                        done.settled.append(
                            Settled(
                                clip.scene_index, clip.task_uuid, describe(outcome), action, until
                            )
                        )
                    log.warning("clips_reconciled", clips=len(expired))
                elif project.counts.pending == 0:
                    finished = await self._projects.finish_if_done(project)
                    await self._publisher.publish_events(finished)
                    done = Pass(project_id, finished=bool(finished))
                    log.warning("project_finished_by_reconciler")
        finally:
            # Even after a failure half-way: the clips not settled keep their (expired) leases
            # in this minimum, so the project is due again at once.
            next_due = min(leases_after, default=claimed_until)
            await self._projects.release(project_id, claimed=claimed_until, due_at=next_due)
        return done

    async def _reconcile_attempts(self, project_id: str, due_at: datetime) -> Pass | None:
        """One pass over the project's replaced tasks still followed (leases in ``attempts``)."""
        now = self._now()
        claimed_until = now + self._lease
        project = await self._projects.claim_attempts(
            project_id, due_at=due_at, until=claimed_until
        )
        if project is None:
            return None  # another replica took it
        expired: list[tuple[ClipState, str, Lease]] = []
        leases_after: list[datetime] = []
        for clip in project.clips:
            for task_uuid, attempt in clip.attempts.items():
                if attempt.lease is None:
                    continue
                if attempt.lease.until < now - self._grace:
                    expired.append((clip, task_uuid, attempt.lease))
                else:
                    leases_after.append(attempt.lease.until)
        # Until settled, an expired lease stays in the minimum: due again at once on a failure.
        unsettled = {task_uuid: lease.until for _, task_uuid, lease in expired}
        done = Pass(project_id)
        try:
            with bound_context(correlation_id=project.correlation_id):
                if expired:
                    outcomes = await self._runware.get_responses(task for _, task, _ in expired)
                    for clip, task_uuid, lease in expired:
                        outcome = outcomes[task_uuid]
                        with bound_context(task_uuid=task_uuid):
                            action, until = await self._settle_attempt(
                                project, clip, task_uuid, lease, outcome
                            )
                        if action is not Action.MOVED:
                            # Moved: another writer (a renewal, a late submit, a record) changed
                            # the attempt since the claim, and it may hold a live lease now; its
                            # expired lease as read stays in the minimum, so the next pass
                            # reads where it is (below any lease it may hold now).
                            del unsettled[task_uuid]
                        CLIPS_RECONCILED_TOTAL.labels(action=action.name.lower()).inc()
                        if until is not None:
                            leases_after.append(until)
                        done.settled.append(
                            Settled(clip.scene_index, task_uuid, describe(outcome), action, until)
                        )
                    log.warning("attempts_reconciled", attempts=len(expired))
        finally:
            next_due = min([*leases_after, *unsettled.values()], default=None)
            await self._projects.release_attempts(
                project_id, claimed=claimed_until, due_at=next_due
            )
        return done

    async def _settle_attempt(
        self,
        project: Project,
        clip: ClipState,
        task_uuid: str,
        lease: Lease,
        outcome: TaskState | RunwareError,
    ) -> tuple[Action, datetime | None]:
        """Record the end of a replaced task in its attempt, or re-arm its chain."""
        attempt = clip.attempts[task_uuid]
        now = self._now()
        watched_since = attempt.submitted_at or attempt.queued_at or project.created_at
        # A queued task may have been submitted as late as its chain's lease ran (a retry's
        # task is read before each submit, so never after it was replaced): Runware's
        # visibility grace counts from there, or an answerless submit could be failed and its
        # reservation released while Runware still takes (and bills) the task.
        since = attempt.submitted_at or max(watched_since, lease.until)
        watch = Watch(
            since_submit_s=seconds_between(since, now),
            watched_s=seconds_between(watched_since, now),
        )
        decision = self._policy.decide(outcome, watch)
        if isinstance(decision, Record):
            # Not the clip's task: the repair path records it in the attempt and settles it.
            change = await self._recorder.record(
                project.id, clip.scene_index, task_uuid, decision.result
            )
            return (Action.RECORDED if change.applied else Action.MOVED), None
        running = isinstance(outcome, TaskState) and outcome.status == "processing"
        return await self._rearm_check(
            project,
            clip,
            decision,
            watch,
            running=running,
            replaced=(task_uuid, lease),
            submitted_at=since,
        )

    async def _settle(
        self, project: Project, clip: ClipState, outcome: TaskState | RunwareError
    ) -> tuple[Action, datetime | None]:
        """Record, or re-arm one chain; what was done, and the new lease's end."""
        now = self._now()
        watch = Watch(
            since_submit_s=seconds_between(clip.submitted_at or now, now),
            watched_s=seconds_between(clip.watched_since or project.created_at, now),
        )
        if clip.status is ClipStatus.PROCESSING:
            decision = self._policy.decide(outcome, watch)
            if isinstance(decision, Record):
                change = await self._recorder.record(
                    project.id,
                    clip.scene_index,
                    clip.task_uuid,
                    decision.result,
                    submitted_at=clip.submitted_at,
                )
                if change.applied and isinstance(decision.result, TaskSucceeded):
                    # Finished some time since its submission: when, the lost chain knew.
                    self._planner.observe_completion(
                        profile_of_clip(project, clip.scene_index),
                        elapsed_s=watch.since_submit_s,
                        since_s=0.0,
                    )
                return Action.RECORDED, None
            running = isinstance(outcome, TaskState) and outcome.status == "processing"
            return await self._rearm_check(project, clip, decision, watch, running=running)
        return await self._settle_queued(project, clip, outcome, watch)

    async def _settle_queued(
        self, project: Project, clip: ClipState, outcome: TaskState | RunwareError, watch: Watch
    ) -> tuple[Action, datetime | None]:
        if isinstance(outcome, TaskState):
            result = terminal_result(outcome)
            if result is not None:
                await self._recorder.record(project.id, clip.scene_index, clip.task_uuid, result)
                return Action.RECORDED, None
            if outcome.status != "error":
                return await self._take_over_processing(project, clip)
        if self._policy.past_ceiling(watch):
            error = None if isinstance(outcome, TaskState) else str(outcome)
            await self._recorder.record(
                project.id, clip.scene_index, clip.task_uuid, self._policy.timed_out(watch, error)
            )
            return Action.RECORDED, None
        if isinstance(outcome, RunwareError) and not is_task_not_found(outcome):
            log.warning("clip_resubmitted_unanswered", error=str(outcome))
        # Runware does not know the task (or cannot say): submitting it again is safe, the
        # task UUID makes a second submit of a task Runware has a conflict, never a new task.
        return await self._rearm_submit(project, clip)

    async def _take_over_processing(
        self, project: Project, clip: ClipState
    ) -> tuple[Action, datetime | None]:
        """Runware has the queued task (its submitter died before recording it)."""
        token = new_token()
        change = await self._projects.mark_processing(
            project.id,
            clip.scene_index,
            clip.task_uuid,
            token=clip.lease.token if clip.lease is not None else None,
            new_token=token,
            correlation_id=project.correlation_id,
        )
        await self._publisher.publish_events(change.events)
        if change.given_up:
            return await self._follow_given_up(project, clip, token)
        if not change.applied:
            return Action.MOVED, None  # whoever moved it since the claim follows it
        assert change.at is not None
        assert change.lease_until is not None
        lease = Lease(token=token, until=change.lease_until)
        check = check_command(project, clip.scene_index, lease=lease, submitted_at=change.at)
        delay_s = self._planner.first_check_s(profile_of(check))
        return await self._start(
            project, clip, lease, CHECK_CLIP, check, delay_s, Action.TAKEN_OVER
        )

    async def _follow_given_up(
        self, project: Project, clip: ClipState, token: str
    ) -> tuple[Action, datetime | None]:
        """The queued clip was cancelled (or failed) since the claim, with the very task Runware
        holds and bills: nobody else knows of it. Follow it as the submitter follows such a
        task (``_follow_given_up``): checks on one lease's time, which no write holds (the
        clip has no lease left to renew), its video recorded in the clip's ``attempts``."""
        now = self._now()
        lease = Lease(token=token, until=now + self._lease)
        check = check_command(project, clip.scene_index, lease=lease, submitted_at=now)
        delay_s = self._planner.first_check_s(profile_of(check))
        log.warning("clip_given_up_followed")
        action, _until = await self._start(
            project, clip, lease, CHECK_CLIP, check, delay_s, Action.GIVEN_UP_FOLLOWED
        )
        return action, None  # no lease of the clip's: nothing for due_at

    async def _rearm_check(
        self,
        project: Project,
        clip: ClipState,
        decision: Keep,
        watch: Watch,
        *,
        running: bool,
        replaced: tuple[str, Lease] | None = None,
        submitted_at: datetime | None = None,
    ) -> tuple[Action, datetime | None]:
        """``replaced``: the chain follows that task of ``attempts``, whose lease was read so;
        ``submitted_at``: when its visibility grace starts, if not at the recorded submit."""
        now = self._now()
        lease = Lease(token=new_token(), until=now + self._lease)
        replaced_task = None
        if replaced is None:
            rearmed = await self._projects.rearm(
                project.id, clip, token=lease.token, until=lease.until
            )
        else:
            replaced_task, held = replaced
            rearmed = await self._projects.rearm_attempt(
                project.id,
                clip.scene_index,
                replaced_task,
                held,
                token=lease.token,
                until=lease.until,
            )
        if not rearmed:
            return Action.MOVED, None
        check = check_command(project, clip.scene_index, lease=lease, replaced_task=replaced_task)
        update: dict[str, object] = {"last_error": decision.last_error}
        if submitted_at is not None:
            update["submitted_at"] = submitted_at
        if running:  # the planner learns the finish came after this answer
            update |= {"seen_processing_at": now, "seen_progress": decision.progress}
        check = check.model_copy(update=update)
        delay_s = self._planner.next_check_s(
            profile_of(check), elapsed_s=watch.since_submit_s, progress=decision.progress
        )
        log.warning("clip_check_rearmed")
        return await self._start(
            project, clip, lease, CHECK_CLIP, check, delay_s, Action.CHECK_REARMED
        )

    async def _rearm_submit(
        self, project: Project, clip: ClipState
    ) -> tuple[Action, datetime | None]:
        lease = Lease(token=new_token(), until=self._now() + self._lease)
        if not await self._projects.rearm(project.id, clip, token=lease.token, until=lease.until):
            return Action.MOVED, None
        submit = submit_command(project, clip.scene_index, lease=lease)
        log.warning("clip_submit_rearmed")
        return await self._start(
            project, clip, lease, SUBMIT_CLIP, submit, None, Action.SUBMIT_REARMED
        )

    async def _start(
        self,
        project: Project,
        clip: ClipState,
        lease: Lease,
        work_queue: str,
        command: Message,
        delay_s: float | None,
        action: Action,
    ) -> tuple[Action, datetime]:
        """Publish the first command of the chain that now holds ``lease``; its end."""
        if delay_s is not None:
            delay_s = leases.bounded_step_s(delay_s, self._projects.lease_s)
        try:
            if isinstance(command, CheckClip) and delay_s is not None:
                await send_check(self._publisher, command, delay_s=delay_s, now=self._now())
            else:
                await self._publisher.send(work_queue, command, delay_s=delay_s)
        except TransientError:
            # No chain runs under this lease: due again at once, for the next pass.
            if isinstance(command, CheckClip) and command.task_uuid != clip.task_uuid:
                await self._projects.expire_attempt_lease(
                    project.id, clip.scene_index, command.task_uuid, token=lease.token
                )
            else:
                await self._projects.expire_leases(project.id, {clip.scene_index: lease.token})
            return Action.NOT_STARTED, self._now()
        return action, lease.until
