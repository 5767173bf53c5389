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

- records the end Runware reports (or the ceiling, ``timedOut``: its task then followed on,
  late, by a chain the attempts reconciler starts);
- re-arms exactly one chain under a fresh token: a ``CheckClip`` for a task
  Runware holds (moving a queued clip to ``processing`` first), a ``SubmitClip``
  for a queued clip Runware does not know or cannot answer about;
- finishes a project none of whose clips is pending (a crash before its finisher);

and finally sets ``due_at`` to the earliest open lease. A lost, dead-lettered or
forked chain, or a crashed service, so ends in Runware's truth within
``lease_s + reconcile_grace_s + reconcile_interval_s``.

The tasks an earlier task's video replaced are followed by a pass of their own
(:mod:`reelflow_common.tracking.attempts`), which the poller runs beside this one.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

from reelflow_common.commands import check_command, submit_command
from reelflow_common.domain import ClipStatus, ProjectStatus
from reelflow_common.logging import bound_context, get_logger
from reelflow_common.runware import RunwareError, TaskState, is_task_not_found
from reelflow_common.store import (
    ClipState,
    Lease,
    Project,
    TaskSucceeded,
    new_token,
)
from reelflow_common.topology import CHECK_CLIP, SUBMIT_CLIP
from reelflow_common.tracking.chains import Action, Pass, ReconcilerPass, Settled
from reelflow_common.tracking.metrics import (
    CLIPS_RECONCILED_TOTAL,
    PROJECTS_PAST_LEASE,
    action_label,
)
from reelflow_common.tracking.policy import (
    Keep,
    Record,
    Watch,
    describe,
    profile_of,
    profile_of_clip,
    seconds_between,
    terminal_result,
)

log = get_logger(__name__)


