"""The ledger's settlements as the project records them: those made (``settled``), and those a
write no message stands behind owes until the settle sweep sees them made."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from reelflow_common.store.models import ClipState
from reelflow_common.store.transitions.charges import charge_at
from reelflow_common.store.transitions.markers import SETTLE_DUE, SETTLE_OWED, SETTLED
from reelflow_common.store.transitions.write import Write


def settled(project_id: str, keys: Sequence[str]) -> Write:
    """The ledger applied the settlements ``keys`` (or had already): the project records them."""
    return Write({"_id": project_id}, {"$addToSet": {SETTLED: {"$each": list(keys)}}})


def owed(write: Write, clip: ClipState, *, now: datetime) -> Write:
    """``write``, built by a writer no message stands behind from ``clip`` as it read it,
    marking in the same update the settlement it carries as owed: should its writer stop
    between this write and the ledger's ``$inc`` (a crash, an outage past its retries), no
    message would repeat it, and the settle sweep makes it from this mark.

    Only where the task holds a charge as read (the charge the write settles, read where it
    is before the write, :attr:`~.write.Write.settle_from`): a tenant without a ledger pays nothing
    for a mark. The write is guarded on that charge as read, present or absent, so it never
    settles another (a retry under a new charge between the read and the write makes it
    match nothing: its writer reads again). ``write`` as it is when it settles nothing.

    Its ``$push`` is no longer events alone, so it is never written together with other
    clips' changes (:mod:`~reelflow_common.store.together`): it goes alone, as those
    writers' rare writes do.
    """
    if write.settle is None:
        return write
    where = write.settle_from or write.settle[0]
    charge = charge_at(clip, where)
    filter_ = dict(write.filter)
    if charge is None:
        filter_[where] = None  # null or absent, as read
        return replace(write, filter=filter_)
    filter_[f"{where}.id"] = charge.id
    update = dict(write.update)
    update["$min"] = {**update.get("$min", {}), SETTLE_DUE: now}
    entry = owed_entry(clip.scene_index, write.settle[1].key_on(charge))
    update["$push"] = {**update.get("$push", {}), SETTLE_OWED: {"$each": [entry]}}
    return replace(write, filter=filter_, update=update)


def owed_entry(scene_index: int, key: str) -> str:
    """What :data:`~.markers.SETTLE_OWED` holds for the settlement of the scene's clip whose
    key on the ledger is ``key`` (:meth:`Settlement.key_on`)."""
    return f"{scene_index}:{key}"


def owed_of(entry: str) -> tuple[int, str, str]:
    """An :func:`owed_entry` read back: (scene index, key on the ledger, the key's task)."""
    scene, key = entry.split(":", 1)
    return int(scene), key, key.split(":")[1]


def claim_owed(project_id: str, *, due_at: datetime, now: datetime) -> Write:
    """One settle sweep takes the project: it moves ``settle_due_at`` on from what it read (the
    project is due again a grace after ``now``, should this sweep stop half-way)."""
    return Write({"_id": project_id, SETTLE_DUE: due_at}, {"$set": {SETTLE_DUE: now}})


def owed_swept(project_id: str, *, owed_as_read: Sequence[str], claimed: datetime) -> Write:
    """Every settlement owed as the sweep read them is made: the marks go, unless a writer
    owed another since (its entry makes the list differ: the project stays due), or another
    sweep took the project since (``claimed``: this sweep's claim, :func:`claim_owed`'s
    ``now``). A sweep that stalled past the grace and whose project another sweep unmarked
    and a writer marked again, with an entry equal to one it read, would otherwise drop that
    entry unsettled."""
    # A mark without entries (none is written so; a hand's edit) goes too, unless one came.
    return Write(
        {"_id": project_id, SETTLE_OWED: _as_read(owed_as_read), SETTLE_DUE: claimed},
        {"$unset": {SETTLE_OWED: "", SETTLE_DUE: ""}},
    )


def owing_as_read(write: Write, owed_as_read: Sequence[str]) -> Write:
    """``write`` (a retry of a clip), guarded on the project's owed list as read: a settlement
    owed since (on this clip, maybe) makes it match nothing, and its writer reads again and
    makes it before the retry moves the clip on."""
    return replace(write, filter={**write.filter, SETTLE_OWED: _as_read(owed_as_read)})


def _as_read(owed: Sequence[str]) -> Any:
    """A guard on the owed list being ``owed``: none there for none."""
    return list(owed) if owed else {"$exists": False}
