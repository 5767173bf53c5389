"""The hot path: one guarded update per change of a clip by the chains that follow it.

Runware holds the task (``processing``), the task is over (``record``; our ceiling, with
its task's late follow: ``time_out``), its progress, why a queued clip waits, and the end of
a queued task a cancel moved to ``attempts`` that its chain never got to Runware. Each write
is built by :mod:`transitions` (pure) and applied by :mod:`writes`; one whose guard does not
hold goes to the repair path.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial

from reelflow_common.domain import OPEN_CLIP_STATUSES, ClipStatus
from reelflow_common.errors import TransientError
from reelflow_common.mongo import REREAD_ATTEMPTS
from reelflow_common.store.documents import clip_from_document, clip_path
from reelflow_common.store.leases import new_token
from reelflow_common.store.models import ClipState, Lease, TaskFailed, TaskResult
from reelflow_common.store.repair import RepairPath
from reelflow_common.store.results import Change, LateFollow
from reelflow_common.store.timefmt import as_utc
from reelflow_common.store.transitions import clipmoves, follows, markers


class ClipWrites(RepairPath):
    """Changes of a clip on the hot path, each one guarded update (repaired if it fails)."""

    async def mark_processing(
        self,
        project_id: str,
        scene_index: int,
        task_uuid: str,
        *,
        token: str | None,
        correlation_id: str | None = None,
        new_token: str | None = None,
    ) -> Change:
        """Runware holds the queued task: ``processing``, if ``token``'s chain holds the clip."""
        now = self._now()
        lease_until = now + self._lease
        write = clipmoves.to_processing(
            project_id,
            scene_index,
            task_uuid,
            token=token,
            new_token=new_token,
            now=now,
            lease_until=lease_until,
            correlation_id=correlation_id,
            log_size=self._log_size,
        )
        change = await self._transition(
            write, project_id, scene_index, task_uuid, token=token, new_token=new_token
        )
        if not change.applied or change.lease_until is not None:
            return change  # not applied, or a replaced task's: the lease its attempt keeps
        return Change(True, change.events, at=now, lease_until=lease_until)

    async def record(
        self,
        project_id: str,
        scene_index: int,
        task_uuid: str,
        result: TaskResult,
        *,
        correlation_id: str | None = None,
        submitted_at: datetime | None = None,
        token: str | None = None,
        statuses: Sequence[ClipStatus] = OPEN_CLIP_STATUSES,
        only_clip: bool = False,
        submit_word: bool = False,
        unattended: ClipState | None = None,
    ) -> Change:
        """The task is over: record it on its clip (or, for an earlier task, in ``attempts``).

        ``token`` and ``statuses`` narrow the guard (a submit chain fails only a queued
        clip it still holds); without them any chain's result is recorded.
        ``submit_word``: the failure is the submit chain of ``token``'s own word on its task
        (it never got it to Runware, or Runware does not have it past the grace), not
        Runware's nor our ceiling's: should a cancel have moved the queued task to
        ``attempts`` meanwhile, that entry ends only under that chain's lease, with no
        submit recorded there (:func:`follows.never_submitted`).
        ``only_clip``: the caller knows the project has this one clip; its end then
        finishes the project in the same update. Should that update not apply (the clip
        has ended already, or the project has more clips after all), the change is written
        as any other: one more round trip, never a wrong finish.
        ``unattended``: the clip as the caller read it, when no message stands behind the
        caller (a reconciler's pass): nothing would repeat a settlement its writer did not
        make, so the write that records the end marks its settlement owed, for the settle
        sweep, where the task holds a charge as read (:func:`owing.owed`; a write the
        repair path builds, from its own read). Never with ``only_clip``, whose finishing
        write marks nothing (no caller needs both).
        """
        if submit_word and token is None:
            raise ValueError("a submit chain's word names its chain: submit_word needs token")
        if only_clip and unattended is not None:
            raise ValueError("an unattended end is marked owed: only_clip's write marks none")
        record = partial(
            clipmoves.to_terminal,
            project_id,
            scene_index,
            task_uuid,
            result,
            now=self._now(),
            correlation_id=correlation_id,
            log_size=self._log_size,
            submitted_at=submitted_at,
            token=token,
            statuses=statuses,
        )
        if only_clip:
            finished = await self._apply(record(only_clip=True), project_id)
            if finished is not None:
                return Change(True, finished)
        return await self._transition(
            self._owing(record(), unattended),
            project_id,
            scene_index,
            task_uuid,
            result=result,
            token=token if submit_word else None,
            unattended=unattended is not None,
        )

    async def time_out(
        self,
        project_id: str,
        scene_index: int,
        task_uuid: str,
        result: TaskFailed,
        *,
        token: str | None,
        follow_s: float,
        goes_on: bool,
        correlation_id: str | None = None,
        submitted_at: datetime | None = None,
        only_clip: bool = False,
        unattended: ClipState | None = None,
    ) -> Change | None:
        """Our ceiling (``result``: ``timedOut``) fails the open clip of ``task_uuid``, whose task
        Runware never said failed and may still finish (and bill): the task stays followed,
        late, for ``follow_s`` more, in ``attempts.<task_uuid>`` with the clip's charge, in
        flight until that follow's end is recorded (``Change.follow``). One read of the clip,
        then one write guarded on it as read (again on a race).

        ``token``: the chain that decided it (the clip's lease; None: the clip holds none).
        ``goes_on``: that chain follows the task on, under its token and a fresh lease;
        otherwise (a reconciler's pass) the follow's lease has run out at once, and the
        attempts reconciler re-arms it at its next pass. ``only_clip``, ``unattended``: as
        for :meth:`record`. None when the clip does not stand for that task open under that
        chain (a duplicate, a stale chain, an attempt's ceiling): the caller records the
        result as any other (:meth:`record`). :class:`TransientError` when overtaken at
        every read.
        """
        if goes_on and token is None:
            raise ValueError("a chain that goes on holds the clip's lease: goes_on needs token")
        for _ in range(REREAD_ATTEMPTS):
            clip = await self._read_clip(project_id, scene_index)
            if (
                clip is None
                or clip.status not in OPEN_CLIP_STATUSES
                or clip.task_uuid != task_uuid
                or task_uuid in clip.attempts  # a stray an old api's rewatch left: as before
                or (token is not None and (clip.lease is None or clip.lease.token != token))
            ):
                return None
            now = self._now()
            follow = LateFollow(
                lease=Lease(token=token, until=now + self._lease)
                if goes_on and token is not None
                else Lease(token=new_token(), until=now),
                until=now + timedelta(seconds=follow_s),
            )
            followed = clip.model_copy(
                update={"status": ClipStatus.FAILED, "lease": follow.lease}
            ).as_attempt()
            write = partial(
                clipmoves.to_terminal,
                project_id,
                scene_index,
                task_uuid,
                result,
                now=now,
                correlation_id=correlation_id,
                log_size=self._log_size,
                submitted_at=submitted_at,
                token=token,
                follow=followed.model_copy(update={"follow_until": follow.until}),
            )
            for alone in ([True] if only_clip else []) + [False]:
                applied = await self._apply(
                    self._owing(write(only_clip=alone), unattended), project_id
                )
                if applied is not None:
                    return Change(True, applied, follow=follow)
        raise TransientError(
            f"timing out task {task_uuid} of scene {scene_index} of project {project_id}:"
            f" the clip moved at each of {REREAD_ATTEMPTS} reads (concurrent writers)"
        )

    async def never_submitted(
        self,
        project_id: str,
        scene_index: int,
        task_uuid: str,
        error: dict[str, str],
        *,
        token: str,
    ) -> bool:
        """The chain of ``token`` ends the queued task a cancel moved to ``attempts``, which it
        never got to Runware (:func:`follows.never_submitted`): its charge is freed.
        Whether it applied: one write, and the settlement.

        Not applied (ended already, followed, or another chain's): the repair read settles
        what an end recorded there settles and the project does not record (a crash came
        between this chain's write and its settlement), as a duplicate result's repair does;
        it never ends the task itself. Only where the cancel moved the charge: a clip
        cancelled by the release before had its charge freed by that cancel, whose key the
        project may not record (and a chain that waited long in its lane could come after
        the ledger's list forgot it).
        """
        write = follows.never_submitted(
            project_id, scene_index, task_uuid, error, token=token, now=self._now()
        )
        if await self._apply(write, project_id) is not None:
            return True
        doc = await self._majority_reads.find_one(
            {"_id": project_id},
            {"tenant_id": 1, "created_at": 1, clip_path(scene_index): 1, markers.SETTLED: 1},
        )
        raw_clip = None if doc is None else doc.get("clips", {}).get(str(scene_index))
        if doc is not None and raw_clip is not None:
            clip = clip_from_document(raw_clip, scene_index, created_at=as_utc(doc["created_at"]))
            if clip.moved_charge(task_uuid):
                await self._settle_unrecorded(doc, clip, task_uuid)
        return False

    async def record_progress(
        self,
        project_id: str,
        scene_index: int,
        task_uuid: str,
        progress: int,
        *,
        submitted_at: datetime | None = None,
        correlation_id: str | None = None,
    ) -> Change:
        """Store Runware's progress of the processing task if it is ahead; one write, no read.

        Not applied (a lower value, a clip that moved on) is not repaired: progress is a
        hint, and the next one or the clip's end says more.
        """
        write = clipmoves.progress(
            project_id,
            scene_index,
            task_uuid,
            progress,
            submitted_at=submitted_at,
            now=self._now(),
            correlation_id=correlation_id,
            log_size=self._log_size,
        )
        events = await self._apply(write, project_id)
        return Change(events is not None, events or [])

    async def record_waiting(
        self,
        project_id: str,
        scene_index: int,
        task_uuid: str,
        reason: dict[str, str],
        *,
        token: str,
        correlation_id: str | None = None,
    ) -> Change:
        """Store why the queued clip of the chain of ``token`` waits; one write, no read."""
        write = clipmoves.waiting(
            project_id,
            scene_index,
            task_uuid,
            reason,
            token=token,
            now=self._now(),
            correlation_id=correlation_id,
            log_size=self._log_size,
        )
        events = await self._apply(write, project_id)
        return Change(events is not None, events or [])
