"""The api's retry of a project: every failed clip followed again (a new task, the same
task watched again, or a late video taken), with the money it holds reserved first and
what no clip holds given back; each clip one guarded write built from the clip as read."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

from pymongo.errors import PyMongoError

from reelflow_common.accounting.ledger import Charge, KeyInProgress
from reelflow_common.accounting.limits import LimitExceeded
from reelflow_common.domain import ClipStatus
from reelflow_common.logging import get_logger
from reelflow_common.messages import Event
from reelflow_common.mongo import REREAD_ATTEMPTS, Document
from reelflow_common.store.documents import LOG_HEAD, clip_from_document, clip_path
from reelflow_common.store.leases import new_token
from reelflow_common.store.models import ClipState, Outcome, Project
from reelflow_common.store.owed import owed_settlements
from reelflow_common.store.reads import ProjectReads
from reelflow_common.store.timefmt import as_utc
from reelflow_common.store.transitions import markers, owing, retries
from reelflow_common.store.transitions.write import Write
from reelflow_common.store.writes import ProjectWrites

log = get_logger(__name__)

#: what a retry did with one failed clip: took its late video, watched its task again, or
#: gave it a new task to submit
#: what a retry did to one clip; ``busy``: nothing, the clip moved at every try (Outcome.busy)
_Retried = Literal["took", "rewatch", "resubmit", "busy"]

#: holds money for the failed clips a retry would follow again: a charge per scene, or raises
Reserve = Callable[[Project, list[ClipState]], Awaitable[dict[int, Charge] | None]]


def _failed(project: Project) -> tuple[list[ClipState], list[ClipState]]:
    """The project's failed clips, and those of them to follow again: a clip with a late video
    takes it (nothing to buy or hold money for)."""
    failed = [clip for clip in project.clips if clip.status is ClipStatus.FAILED]
    return failed, [clip for clip in failed if clip.late_video() is None]


def _to_reserve(project: Project) -> list[ClipState]:
    """The failed clips to follow again that need money held: not a timed-out clip whose task
    is followed late, which holds its reservation there (watched again, it takes that one
    back: ``retries.rewatch``)."""
    return [clip for clip in _failed(project)[1] if not _held(clip)]


def _scenes(clips: list[ClipState]) -> set[int]:
    return {clip.scene_index for clip in clips}


class ProjectRetry(ProjectReads, ProjectWrites):
    """A tenant's retry of a project's failed clips."""

    async def retry(
        self,
        project_id: str,
        *,
        tenant_id: str,
        correlation_id: str | None = None,
        reserve: Reserve | None = None,
    ) -> Outcome | None:
        """Follow every failed clip again: a new task where Runware failed the old one (also
        at the end of its late follow, after our ceiling: :func:`_ended_at_runware`), the same
        task where only our ceiling ran out (``timedOut``) or where Runware runs it after all
        (found there after the clip failed: ``ClipState.runs_at_runware``); a clip with a late
        video takes it (nothing bought). Cancelled clips stay cancelled.

        The caller publishes ``SubmitClip`` for ``Outcome.resubmit`` and ``CheckClip``
        for ``Outcome.rewatch``, from the project returned (read with its requests).
        ``reserve`` holds the failed clips' money on the tenant's ledger first (or raises
        ``LimitExceeded``, or ``KeyInProgress`` while another retry of the project holds the
        room: nothing is retried); what no clip holds is released: what a concurrent retry
        made unneeded, and, when an error interrupts the clips' writes, the charges of the
        clips not written (:meth:`_give_back_unheld`); once every clip is written or has given
        its charge back, the reservation is said to have landed (``LedgerStore.landed``: until
        then a retry refused for room it holds is told it is in progress, 409, even where one
        clip's charge was given back already). A retry refused for room
        reads the project again: clips another retry took are not its to pay for
        (:meth:`_reserve_failed`).
        """
        project = await self.get(project_id, tenant_id=tenant_id, with_requests=reserve is not None)
        if project is None:
            return None
        charges: dict[int, Charge] = {}
        if reserve is not None:
            project, charges = await self._reserve_failed(project, reserve)
        failed, to_follow = _failed(project)
        events: list[Event] = []
        resubmit: list[int] = []
        rewatch: list[int] = []
        busy: list[int] = []
        # Those followed again first: they reopen the project, so one that takes its video
        # after them does not finish it on the way.
        took = False
        untried = dict(charges)  # by scene: the charges no write has carried yet
        out: tuple[int, Charge] | None = None  # the clip being written, and the charge it carries
        try:
            for clip in [*to_follow, *(clip for clip in failed if clip not in to_follow)]:
                charge = untried.pop(clip.scene_index, None)
                out = None if charge is None else (clip.scene_index, charge)
                done, applied = await self._retry_clip(
                    project_id, tenant_id, clip, charge, correlation_id
                )
                out = None
                if charge is not None and done in (None, "took", "busy"):
                    # A concurrent retry got there first (it sends the commands, and
                    # reserved), the clip took a late video that came meanwhile, or it
                    # kept moving and was left as it was. Its entry in ``reserving`` stays
                    # while the other clips are written (``landed`` forgets it).
                    await self.ledgers.give_back(tenant_id, [charge], forget=False)
                events += applied
                if done == "took":
                    took = True
                elif done == "busy":
                    busy.append(clip.scene_index)
                elif done is not None:
                    (rewatch if done == "rewatch" else resubmit).append(clip.scene_index)
        except BaseException:
            try:
                await self._give_back_unheld(project_id, tenant_id, untried.values(), out)
            except Exception as exc:  # the retry's own error is the one to raise
                log.warning("reservation_not_released", project_id=project_id, error=repr(exc))
            raise
        if charges:  # every clip written holding its charge, or given it back
            await self.ledgers.landed(tenant_id, next(iter(charges.values())))
        if took:
            head = await self._projects.find_one({"_id": project_id}, LOG_HEAD)
            assert head is not None  # projects are never deleted
            events += await self._finish_if_done(project_id, head)
        if not events:
            return Outcome(project=project, events=[], busy=busy)
        after = await self.get(project_id, with_requests=True)
        assert after is not None  # projects are never deleted
        return Outcome(project=after, events=events, resubmit=resubmit, rewatch=rewatch, busy=busy)

    async def _reserve_failed(
        self, project: Project, reserve: Reserve
    ) -> tuple[Project, dict[int, Charge]]:
        """The money of the project's failed clips to follow again, held by ``reserve``: a
        charge per scene, and the project as read for them (the clips the retry writes).

        A refusal may be for room that concurrent retries of the same clips hold, each of
        which reserves before it knows whether it wins them (the losers give theirs back):
        so a refused retry reads the project again. No clip to follow any more (another
        retry took them): nothing held, the retry does nothing, as that retry's other losers
        do. Other clips than it was refused for (some taken): ``reserve`` is asked once more,
        for those. The same ones: refused, ``KeyInProgress`` while a retry of the project that
        holds room has not written its clips yet (its answer is this one's), else
        ``LimitExceeded``.
        """
        to_follow = _to_reserve(project)
        if not to_follow:
            return project, {}
        try:
            return project, await reserve(project, to_follow) or {}
        except (LimitExceeded, KeyInProgress):
            again = await self.get(project.id, tenant_id=project.tenant_id, with_requests=True)
            assert again is not None  # projects are never deleted
            still = _to_reserve(again)
            if _scenes(still) == _scenes(to_follow):
                raise
            log.info(
                "retry_reserving_again",
                project_id=project.id,
                refused_clips=len(to_follow),
                clips_now=len(still),
            )
        # Out of the ``except``: a second refusal is raised as itself.
        return again, (await reserve(again, still) or {}) if still else {}

    async def _give_back_unheld(
        self,
        project_id: str,
        tenant_id: str,
        untried: Iterable[Charge],
        out: tuple[int, Charge] | None,
    ) -> None:
        """Give back the charges of an interrupted retry that no clip holds: at once those of
        clips it never wrote; the charge of the clip whose write was out (``out``: its scene)
        only if a read of the clip shows that write did not land. A failed read keeps it: the
        tenant's room is then understated, never overstated."""
        await self.ledgers.give_back(tenant_id, untried)
        if out is None:
            return
        scene_index, charge = out
        try:
            clip = await self._read_clip(project_id, scene_index)
        except PyMongoError as exc:
            log.warning(
                "reservation_not_released",
                tenant_id=tenant_id,
                project_id=project_id,
                scene_index=scene_index,
                error=repr(exc),
            )
            return
        if clip is None or not clip.holds(charge):
            await self.ledgers.give_back(tenant_id, [charge])

    async def _retry_clip(
        self,
        project_id: str,
        tenant_id: str,
        clip: ClipState,
        charge: Charge | None,
        correlation_id: str | None,
    ) -> tuple[_Retried | None, list[Event]]:
        """Retry one failed clip as read; read again while a concurrent writer moves it (an
        entry added to its ``attempts``: a given-up task found, a late video; a settlement
        owed), a bounded few times. What was done (``took``, ``rewatch``, ``resubmit``;
        None: nothing, the clip is no longer failed; ``busy``: nothing, it moved at every
        try and is still failed, or whether its late follow holds its reservation changed
        since the first read, which decided what was reserved for it) and its events.

        A retry moves the clip on, after which a settlement one of its ends owes (marked by a
        writer no message stands behind, who may have stopped before the ledger's ``$inc``)
        may not be found on it any more: a rewatch replaces the clip's charge and end, a
        taken video of its own task its end. So (every retry write alike: one rule) a read
        that shows the clip owing one makes it first, from the clip as read, and the write
        is guarded on the project's owed list as read (:meth:`_owed_made`).
        """
        read: Document | None = None  # the clip's project as last read here, owed list and all
        held = _held(clip)  # as the retry's first read: nothing was reserved for it
        for _ in range(REREAD_ATTEMPTS):
            if clip.status is not ClipStatus.FAILED:
                return None, []  # a concurrent retry took it
            now = self._now()
            taken = retries.take_late_video(
                project_id,
                tenant_id,
                clip,
                now=now,
                lease_until=now + self._lease,
                correlation_id=correlation_id,
                log_size=self._log_size,
                links=self._links,
            )
            if taken is not None:
                # Applied: it reopened the project, which the retry finishes once, after all
                # its clips.
                taken = await self._owed_made(taken, clip.scene_index, read)
                applied = await self._apply(taken, project_id, finish=False)
                if applied is not None:
                    return "took", applied
            elif _held(clip) is not held:
                # Its late follow ended since (its reservation freed) with nothing reserved in
                # its place, or a new one holds one the retry reserved a second of: the next
                # retry reserves by what it reads then.
                return "busy", []
            else:
                common: dict[str, Any] = {
                    "token": new_token(),
                    "now": now,
                    "lease_until": now + self._lease,
                    "correlation_id": correlation_id,
                    "log_size": self._log_size,
                    "charge": charge,
                }
                timed_out = (clip.error or {}).get("code") == retries.TIMED_OUT
                same_task = clip.runs_at_runware() is not None or (
                    timed_out and not _ended_at_runware(clip)
                )
                if same_task:
                    write = retries.rewatch(project_id, tenant_id, clip, **common)
                else:
                    write = retries.retry_with_new_task(
                        project_id,
                        tenant_id,
                        clip,
                        new_task_uuid=str(uuid.uuid4()),
                        links=self._links,
                        **common,
                    )
                write = await self._owed_made(write, clip.scene_index, read)
                applied = await self._apply(write, project_id)
                if applied is not None:
                    return ("rewatch" if same_task else "resubmit"), applied
            found = await self._read_owing(project_id, clip.scene_index, tenant_id=tenant_id)
            if found is None:
                return None, []
            clip, read = found
        return ("busy" if clip.status is ClipStatus.FAILED else None), []

    async def _read_owing(
        self, project_id: str, scene_index: int, *, tenant_id: str
    ) -> tuple[ClipState, Document] | None:
        """One clip as it is now (majority read), and its project as read with it: its owed
        list and ``settled``, to build a retry's write from again (:meth:`_owed_made`)."""
        doc = await self._majority_reads.find_one(
            {"_id": project_id, "tenant_id": tenant_id},
            {
                "tenant_id": 1,
                "created_at": 1,
                clip_path(scene_index): 1,
                markers.SETTLED: 1,
                markers.SETTLE_OWED: 1,
            },
        )
        raw_clip = None if doc is None else doc.get("clips", {}).get(str(scene_index))
        if doc is None or raw_clip is None:
            return None
        return clip_from_document(raw_clip, scene_index, created_at=as_utc(doc["created_at"])), doc

    async def _owed_made(self, write: Write, scene_index: int, read: Document | None) -> Write:
        """``write``, a retry of the scene's clip as ``read`` (:meth:`_read_owing`), once the
        settlements the project marks owed for that clip and does not record are made from it
        (a no-op on the ledger where its list shows one made): guarded on the owed list as
        read. ``read`` None (the retry's first read, which does not say): guarded on none
        owed, so a project with marks is read again first."""
        owed: list[str] = [] if read is None else read.get(markers.SETTLE_OWED) or []
        mine = [entry for entry in owed if owing.owed_of(entry)[0] == scene_index]
        if read is not None and mine:
            settlements, _not_found = owed_settlements(read, mine)  # the sweep logs those
            await self._settle_all(read, settlements)
        return owing.owing_as_read(write, owed)


def _ended_at_runware(clip: ClipState) -> bool:
    """Whether the failed clip's own task, followed after the clip was given up on (late,
    after our ceiling), ended there with Runware's word: its error, or not found. Watched
    again, it would fail at the next check: a retry buys a new task, and that entry keeps
    how the follow ended. One whose window ran out with no answer (``timedOut`` again) may
    still finish: it is watched again."""
    attempt = clip.attempts.get(clip.task_uuid)
    return (
        attempt is not None
        and attempt.end_recorded
        and attempt.status is ClipStatus.FAILED
        and (attempt.error or {}).get("code") != retries.TIMED_OUT
    )


def _held(clip: ClipState) -> bool:
    """Whether the failed clip's own task, followed late after our ceiling, holds the clip's
    reservation (``ClipState.charge_in_flight``)."""
    return clip.charge_in_flight(clip.task_uuid)
