"""Changes of several clips of one project made together: one update for their guarded writes.

Under load a project's clips change in bursts: the clips of a shared submit
request are recorded processing within a millisecond of each other, a message of
checks finds several of them finished. Each change is a guarded update of the
same document; merged, they cost the database one round trip and one rewrite of
that document instead of one each.

Merging is allowed only where applying the merged update is the same as applying
each write in turn: each write changes one clip of its own, guarded on that clip
alone, and beyond it only adds to the project's counters (``$inc``), pushes
events, and sets ``updated_at`` or a ``$min`` field. The merged filter holds every
write's guard, so if any one of them no longer holds, the merged update matches
nothing and each write goes alone (the caller's), as it would have without the
others: whether a change happens never depends on which other changes came with it.
Its events are pushed in the writes' order, so ``seq`` still grows by exactly the
number of events pushed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reelflow_common.mongo import Document
from reelflow_common.store.transitions.write import Write

#: filter fields a merged write shares (their values must agree)
_SHARED_FILTER = frozenset({"_id", "tenant_id"})
#: what a clip's change may do beyond its clip, by update operator
_SHARED_SET = frozenset({"updated_at"})
_SHARED_MIN = frozenset({"due_at", "copy_due_at", "attempts_due_at"})
_SHARED_INC = frozenset({"seq"})
_SHARED_INC_PREFIXES = ("counts.", "cost.")
_OPERATORS = frozenset({"$set", "$unset", "$inc", "$min", "$push"})


def clip_of(write: Write) -> str | None:
    """The clip (``clips.<scene>``) ``write`` changes, if it changes that clip alone in a way
    that can be merged with other clips' changes; else None."""
    clips: set[str] = set()
    for key in write.filter:
        if key not in _SHARED_FILTER:
            clip = _clip(key)
            if clip is None:
                return None
            clips.add(clip)
    for operator, fields in write.update.items():
        if operator not in _OPERATORS:
            return None
        if operator == "$push":
            if set(fields) != {"events"}:
                return None
            continue
        for key in fields:
            clip = _clip(key)
            if clip is not None:
                clips.add(clip)
            elif not _shared(operator, key):
                return None
    return clips.pop() if len(clips) == 1 else None


def merged(writes: Sequence[Write]) -> Write | None:
    """One write doing what ``writes`` do, each changing a clip of its own (see the module
    docstring), their events pushed in order; None if they cannot be merged.

    The merged write settles nothing: the caller settles each write's reservation.
    """
    clips = [clip_of(write) for write in writes]
    if len(writes) < 2 or None in clips or len(set(clips)) < len(clips):
        return None
    filter_: Document = {}
    sets: Document = {}
    unsets: Document = {}
    incs: dict[str, Any] = {}
    mins: Document = {}
    pushed: list[Any] = []
    slices: set[int] = set()
    for write in writes:
        for key, value in write.filter.items():
            if key in filter_ and filter_[key] != value:
                return None  # another project, or another tenant's guard
            filter_[key] = value
        update = write.update
        sets |= update.get("$set", {})  # a shared field (updated_at): the last write's
        unsets |= update.get("$unset", {})
        for key, value in update.get("$inc", {}).items():
            incs[key] = incs.get(key, 0) + value
        for key, value in update.get("$min", {}).items():
            mins[key] = value if key not in mins else min(mins[key], value)
        if "$push" in update:
            push = update["$push"]["events"]
            pushed += push["$each"]
            slices.add(push["$slice"])
    if len(slices) > 1:
        return None
    update_: Document = {}
    for operator, fields in (("$set", sets), ("$unset", unsets), ("$inc", incs), ("$min", mins)):
        if fields:
            update_[operator] = fields
    if pushed:
        update_["$push"] = {"events": {"$each": pushed, "$slice": slices.pop()}}
    return Write(filter_, update_, sum(write.events for write in writes))


def _clip(key: str) -> str | None:
    """``clips.<scene>`` of a dotted path into a clip, else None."""
    parts = key.split(".", 2)
    if len(parts) < 2 or parts[0] != "clips" or not parts[1].isdigit():
        return None
    return f"clips.{parts[1]}"


def _shared(operator: str, key: str) -> bool:
    if operator == "$set":
        return key in _SHARED_SET
    if operator == "$min":
        return key in _SHARED_MIN
    if operator == "$inc":
        return key in _SHARED_INC or key.startswith(_SHARED_INC_PREFIXES)
    return False
