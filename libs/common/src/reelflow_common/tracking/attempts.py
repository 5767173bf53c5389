"""The reconciler's pass over replaced tasks: the safety net under their chains.

A task R that an earlier task's video replaced keeps its chain and its lease in
``attempts.R`` (and its reservation) until its end is recorded, whatever the
project's status (the take has usually finished it). So does a task Runware may bill
after its clip was given up on: a cancelled processing clip's own task (the cancel
moves the clip's lease to ``attempts.T``), one Runware took after the cancel
(``ProjectStore.follow_given_up``), or one our ceiling failed its clip on, followed late
up to its ``follow_until`` (``ProjectStore.time_out``). ``attempts_due_at`` (index
``attempts_due``, set only on those rare paths) is at most the end of any lease an attempt
holds. Every ``reconcile_interval_s`` each poller claims the projects whose
``attempts_due_at`` is more than ``reconcile_grace_s`` in the past, as the pass over open
clips (:mod:`reelflow_common.tracking.reconciler`) claims ``due_at``; records the end
Runware reports (in ``attempts``: billed, or the reservation released) or re-arms a
``CheckClip`` under a fresh token (a late follow's, up to its ``follow_until``); then sets
``attempts_due_at`` to the earliest open attempt's lease, or removes it once every attempt
whose lease ran out was recorded or re-armed by this pass.
"""

from __future__ import annotations

from datetime import datetime

from reelflow_common.logging import bound_context, get_logger
from reelflow_common.runware import RunwareError, TaskState
from reelflow_common.store import ClipState, Lease, Project, new_token
from reelflow_common.topology import CHECK_CLIP
from reelflow_common.tracking.chains import Action, Pass, ReconcilerPass, Settled
from reelflow_common.tracking.metrics import CLIPS_RECONCILED_TOTAL, action_label
from reelflow_common.tracking.policy import Keep, Record, Watch, describe, seconds_between

log = get_logger(__name__)


