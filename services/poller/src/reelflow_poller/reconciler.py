"""The reconciler: the safety net under every chain. Any number of replicas, no leader.

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
"""

from __future__ import annotations

from datetime import datetime, timedelta

from reelflow_common import leases
from reelflow_common.broker import Publisher
from reelflow_common.clock import Clock
from reelflow_common.commands import check_command, submit_command
from reelflow_common.domain import ClipStatus
from reelflow_common.errors import TransientError
from reelflow_common.logging import bound_context, get_logger
from reelflow_common.messages import Message
from reelflow_common.polling import PollPlanner
from reelflow_common.runware import RunwareClient, RunwareError, TaskState, is_task_not_found
from reelflow_common.store import ClipState, Lease, Project, ProjectStore, new_token
from reelflow_common.topology import CHECK_CLIP, SUBMIT_CLIP
from reelflow_poller.handlers import ClipRecorder, profile_of, seconds_between
from reelflow_poller.service import Keep, Policy, Record, Watch, terminal_result

log = get_logger(__name__)


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
        claimed = 0
        for project_id, due_at in due:
            with bound_context(project_id=project_id):
                try:
                    claimed += await self._reconcile(project_id, due_at)
                except Exception:
                    # One project's trouble (a bug, an outage) must not stall the others.
                    log.exception("reconcile_failed")
        return claimed

    async def _reconcile(self, project_id: str, due_at: datetime) -> int:
        now = self._now()
        claimed_until = now + self._lease
        project = await self._projects.claim(project_id, due_at=due_at, until=claimed_until)
        if project is None:
            return 0  # another replica took it
        expired = [
            clip
            for clip in project.clips
            if not clip.status.is_terminal
            and (clip.lease is None or clip.lease.until < now - self._grace)
        ]
        leases_after: list[datetime] = [
            clip.lease.until
            for clip in project.clips
            if not clip.status.is_terminal and clip.lease is not None and clip not in expired
        ]
        try:
            if expired:
                outcomes = await self._runware.get_responses(clip.task_uuid for clip in expired)
                for clip in expired:
                    with bound_context(task_uuid=clip.task_uuid):
                        until = await self._settle(project, clip, outcomes[clip.task_uuid])
                    if until is not None:
                        leases_after.append(until)
                log.warning("clips_reconciled", clips=len(expired))
            elif project.counts.pending == 0:
                await self._publisher.publish_events(await self._projects.finish_if_done(project))
                log.warning("project_finished_by_reconciler")
        finally:
            # Even after a failure half-way: the clips not settled keep their (expired) leases
            # in this minimum, so the project is due again at once.
            next_due = min(leases_after, default=claimed_until)
            await self._projects.release(project_id, claimed=claimed_until, due_at=next_due)
        return 1

    async def _settle(
        self, project: Project, clip: ClipState, outcome: TaskState | RunwareError
    ) -> datetime | None:
        """Record, or re-arm one chain; the new lease's end (None once the clip is over)."""
        now = self._now()
        watch = Watch(
            since_submit_s=seconds_between(clip.submitted_at or now, now),
            watched_s=seconds_between(clip.watched_since or project.created_at, now),
        )
        if clip.status is ClipStatus.PROCESSING:
            decision = self._policy.decide(outcome, watch)
            if isinstance(decision, Record):
                await self._recorder.record(
                    project.id,
                    clip.scene_index,
                    clip.task_uuid,
                    decision.result,
                    submitted_at=clip.submitted_at,
                )
                return None
            return await self._rearm_check(project, clip, decision, watch)
        return await self._settle_queued(project, clip, outcome, watch)

    async def _settle_queued(
        self, project: Project, clip: ClipState, outcome: TaskState | RunwareError, watch: Watch
    ) -> datetime | None:
        if isinstance(outcome, TaskState):
            result = terminal_result(outcome)
            if result is not None:
                await self._recorder.record(project.id, clip.scene_index, clip.task_uuid, result)
                return None
            if outcome.status != "error":
                return await self._take_over_processing(project, clip)
        if self._policy.past_ceiling(watch):
            error = None if isinstance(outcome, TaskState) else str(outcome)
            await self._recorder.record(
                project.id, clip.scene_index, clip.task_uuid, self._policy.timed_out(watch, error)
            )
            return None
        if isinstance(outcome, RunwareError) and not is_task_not_found(outcome):
            log.warning("clip_resubmitted_unanswered", error=str(outcome))
        # Runware does not know the task (or cannot say): submitting it again is safe, the
        # task UUID makes a second submit of a task Runware has a conflict, never a new task.
        return await self._rearm_submit(project, clip)

    async def _take_over_processing(self, project: Project, clip: ClipState) -> datetime | None:
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
        if not change.applied:
            return None  # it moved since the claim: whoever moved it follows it
        assert change.at is not None
        assert change.lease_until is not None
        lease = Lease(token=token, until=change.lease_until)
        check = check_command(project, clip.scene_index, lease=lease, submitted_at=change.at)
        delay_s = self._planner.first_check_s(profile_of(check))
        return await self._start(project, clip, lease, CHECK_CLIP, check, delay_s)

    async def _rearm_check(
        self, project: Project, clip: ClipState, decision: Keep, watch: Watch
    ) -> datetime | None:
        lease = Lease(token=new_token(), until=self._now() + self._lease)
        if not await self._projects.rearm(project.id, clip, token=lease.token, until=lease.until):
            return None
        check = check_command(project, clip.scene_index, lease=lease)
        check = check.model_copy(update={"last_error": decision.last_error})
        delay_s = self._planner.next_check_s(
            profile_of(check), elapsed_s=watch.since_submit_s, progress=decision.progress
        )
        log.warning("clip_check_rearmed")
        return await self._start(project, clip, lease, CHECK_CLIP, check, delay_s)

    async def _rearm_submit(self, project: Project, clip: ClipState) -> datetime | None:
        lease = Lease(token=new_token(), until=self._now() + self._lease)
        if not await self._projects.rearm(project.id, clip, token=lease.token, until=lease.until):
            return None
        submit = submit_command(project, clip.scene_index, lease=lease)
        log.warning("clip_submit_rearmed")
        return await self._start(project, clip, lease, SUBMIT_CLIP, submit, None)

    async def _start(
        self,
        project: Project,
        clip: ClipState,
        lease: Lease,
        work_queue: str,
        command: Message,
        delay_s: float | None,
    ) -> datetime:
        """Publish the first command of the chain that now holds ``lease``; its end."""
        if delay_s is not None:
            delay_s = leases.bounded_step_s(delay_s, self._projects.lease_s)
        try:
            await self._publisher.send(work_queue, command, delay_s=delay_s)
        except TransientError:
            # No chain runs under this lease: due again at once, for the next pass.
            await self._projects.expire_leases(project.id, {clip.scene_index: lease.token})
            return self._now()
        return lease.until