class Reconciler(ReconcilerPass):
    """One pass at a time: :meth:`run_once` every ``reconcile_interval_s``."""

    async def run_once(self) -> int:
        """Reconcile every project due now (up to a batch); how many this replica claimed."""
        due = await self._projects.due(before=self._now() - self._grace, limit=self._batch_size)
        PROJECTS_PAST_LEASE.set(len(due))
        return await self._claim_each(
            due, partial(self._reconcile, every_open_clip=False), failed="reconcile_failed"
        )

    async def reconcile_now(self, project: Project) -> Pass | None:
        """One pass over ``project`` at once, taking every open clip whatever its lease.

        For an operator (``reelflow-admin reconcile``) who will not wait for leases to
        run out. A chain still running under a clip's old lease is stale from now on
        and stops at its next renewal, as any stale chain does. None when the project
        is not generating or changed since it was read (or another pass holds it).
        """
        if project.status is not ProjectStatus.GENERATING or project.due_at is None:
            return None
        with bound_context(project_id=project.id, tenant_id=project.tenant_id):
            return await self._reconcile(project.id, project.due_at, every_open_clip=True)

    async def _reconcile(
        self, project_id: str, due_at: datetime, *, every_open_clip: bool
    ) -> Pass | None:
        now = self._now()
        claimed_until = now + self._lease
        try:
            project = await self._projects.claim(project_id, due_at=due_at, until=claimed_until)
        except Exception:
            release = self._projects.release(project_id, claimed=claimed_until, due_at=due_at)
            await self._give_back_claim(release)
            raise
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
        #: the expired clips not settled yet: a pass that fails half-way leaves them due
        unsettled = {clip.scene_index: clip for clip in expired}
        done = Pass(project_id)
        try:
            with bound_context(correlation_id=project.correlation_id, tenant_id=project.tenant_id):
                if expired:
                    outcomes = await self._runware.get_responses(clip.task_uuid for clip in expired)
                    for clip in expired:
                        outcome = outcomes[clip.task_uuid]
                        with bound_context(task_uuid=clip.task_uuid):
                            action, until = await self._settle(project, clip, outcome)
                        del unsettled[clip.scene_index]
                        CLIPS_RECONCILED_TOTAL.labels(action=action_label(action)).inc()
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
            # Even after a failure half-way: the clips not settled keep the project due, again
            # once the grace is over (``now`` in this minimum), not after a whole lease (the
            # claim's end, or the earliest lease of the other clips); and not at their old
            # leases' ends, which would put a project that keeps failing first in every pass,
            # ahead of every other project due.
            if unsettled:
                leases_after.append(now)
            next_due = min(leases_after, default=claimed_until)
            await self._projects.release(project_id, claimed=claimed_until, due_at=next_due)
        return done

    async def _settle(
        self, project: Project, clip: ClipState, outcome: TaskState | RunwareError
    ) -> tuple[Action, datetime | None]:
        """Record, or re-arm one chain; what was done, and the new lease's end."""
        now = self._now()
        watch = Watch(
            since_submit_s=seconds_between(clip.submitted_at or now, now),
            watched_s=seconds_between(clip.watch_start() or project.created_at, now),
        )
        if clip.status is ClipStatus.PROCESSING:
            decision = self._policy.decide(outcome, watch)
            if isinstance(decision, Record):
                change = await self._record(
                    project.id,
                    clip,
                    clip.task_uuid,
                    decision.result,
                    submitted_at=clip.submitted_at,
                    chain_token=_token_of(clip),
                    late_follow_s=decision.late_follow_s,
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
                await self._record(project.id, clip, clip.task_uuid, result)
                return Action.RECORDED, None
            if outcome.status != "error":
                return await self._take_over_processing(project, clip)
        if self._policy.past_ceiling(watch):
            error = None if isinstance(outcome, TaskState) else str(outcome)
            await self._record(
                project.id,
                clip,
                clip.task_uuid,
                self._policy.timed_out(watch, error),
                chain_token=_token_of(clip),
                late_follow_s=self._policy.late_follow_s,
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
            return await self._follow_given_up(project, clip)
        if not change.applied:
            return Action.MOVED, None  # whoever moved it since the claim follows it
        assert change.at is not None
        assert change.lease_until is not None
        lease = Lease(token=token, until=change.lease_until)
        check = check_command(project, clip.scene_index, lease=lease, submitted_at=change.at)
        delay_s = self._planner.first_check_s(profile_of(check))
        return await self._chains.start(
            project, clip, lease, CHECK_CLIP, check, delay_s, Action.TAKEN_OVER
        )

    async def _follow_given_up(
        self, project: Project, clip: ClipState
    ) -> tuple[Action, datetime | None]:
        """The queued clip was cancelled (or failed) since the claim, with the very task Runware
        holds and bills: follow it as the submitter follows such a task (``_follow_given_up``),
        under a lease in the clip's ``attempts`` (``ProjectStore.follow_given_up``) that the
        attempts pass re-arms should this chain be lost; its video is recorded there."""
        lease = await self._projects.follow_given_up(project.id, clip.scene_index, clip.task_uuid)
        if lease is None:
            return Action.MOVED, None  # another chain follows it, or its end is recorded
        check = check_command(project, clip.scene_index, lease=lease, submitted_at=self._now())
        delay_s = self._planner.first_check_s(profile_of(check))
        log.warning("clip_given_up_followed")
        action, _until = await self._chains.start(
            project,
            clip,
            lease,
            CHECK_CLIP,
            check,
            delay_s,
            Action.GIVEN_UP_FOLLOWED,
        )
        return action, None  # a lease in attempts, not the clip's: nothing for due_at

    async def _rearm_check(
        self, project: Project, clip: ClipState, decision: Keep, watch: Watch, *, running: bool
    ) -> tuple[Action, datetime | None]:
        lease = Lease(token=new_token(), until=self._now() + self._lease)
        if not await self._projects.rearm(project.id, clip, token=lease.token, until=lease.until):
            return Action.MOVED, None
        check, delay_s = self._chains.rearmed_check(
            project, clip.scene_index, lease, decision, watch, running=running
        )
        log.warning("clip_check_rearmed")
        return await self._chains.start(
            project, clip, lease, CHECK_CLIP, check, delay_s, Action.CHECK_REARMED
        )

    async def _rearm_submit(
        self, project: Project, clip: ClipState
    ) -> tuple[Action, datetime | None]:
        now = self._now()
        lease = Lease(token=new_token(), until=now + self._lease)
        if not await self._projects.rearm(project.id, clip, token=lease.token, until=lease.until):
            return Action.MOVED, None
        # The lost chain may have got the task to Runware unseen (Runware could not say, or
        # that chain is not dead after all): the new chain asks before it gives the task up.
        submit = submit_command(project, clip.scene_index, lease=lease).model_copy(
            update={"last_ambiguous_at": now}
        )
        log.warning("clip_submit_rearmed")
        return await self._chains.start(
            project, clip, lease, SUBMIT_CLIP, submit, None, Action.SUBMIT_REARMED
        )


def _token_of(clip: ClipState) -> str | None:
    """The token of the clip's lease as this pass read it: a ceiling it records holds only
    while no chain took the clip since (a renewal keeps the token; a re-arm does not)."""
    return None if clip.lease is None else clip.lease.token