class AttemptsReconciler(ReconcilerPass):
    """One pass at a time: :meth:`run_once` every ``reconcile_interval_s``."""

    async def run_once(self) -> int:
        """Reconcile the replaced tasks of every project due now (up to a batch); how many
        projects this replica claimed."""
        due = await self._projects.attempts_due(
            before=self._now() - self._grace, limit=self._batch_size
        )
        return await self._claim_each(due, self._reconcile, failed="reconcile_attempts_failed")

    async def _reconcile(self, project_id: str, due_at: datetime) -> Pass | None:
        """One pass over the project's replaced tasks still followed (leases in ``attempts``)."""
        now = self._now()
        claimed_until = now + self._lease
        try:
            project = await self._projects.claim_attempts(
                project_id, due_at=due_at, until=claimed_until
            )
        except Exception:
            release = self._projects.release_attempts(
                project_id, claimed=claimed_until, due_at=due_at
            )
            await self._give_back_claim(release)
            raise
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
        # Until settled, an expired attempt keeps the project due: again after the grace (at
        # ``now``, not at its old lease's end, which would put the project first in every
        # pass while it keeps failing, ahead of every other project due).
        unsettled = {task_uuid for _, task_uuid, _ in expired}
        done = Pass(project_id)
        try:
            with bound_context(correlation_id=project.correlation_id, tenant_id=project.tenant_id):
                if expired:
                    outcomes = await self._runware.get_responses(task for _, task, _ in expired)
                    for clip, task_uuid, lease in expired:
                        outcome = outcomes[task_uuid]
                        with bound_context(task_uuid=task_uuid):
                            action, until = await self._settle(
                                project, clip, task_uuid, lease, outcome
                            )
                        if action is not Action.MOVED:
                            # Moved: another writer (a renewal, a late submit, a record) changed
                            # the attempt since the claim, and it may hold a live lease now; its
                            # expired lease as read stays in the minimum, so the next pass
                            # reads where it is (below any lease it may hold now).
                            unsettled.discard(task_uuid)
                        CLIPS_RECONCILED_TOTAL.labels(action=action_label(action)).inc()
                        if until is not None:
                            leases_after.append(until)
                        done.settled.append(
                            Settled(clip.scene_index, task_uuid, describe(outcome), action, until)
                        )
                    log.warning("attempts_reconciled", attempts=len(expired))
        finally:
            next_due = min([*leases_after, *([now] if unsettled else [])], default=None)
            await self._projects.release_attempts(
                project_id, claimed=claimed_until, due_at=next_due
            )
        return done

    async def _settle(
        self,
        project: Project,
        clip: ClipState,
        task_uuid: str,
        lease: Lease,
        outcome: TaskState | RunwareError,
    ) -> tuple[Action, datetime | None]:
        """Record the end of a replaced task in its attempt, or re-arm its chain."""
        if clip.stray_attempt(task_uuid):
            # A stray: the clip stands for the task itself (ARCHITECTURE.md, "Upgrades").
            dropped = await self._projects.drop_stray_attempt(project.id, clip, task_uuid)
            log.warning("stray_attempt_dropped", dropped=dropped)
            return (Action.STRAY_DROPPED if dropped else Action.MOVED), None
        attempt = clip.attempts[task_uuid]
        now = self._now()
        # The ceiling counts from the task's watch (copied from the clip as it left the task),
        # not from this re-arm: a chain re-armed again and again still ends at the ceiling.
        watched_since = attempt.watch_start() or project.created_at
        # A queued task may have been submitted as late as its chain's lease ran (a retry's
        # task is read before each submit, so never after it was replaced): Runware's
        # visibility grace counts from there, or an answerless submit could be failed and its
        # reservation released while Runware still takes (and bills) the task. A queued task
        # with a submit recorded (a cancelled queued clip's, found at Runware by a chain that
        # did not hold its lease: ``held_task_submitted``) counts from that submit.
        since = attempt.submitted_at or max(watched_since, lease.until)
        late = attempt.follow_until
        watch = Watch(
            since_submit_s=seconds_between(since, now),
            watched_s=seconds_between(watched_since, now),
            # A late follow (its clip timed out) ends at its own end, not at the ceiling.
            ceiling_s=None if late is None else seconds_between(watched_since, late),
        )
        decision = self._policy.decide(outcome, watch)
        if isinstance(decision, Record):
            # Not the clip's task (or its clip ended): the repair path records it in the
            # attempt and settles it; an attempt's ceiling is its last word (no late follow).
            change = await self._record(
                project.id, clip, task_uuid, decision.result, chain_token=lease.token
            )
            return (Action.RECORDED if change.applied else Action.MOVED), None
        return await self._rearm(project, clip, task_uuid, lease, decision, watch, since, outcome)

    async def _rearm(
        self,
        project: Project,
        clip: ClipState,
        task_uuid: str,
        held: Lease,
        decision: Keep,
        watch: Watch,
        since: datetime,
        outcome: TaskState | RunwareError,
    ) -> tuple[Action, datetime | None]:
        """A new chain for the task, guarded on its lease as read (``held``)."""
        lease = Lease(token=new_token(), until=self._now() + self._lease)
        rearmed = await self._projects.rearm_attempt(
            project.id, clip.scene_index, task_uuid, held, token=lease.token, until=lease.until
        )
        if not rearmed:
            return Action.MOVED, None
        running = isinstance(outcome, TaskState) and outcome.status == "processing"
        check, delay_s = self._chains.rearmed_check(
            project,
            clip.scene_index,
            lease,
            decision,
            watch,
            running=running,
            replaced_task=task_uuid,
            submitted_at=since,
        )
        log.warning("clip_check_rearmed")
        return await self._chains.start(
            project, clip, lease, CHECK_CLIP, check, delay_s, Action.CHECK_REARMED
        )
