"""What the reconciler's passes share: how they are built and go through the projects due,
what a pass did, and starting the chain it re-arms.

Used by the pass over open clips (:mod:`reconciler`) and the one over replaced tasks
(:mod:`attempts`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from reelflow_common import leases
from reelflow_common.backoff import Backoff
from reelflow_common.broker import Publisher
from reelflow_common.clock import Clock
from reelflow_common.commands import check_command
from reelflow_common.errors import TransientError
from reelflow_common.logging import bound_context, get_logger
from reelflow_common.messages import CheckClip, SubmitClip
from reelflow_common.polling import PollPlanner
from reelflow_common.polling.delivery import send_check
from reelflow_common.runware import RunwareClient
from reelflow_common.store import Change, ClipState, Lease, Project, ProjectStore, TaskResult
from reelflow_common.tracking.policy import Keep, Policy, Watch, profile_of
from reelflow_common.tracking.recorder import ClipRecorder
from reelflow_common.transient import is_transient

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
    #: a leased attempt of the clip's own task on a clip not given up on (a release before
    #: left it): removed, the clip's own chain follows the task
    STRAY_DROPPED = "stray attempt dropped"
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


class ChainStarter:
    """Builds and publishes the first command of a chain a pass re-armed."""

    def __init__(
        self,
        projects: ProjectStore,
        publisher: Publisher,
        *,
        planner: PollPlanner,
        clock: Clock,
        policy: Policy,
    ) -> None:
        self._projects = projects
        self._publisher = publisher
        self._planner = planner
        self._now = clock
        self._policy = policy

    def rearmed_check(
        self,
        project: Project,
        scene_index: int,
        lease: Lease,
        decision: Keep,
        watch: Watch,
        *,
        running: bool,
        replaced_task: str | None = None,
        submitted_at: datetime | None = None,
    ) -> tuple[CheckClip, float]:
        """The first check of a chain re-armed under ``lease``, and its delay.

        ``replaced_task``: it follows that task of the clip's ``attempts`` (a late follow's:
        its first check at the late ladder's first rung);
        ``submitted_at``: when its visibility grace starts, if not at the recorded submit.
        """
        check = check_command(project, scene_index, lease=lease, replaced_task=replaced_task)
        update: dict[str, object] = {"last_error": decision.last_error}
        if submitted_at is not None:
            update["submitted_at"] = submitted_at
        if running:  # the planner learns the finish came after this answer
            update |= {"seen_processing_at": self._now(), "seen_progress": decision.progress}
        check = check.model_copy(update=update)
        if check.follow_until is not None:
            left_s = (check.follow_until - self._now()).total_seconds()
            return check, self._policy.late_check_s(0, left_s=left_s)
        delay_s = self._planner.next_check_s(
            profile_of(check), elapsed_s=watch.since_submit_s, progress=decision.progress
        )
        return check, delay_s

    async def start(
        self,
        project: Project,
        clip: ClipState,
        lease: Lease,
        work_queue: str,
        command: SubmitClip | CheckClip,
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
        except TransientError as exc:
            # No chain runs under this lease: due again at once, for the next pass. It is
            # the clip's, or the attempt's of the command's task: a check's of a replaced
            # task, or a submit's a cancel moved there meanwhile (as the api expires both).
            log.warning("chain_not_started", scene_index=clip.scene_index, error=str(exc))
            await self._projects.expire_leases(
                project.id,
                {clip.scene_index: lease.token},
                tasks={clip.scene_index: command.task_uuid},
            )
            return Action.NOT_STARTED, self._now()
        return action, lease.until


#: recording an end a pass decided again while an outage lasts (about 15 s in all)
RECORD_TRIES = 5
RECORD_BACKOFF = Backoff(first_s=0.5, cap_s=8.0, jitter=0.2)


class ReconcilerPass:
    """What a pass is built from, and its round over the projects due (one at a time)."""

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
        self._chains = ChainStarter(
            projects, publisher, planner=planner, clock=clock, policy=policy
        )

    async def _record(
        self,
        project_id: str,
        clip: ClipState,
        task_uuid: str,
        result: TaskResult,
        *,
        submitted_at: datetime | None = None,
        chain_token: str | None = None,
        late_follow_s: float = 0.0,
    ) -> Change:
        """Record an end this pass decided of ``task_uuid`` (the task of ``clip`` as the pass
        read it, or of one of its ``attempts``) (``ClipRecorder.record``), again while an
        outage lasts (``RECORD_TRIES``). ``late_follow_s``: our ceiling on the clip, whose
        task is then followed on, late (the attempts reconciler starts that chain: the
        follow's lease has run out).

        No message stands behind it: should the clip's write land and the ledger's
        settlement after it fail, no redelivery would repeat it, and the clip, terminal
        from then on, is no later pass's. A second record of the same end is the repair
        path, which settles what the project does not record as settled. For a crash
        between the two writes, or an outage past these tries, the write that records the
        end marks its settlement owed where the task holds a charge as read (``unattended``),
        and the settle sweep makes it (:mod:`reelflow_common.tracking.settlesweep`;
        ARCHITECTURE.md, "Money").
        """
        for tried in range(RECORD_TRIES):
            try:
                return await self._recorder.record(
                    project_id,
                    clip.scene_index,
                    task_uuid,
                    result,
                    submitted_at=submitted_at,
                    chain_token=chain_token,
                    unattended=clip,
                    late_follow_s=late_follow_s,
                )
            except Exception as exc:
                if not is_transient(exc) or tried == RECORD_TRIES - 1:
                    raise
                log.warning("reconciled_end_not_recorded", tried=tried + 1, error=repr(exc))
                await asyncio.sleep(RECORD_BACKOFF.delay_s(tried))
        raise AssertionError("unreachable")  # the last try returned or raised

    async def _give_back_claim(self, release: Awaitable[None]) -> None:
        """Undo a claim whose answer was lost (an outage, a closed connection): it may have
        landed, and the project would then wait out a whole lease (``lease_s``) before any
        pass looked at its clips again. ``release`` is guarded on the claim's own mark: a
        claim that never landed is left as it was. A failure here leaves it to that lease."""
        try:
            await release
        except Exception as exc:
            log.warning("claim_not_given_back", error=repr(exc))

    async def _claim_each(
        self,
        due: list[tuple[str, datetime]],
        reconcile: Callable[[str, datetime], Awaitable[Pass | None]],
        *,
        failed: str,
    ) -> int:
        """``reconcile`` each (project id, due mark); how many this replica claimed."""
        claimed = 0
        for project_id, due_at in due:
            with bound_context(project_id=project_id):
                try:
                    done = await reconcile(project_id, due_at)
                except Exception:
                    # One project's trouble (a bug, an outage) must not stall the others.
                    log.exception(failed)
                    continue
                claimed += done is not None
        return claimed
