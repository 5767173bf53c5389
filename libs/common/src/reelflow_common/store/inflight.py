"""What a tenant's clips hold in flight on its ledger, counted from its projects: what
``reelflow-admin tenant recount`` sets the ledger's ``open`` to (ARCHITECTURE.md, "The ledger").

A task holds the charge reserved for it (``clips.<i>.charge``, or ``attempts.<task>.charge``
once it moved there) from the reservation until its end's settlement, ``<charge id>:<task>``,
takes it off ``open``. A settlement is known made when its project records its key (written
just after the ledger's ``$inc``) or the ledger's list of its last SETTLED_KEPT keys shows it
(between the two writes). An ended task whose key neither shows is taken as not settled yet
while its end is younger than SETTLE_WINDOW_S, and as settled before projects recorded their
settlements, or lost, once it is older; unless its project marks that end's settlement owed
(``settle_owed``: its writer had no message behind it), which the settle sweep makes, however
late: not settled yet, whatever its age.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from reelflow_common.accounting.ledger import Charge, LedgerSnapshot
from reelflow_common.domain import OPEN_CLIP_STATUSES
from reelflow_common.mongo import Database
from reelflow_common.store.documents import clip_from_document
from reelflow_common.store.models import ClipState
from reelflow_common.store.timefmt import Clock, as_utc, utcnow
from reelflow_common.store.transitions import markers, owing

#: a task's end is settled just after its write, or, after a crash in between, when its
#: message is delivered again (seconds); an older end whose settlement neither its project
#: nor the ledger shows was settled before projects recorded theirs, or never will be (a
#: settlement lost): not in flight
SETTLE_WINDOW_S = 600.0


@dataclass(frozen=True)
class Held:
    """A charge a task holds: the key that settles its end, and when that end was written
    (None: the task has not ended)."""

    key: str
    ended_at: datetime | None
    #: its project marks that end's settlement owed (the settle sweep makes it)
    owed: bool = False


def held_by(clip: ClipState, *, updated_at: datetime, owed: Collection[str] = ()) -> list[Held]:
    """The charges the clip's tasks hold, one each: its current task's, then those of the
    tasks it moved to ``attempts`` (its own task followed there after it was given up on
    holds the clip's charge, which the clip's end freed; or which a cancel moved there with
    it, in flight until that follow's end).

    An end without ``completed_at`` (a cancel) counts as written at the project's
    ``updated_at``, no earlier than it was. ``owed``: the keys on the ledger
    (``<charge id>:<task>``, ``…:late``) of the settlements the project marks owed.
    """
    tasks = [(clip.task_uuid, clip.charge, clip.status, clip.completed_at)]
    tasks += [
        (task_uuid, attempt.charge, attempt.status, attempt.completed_at)
        for task_uuid, attempt in clip.attempts.items()
    ]
    found: dict[str, Held] = {}
    for task_uuid, charge, status, completed_at in tasks:
        if charge is None or charge.id in found:
            continue
        ended = status not in OPEN_CLIP_STATUSES and not clip.charge_in_flight(task_uuid)
        ended_at = (completed_at or updated_at) if ended else None
        key = _key(charge, task_uuid)
        found[charge.id] = Held(key=key, ended_at=ended_at, owed=ended and key in owed)
    return list(found.values())


def in_flight(held: Iterable[Held], settled: Collection[str], *, now: datetime) -> int:
    """How many of ``held`` a ledger counts in flight, given the keys of the settlements known
    made (``settled``: what the projects record and the ledger's list shows): every task not
    ended, and every ended one whose settlement is not known made and may still come (see the
    module's docstring).

    A key ``<charge id>:<task>:late`` shows the end settled too: the video of a task given
    up on comes after its end was (and the code before charges moved with their tasks
    settled a clip's taken video's end under it).
    """
    horizon = now - timedelta(seconds=SETTLE_WINDOW_S)
    return sum(
        1
        for h in held
        if h.ended_at is None
        or (
            h.key not in settled
            and f"{h.key}:late" not in settled
            and (h.owed or h.ended_at > horizon)
        )
    )


def _key(charge: Charge, task_uuid: str) -> str:
    return f"{charge.id}:{task_uuid}"


class TenantClips:
    """The ``projects`` collection, read for what one tenant's clips hold on its ledger."""

    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self._projects = db["projects"]
        self._now = clock

    async def in_flight(self, tenant_id: str, seen: LedgerSnapshot) -> int:
        """How many charges the tenant's clips hold that the ledger ``seen`` counts in flight.

        One read of every project of the tenant (its clips, the settlements it records and
        those it marks owed), on the ``tenant_newest`` index: an operator's command, never
        the hot path.
        """
        found = self._projects.find(
            {"tenant_id": tenant_id},
            {
                "clips": 1,
                "created_at": 1,
                "updated_at": 1,
                markers.SETTLED: 1,
                markers.SETTLE_OWED: 1,
            },
        )
        held: list[Held] = []
        settled = set(seen.settled or ())
        async for doc in found:
            created_at, updated_at = as_utc(doc["created_at"]), as_utc(doc["updated_at"])
            owed = {owing.owed_of(entry)[1] for entry in doc.get(markers.SETTLE_OWED) or ()}
            for scene, raw in doc["clips"].items():
                clip = clip_from_document(raw, int(scene), created_at=created_at)
                held += held_by(clip, updated_at=updated_at, owed=owed)
            settled.update(doc.get(markers.SETTLED) or ())
        return in_flight(held, settled, now=self._now())
