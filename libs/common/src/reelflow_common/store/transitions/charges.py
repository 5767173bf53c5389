"""A clip's reservations on its tenant's ledger: where each one is in the document (the
clip's, or an attempt's), and what a task's recorded end settles, once, under its key."""

from __future__ import annotations

from reelflow_common.accounting.ledger import Charge, Settlement
from reelflow_common.domain import ClipStatus
from reelflow_common.store.documents import clip_path
from reelflow_common.store.models import Attempt, ClipState


def charge_of(scene_index: int, task_uuid: str | None = None) -> str:
    """Where the reservation of the clip's current task (or of its attempt ``task_uuid``) is."""
    path = clip_path(scene_index)
    return f"{path}.charge" if task_uuid is None else f"{path}.attempts.{task_uuid}.charge"


def task_end(
    task_uuid: str, status: ClipStatus, cost: float | None, *, late: bool = False
) -> Settlement:
    """What a task's recorded end does to its reservation (``<charge>:<task>``, once).

    A task's end frees its reservation (one fewer in flight, the estimate released)
    and, with a video, bills what it cost. A video that came after its task had been
    given up on (its reservation freed as a failure) is billed on its own, under
    ``<task>:late``.
    """
    if late:
        return Settlement(key=f"{task_uuid}:late", ended=False, billed=True, cost=cost)
    return Settlement(key=task_uuid, ended=True, billed=status is ClipStatus.SUCCESS, cost=cost)


def settlements(clip: ClipState, task_uuid: str) -> list[tuple[Charge, Settlement]]:
    """What the recorded ends of ``task_uuid`` settle, as the clip says: the repair path
    settles them again after a crash (each one once: a no-op if it was)."""
    found: list[tuple[Charge, Settlement]] = []
    if clip.task_uuid == task_uuid and clip.status.is_terminal and clip.charge is not None:
        ended = task_end(task_uuid, clip.status, clip.cost, late=clip.late)
        if _taken_by_old_code(clip):
            # What that code settled when the clip took the video (the same key: a no-op).
            ended = Settlement(key=f"{task_uuid}:late", ended=True, billed=True, cost=clip.cost)
        found.append((clip.charge, ended))
    attempt = clip.attempts.get(task_uuid)
    if (
        attempt is not None
        and task_uuid == clip.task_uuid
        and attempt.status is not ClipStatus.SUCCESS
        and (not clip.moved_charge(task_uuid) or clip.charge_in_flight(task_uuid))
    ):
        # The clip's own task followed after it was given up on: the clip's end (above) freed
        # its reservation, and only a video that came after all is billed (``<task>:late``);
        # or the cancel moved the clip's charge here and the task has not ended yet.
        attempt = None
    if (
        attempt is not None
        and attempt.late
        and attempt.charge is not None
        and clip.moved_charge(task_uuid)
    ):
        # A video after the end that freed the charge the cancel moved here: that end first.
        found.append((attempt.charge, task_end(task_uuid, ClipStatus.FAILED, None)))
    if attempt is not None and attempt.status.is_terminal:
        end = attempt_end(clip, task_uuid, attempt)
        charge = None if end is None else (clip.charge if end[0] else attempt.charge)
        if end is not None and charge is not None:
            found.append((charge, end[1]))
    return found


def _taken_by_old_code(clip: ClipState) -> bool:
    """The clip took an earlier task's video before attempts held charges: it kept the
    charge of the task it replaced, which is in ``attempts`` without one (queued later
    than the clip's own task, as only a replaced task can be)."""
    if clip.status is not ClipStatus.SUCCESS or clip.late or clip.charge is None:
        return False
    mine = clip.queued_at
    return any(
        attempt.charge is None
        and mine is not None
        and attempt.queued_at is not None
        and attempt.queued_at > mine
        for attempt in clip.attempts.values()
    )


def attempt_end(clip: ClipState, task_uuid: str, ended: Attempt) -> tuple[bool, Settlement] | None:
    """What the recorded end of the attempt ``task_uuid`` settles, and whether on the clip's
    current charge (True) rather than the attempt's own.

    An attempt written before attempts held their charge (no ``charge``) settles as that
    code did: a video on the clip's current charge under ``<task>:late``, freeing nothing;
    a failure not at all (ARCHITECTURE.md, "Upgrades").
    """
    if _billed_on_clip(clip, task_uuid, ended):
        if ended.status is not ClipStatus.SUCCESS:
            return None
        return True, task_end(task_uuid, ended.status, ended.cost, late=True)
    return False, task_end(task_uuid, ended.status, ended.cost, late=ended.late)


def _billed_on_clip(clip: ClipState, task_uuid: str, attempt: Attempt) -> bool:
    """Whether the attempt's end settles on the clip's current charge (a video, as the code
    before attempts held charges did) rather than on its own: it holds none."""
    return attempt.charge is None and task_uuid != clip.task_uuid


def counted_on(clip: ClipState, task_uuid: str) -> Charge | None:
    """The charge of the tenant's ledger that counts the task ``task_uuid`` of the clip as
    read: the one it holds, or the one its end settles on (:func:`attempt_end`: an attempt
    without a charge, on the clip's current one). None: no ledger counts the task, by its
    reservation nor by its end (``store.unreserved`` counts it)."""
    if task_uuid == clip.task_uuid and clip.charge is not None:
        return clip.charge
    attempt = clip.attempts.get(task_uuid)
    if attempt is None:
        return None
    return clip.charge if _billed_on_clip(clip, task_uuid, attempt) else attempt.charge


def charge_at(clip: ClipState, path: str) -> Charge | None:
    """The charge at ``path`` (:func:`charge_of`'s) of the clip as read."""
    if path == charge_of(clip.scene_index):
        return clip.charge
    for task_uuid, attempt in clip.attempts.items():
        if path == charge_of(clip.scene_index, task_uuid):
            return attempt.charge
    return None  # an attempt not there yet
