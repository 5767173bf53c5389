"""What a project owes its tenant's ledger and does not record as settled: pure, no I/O.

Read by the repair path (a duplicate message's settlement), a retry (what its clip owes
before it moves on) and the settle sweep (the settlements no message stands behind),
from a project document read with its ``settled`` (and ``settle_owed``).
"""

from __future__ import annotations

from collections.abc import Sequence

from reelflow_common.accounting.ledger import Charge, Settlement
from reelflow_common.mongo import Document
from reelflow_common.store.documents import clip_from_document
from reelflow_common.store.models import ClipState
from reelflow_common.store.timefmt import as_utc
from reelflow_common.store.transitions import charges, markers, owing


def owed_settlements(
    doc: Document, entries: Sequence[str]
) -> tuple[list[tuple[Charge, Settlement]], list[str]]:
    """What the owed ``entries`` (:data:`markers.SETTLE_OWED`) settle, from their clips in
    ``doc`` (read with them and its ``settled``), and the project does not record as settled;
    and the entries found neither recorded nor on their clip."""
    recorded = set(doc.get(markers.SETTLED) or ())
    owed: list[tuple[Charge, Settlement]] = []
    not_found: list[str] = []
    for entry in dict.fromkeys(entries):  # an entry owed twice is one settlement
        scene_index, key, task_uuid = owing.owed_of(entry)
        if key in recorded:
            continue
        raw_clip = doc["clips"].get(str(scene_index))
        found = []
        if raw_clip is not None:
            clip = clip_from_document(raw_clip, scene_index, created_at=as_utc(doc["created_at"]))
            found = unrecorded(doc, clip, task_uuid, only=key)
        owed += found
        if not found:
            not_found.append(entry)
    return owed, not_found


def unrecorded(
    doc: Document, clip: ClipState, task_uuid: str, *, only: str | None = None
) -> list[tuple[Charge, Settlement]]:
    """What the recorded ends of ``task_uuid`` settle (``only``: the settlement of that key on
    the ledger alone) and the project ``doc``, read with its ``settled``, does not record as
    settled."""
    recorded = set(doc.get(markers.SETTLED) or ())
    return [
        (charge, settlement)
        for charge, settlement in charges.settlements(clip, task_uuid)
        if settlement.key_on(charge) not in recorded and only in (None, settlement.key_on(charge))
    ]
