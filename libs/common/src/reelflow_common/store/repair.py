"""The repair path: a write whose guard did not hold (a duplicate or late message).

Never re-applies. It re-publishes what a crash may have left unpublished (the stored
events about the clip), records a result of a task the clip no longer stands for where
it belongs (``attempts``), makes the settlements the task's recorded ends owe and the
project does not record, and finishes a project a crash left unfinished. Its read uses
majority read concern, so "already terminal" is never a write a failover rolls back.
"""

from __future__ import annotations

from reelflow_common.domain import GIVEN_UP_CLIP_STATUSES, ClipStatus
from reelflow_common.errors import TransientError
from reelflow_common.logging import get_logger
from reelflow_common.mongo import REREAD_ATTEMPTS
from reelflow_common.store.documents import LOG_HEAD, clip_from_document, clip_path, log_head
from reelflow_common.store.eventlog import about_scene, materialize
from reelflow_common.store.models import ClipState, TaskFailed, TaskResult
from reelflow_common.store.results import Change
from reelflow_common.store.timefmt import as_utc
from reelflow_common.store.transitions import follows, lateresults, markers
from reelflow_common.store.transitions.write import Write
from reelflow_common.store.writes import ProjectWrites

log = get_logger(__name__)


class RepairPath(ProjectWrites):
    """A clip's change applied, or else repaired (:meth:`_transition`)."""

    async def _transition(
        self,
        write: Write,
        project_id: str,
        scene_index: int,
        task_uuid: str,
        *,
        result: TaskResult | None = None,
        token: str | None = None,
        new_token: str | None = None,
        unattended: bool = False,
    ) -> Change:
        """``token``: of the submit chain whose task Runware took (no ``result``) or whose own
        word ``result`` is (``record(submit_word=True)``), and ``new_token`` of the
        reconciler's chain that takes it over; ``unattended``: no message stands behind the
        caller (:meth:`record`), a write the repair path builds marks what it owes."""
        applied = await self._apply(write, project_id)
        if applied is not None:
            return Change(True, applied)
        return await self._repair(
            project_id,
            scene_index,
            task_uuid,
            result,
            token=token,
            new_token=new_token,
            unattended=unattended,
        )

    async def _repair(
        self,
        project_id: str,
        scene_index: int,
        task_uuid: str,
        result: TaskResult | None,
        *,
        token: str | None = None,
        new_token: str | None = None,
        unattended: bool = False,
    ) -> Change:
        """A duplicate or late message: re-publish what a crash may have left unpublished.

        Never re-applies. A result of a task the clip does not stand for (any more) is
        recorded where it belongs (:func:`lateresults.late_result`): then the change is
        applied. Otherwise what the task's recorded ends settle and the project does not
        record as settled is settled (a crash came between the write and its settlement,
        or between the settlement and its record: the ledger's list makes that one a no-op).
        ``unattended``: a write this repair applies marks its settlement owed, from this
        repair's read of the clip (:meth:`record`). :class:`TransientError` when the clip
        moved between each read and its write (``REREAD_ATTEMPTS``): not "nothing to do",
        so the caller's message is retried later, never dropped.
        """
        for _ in range(REREAD_ATTEMPTS):
            doc = await self._majority_reads.find_one(
                {"_id": project_id},
                LOG_HEAD
                | {"events": 1, "created_at": 1, clip_path(scene_index): 1, markers.SETTLED: 1},
            )
            raw_clip = None if doc is None else doc.get("clips", {}).get(str(scene_index))
            if doc is None or raw_clip is None:
                return Change(False)
            clip = clip_from_document(raw_clip, scene_index, created_at=as_utc(doc["created_at"]))
            if result is None and (
                clip.task_uuid != task_uuid or clip.awaits_submit_word(task_uuid)
            ):
                # A submit Runware took, of a task the clip no longer has, or of its own task
                # a cancel moved to ``attempts`` while it was queued: followed as a task an
                # earlier video replaced is.
                submitted = await self._earlier_submitted(
                    project_id, clip, task_uuid, token, new_token
                )
                if submitted is None:
                    continue  # its attempt moved between the read and the write: read again
                return submitted
            if (
                isinstance(result, TaskFailed)
                and token is not None
                and clip.awaits_submit_word(task_uuid)
            ):
                # A submit chain's own failure of its task (``record(submit_word=True)``),
                # which a cancel moved to ``attempts`` while it was queued: that entry ends
                # only on the word of the chain holding its lease, with no submit recorded
                # there (another chain may have got the task to Runware), as a
                # never-submitted end does. Our ceiling's end is recorded as any other.
                never = follows.never_submitted(
                    project_id,
                    scene_index,
                    task_uuid,
                    {"code": result.code, "message": result.message},
                    token=token,
                    now=self._now(),
                )
                failed = await self._apply(
                    self._owing(never, clip if unattended else None), project_id
                )
                if failed is not None:
                    return Change(True, failed)
            elif result is not None:
                write = lateresults.late_result(
                    project_id,
                    clip,
                    task_uuid,
                    result,
                    now=self._now(),
                    correlation_id=doc.get("correlation_id"),
                    log_size=self._log_size,
                    links=self._links,
                )
                if write is not None:
                    write = self._owing(write, clip if unattended else None)
                    late = await self._apply(write, project_id)
                    if late is None:
                        continue  # the clip moved between the read and the write: read again
                    return Change(True, late)
            head = log_head(project_id, doc)
            events = about_scene(materialize(head, doc["events"]), scene_index)
            if (
                result is not None
                or clip.status not in GIVEN_UP_CLIP_STATUSES
                or clip.moved_charge(task_uuid)
            ):
                # Not a submit's word on a clip given up before charges moved with its task
                # (the release before): that end's settlement is its ender's, whose own
                # redelivery repairs it; this chain may come however late, past the ledger's
                # list, and would free that charge a second time.
                await self._settle_unrecorded(doc, clip, task_uuid)
            if clip.status.is_terminal:
                events += await self._finish_if_done(project_id, doc)
            given_up = result is None and clip.status in GIVEN_UP_CLIP_STATUSES
            return Change(False, events, given_up=given_up)
        raise TransientError(
            f"repairing task {task_uuid} of scene {scene_index} of project {project_id}:"
            f" the clip moved at each of {REREAD_ATTEMPTS} reads (concurrent writers)"
        )

    async def _earlier_submitted(
        self,
        project_id: str,
        clip: ClipState,
        task_uuid: str,
        token: str | None,
        new_token: str | None,
    ) -> Change | None:
        """What the submit of ``task_uuid``, a task the clip no longer has, changes; None when
        its attempt moved between the read and the write (the caller reads again)."""
        held = clip.attempts.get(task_uuid)
        if (
            clip.awaits_submit_word(task_uuid)
            and held is not None
            and held.lease is not None
            and held.lease.token != token
        ):
            return await self._submitted_for_holder(project_id, clip, task_uuid)
        if (
            held is not None
            and held.status is ClipStatus.QUEUED
            and held.lease is not None
            and held.lease.token != token
        ):
            # Another chain's lease (this one is stale: a re-arm replaced it): the holder
            # follows the task, this chain stops. Its guarded write would match at no read.
            return Change(False)
        now = self._now()
        lease_until = now + self._lease
        write = follows.earlier_task_submitted(
            project_id,
            clip,
            task_uuid,
            token=token,
            now=now,
            lease_until=lease_until,
            new_token=new_token,
        )
        if write is None:
            # An attempt that ended (failed, say, before a retry) whose task Runware took
            # all the same: Runware bills it, and no other chain knows of it: follow it.
            attempt = clip.attempts.get(task_uuid)
            return Change(
                False, given_up=attempt is not None and attempt.status in GIVEN_UP_CLIP_STATUSES
            )
        found = await self._projects.update_one(write.filter, write.update)
        if found.matched_count == 0:
            # Ended meanwhile (the attempts reconciler found it nowhere, say) or another
            # chain's: read again, so that an ended attempt is followed as given up.
            return None
        # Applied: the submit chain goes on checking its task, which is no longer the clip's.
        return Change(True, [], at=now, lease_until=lease_until)

    async def _submitted_for_holder(
        self, project_id: str, clip: ClipState, task_uuid: str
    ) -> Change | None:
        """A chain got the queued task a cancel holds for another chain's word to Runware: the
        entry records that submit for its lease holder (:func:`follows.held_task_submitted`),
        who follows the task (that chain, or the attempts reconciler once its lease runs out);
        this chain stops. None when the entry moved between the read and the write."""
        write = follows.held_task_submitted(project_id, clip, task_uuid, now=self._now())
        if write is not None:
            found = await self._projects.update_one(write.filter, write.update)
            if found.matched_count == 0:
                return None
        log.info("clip_submit_left_to_lease_holder", recorded=write is not None)
        return Change(False)
