"""The api's cancel of a project: every clip not yet terminal cancelled, each with one
guarded write built from the clip as read (read again, a bounded few times, while it moves),
and which of them Runware may bill all the same (:func:`may_be_billed`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reelflow_common.domain import ClipStatus
from reelflow_common.messages import Event
from reelflow_common.mongo import REREAD_ATTEMPTS
from reelflow_common.store.leases import new_token
from reelflow_common.store.models import ClipState, Outcome, Project
from reelflow_common.store.reads import ProjectReads
from reelflow_common.store.transitions import cancellation
from reelflow_common.store.writes import ProjectWrites
from reelflow_common.unread_window import in_unread_window


def may_be_billed(clip: ClipState, *, now: datetime, submit_read_after_s: float) -> bool:
    """Whether Runware may bill the task of this open clip though it is cancelled as read here.

    Processing: Runware has the task; it is followed and billed if it ends with a video.
    Queued: the submitter (``reelflow_submitter.service.reads_before_submit``) may still send
    it without reading the cancel when it is the scene's first task queued within
    ``submit_read_after_s`` of ``now`` (``reelflow_common.unread_window``, the one rule both
    apply; a clip without ``queued_at`` counts as within); an earlier submit may have got it
    to Runware unanswered when the clip is ``waiting`` (an outage met its submit) or its lease
    has run out (its chain was lost, maybe mid-submit: the reconciler's next one asks
    Runware). Any of these is billed only if Runware has (or gets) the task and it ends with
    a video, so this says "may". Not seen here, as no write records them, so this is not an
    upper bound: a submit in flight (it read the clip a moment before the cancel, or a
    submitter stopped mid-submit and its message comes again while the lease still runs),
    and a submit tried again after a retryable error that was not an outage
    (``SubmitClip.last_ambiguous_at`` is in the message only: Runware may have stored the
    task).
    """
    if clip.status is ClipStatus.PROCESSING:
        return True
    if clip.status is not ClipStatus.QUEUED:
        return False
    if clip.waiting is not None or clip.lease is None or clip.lease.until <= now:
        return True
    if any(task_uuid != clip.task_uuid for task_uuid in clip.attempts):
        # A retry's task (the submitter's ``SubmitClip.after_earlier_tasks``, set from the
        # clip's ``attempts`` when queued): every submit of it reads the clip first.
        return False
    if clip.queued_at is None:
        # A clip from before ``queued_at``: its age is unknown here (the submitter's message
        # carries a time of its own), so it is counted: this is a count of what may be billed.
        return True
    return in_unread_window(clip.queued_at, now=now, read_after_s=submit_read_after_s)


@dataclass(frozen=True, slots=True)
class _Cancelled:
    """One clip's cancel: its events, and whether Runware may bill its task all the same."""

    events: list[Event]
    may_be_billed: bool = False


class ProjectCancel(ProjectReads, ProjectWrites):
    """A tenant's cancel of a project."""

    async def cancel(
        self,
        project_id: str,
        *,
        tenant_id: str,
        correlation_id: str | None = None,
        submit_read_after_s: float = 0.0,
    ) -> Outcome | None:
        """Cancel every clip not yet terminal. None when the tenant has no such project.
        ``Outcome.may_be_billed`` names the scenes cancelled here whose task Runware may bill
        all the same (:func:`may_be_billed`, with the submitter's ``submit_read_after_s``)."""
        project = await self.get(project_id, tenant_id=tenant_id)
        if project is None:
            return None
        events: list[Event] = []
        busy: list[int] = []
        billed: list[int] = []
        for clip in project.clips:
            cancelled = await self._cancel_clip(
                project_id, tenant_id, clip, correlation_id, submit_read_after_s
            )
            if cancelled is None:
                busy.append(clip.scene_index)
                continue
            events += cancelled.events
            if cancelled.may_be_billed:
                billed.append(clip.scene_index)
        if not events:
            return Outcome(project=project, events=[], busy=busy)
        return Outcome(
            project=await self._must_get(project_id), events=events, busy=busy, may_be_billed=billed
        )

    async def _cancel_clip(
        self,
        project_id: str,
        tenant_id: str,
        clip: ClipState,
        correlation_id: str | None,
        submit_read_after_s: float,
    ) -> _Cancelled | None:
        """Cancel one clip as read; read again while it moves (submitted, its lease renewed
        or re-armed), a bounded few times: the last try moves its lease as last read. Its
        events ([]: it had ended, or is gone) and whether its task may be billed, as the
        write that applied found it; None when it moved at every try, still open
        (``Outcome.busy``)."""
        for tries in range(REREAD_ATTEMPTS):
            if clip.status.is_terminal:
                return _Cancelled([])  # it ended meanwhile, which is what cancelling wanted
            now = self._now()
            write = cancellation.cancel(
                project_id,
                tenant_id,
                clip,
                now=now,
                correlation_id=correlation_id,
                log_size=self._log_size,
                lease_as_read=tries < REREAD_ATTEMPTS - 1,
                follow_token=new_token(),
            )
            # No message stands behind a cancel: a charge it settles is owed until the settle
            # sweep sees it made (only where the clip holds one as read).
            write = self._owing(write, clip)
            applied = await self._apply(write, project_id)
            if applied is not None:
                billed = may_be_billed(clip, now=now, submit_read_after_s=submit_read_after_s)
                return _Cancelled(applied, may_be_billed=billed and bool(applied))
            found = await self._read_clip(project_id, clip.scene_index, tenant_id=tenant_id)
            if found is None:
                return _Cancelled([])
            clip = found
        return _Cancelled([]) if clip.status.is_terminal else None

    async def _must_get(self, project_id: str) -> Project:
        project = await self.get(project_id)
        assert project is not None  # projects are never deleted
        return project
