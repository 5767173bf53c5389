"""One guarded update of one project document (:class:`Write`), and the parts every builder
makes it of: the update under construction (:class:`Update`: the clip's fields, the moves
between count buckets, the events and ``seq``), the guard on the project and its clip."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reelflow_common.accounting.ledger import Settlement
from reelflow_common.domain import Bucket, ClipStatus
from reelflow_common.money import round_usd
from reelflow_common.mongo import Document
from reelflow_common.store.documents import clip_path
from reelflow_common.store.errors import UntoldCost
from reelflow_common.store.eventlog import cost_added, packed


@dataclass(frozen=True)
class Write:
    """One guarded update of one project document; ``events`` is what it adds to ``seq``.

    ``settle``: where the ledger reservation this change settles is (the dotted path of
    a ``charge`` in the document as the write leaves it), and how (applied after the
    write, once, by :class:`~reelflow_common.store.ProjectStore`). ``settle_from``: where
    that charge is before the write, when the write moves it there (an attempt's video
    taken by the clip, a new attempt of the clip's own task); None: at ``settle``'s path.
    """

    filter: Document
    update: Document
    events: int = 0
    settle: tuple[str, Settlement] | None = None
    settle_from: str | None = None


@dataclass
class Update:
    """An update document under construction."""

    set: Document = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    inc: dict[str, float] = field(default_factory=dict)
    min: Document = field(default_factory=dict)
    pull: Document = field(default_factory=dict)
    events: list[Document] = field(default_factory=list)

    def move(self, from_bucket: Bucket, to_bucket: Bucket) -> None:
        if from_bucket != to_bucket:
            self.inc[f"counts.{from_bucket}"] = self.inc.get(f"counts.{from_bucket}", 0) - 1
            self.inc[f"counts.{to_bucket}"] = self.inc.get(f"counts.{to_bucket}", 0) + 1

    def cost(self, cost: float | None) -> None:
        """One more video in the project's ``cost``: ``cost`` as its event shows it (rounded,
        ``round_usd``), so the sum a replay rebuilds by taking the events' costs off the
        document's is the one this write's own events said (``eventlog.materialize``)."""
        if cost is None:
            self.inc["cost.unknown"] = self.inc.get("cost.unknown", 0) + 1
        else:
            self.inc["cost.usd"] = self.inc.get("cost.usd", 0) + round_usd(cost)
            self.inc["cost.known"] = self.inc.get("cost.known", 0) + 1

    def build(
        self,
        filter_: Document,
        *,
        now: datetime,
        log_size: int,
        settle: tuple[str, Settlement] | None = None,
        settle_from: str | None = None,
    ) -> Write:
        update: Document = {}
        to_set = dict(self.set)
        inc = dict(self.inc)
        # The project's cost moves by exactly the videos the events tell: a replay rebuilds
        # the cost after each event from them (``eventlog.materialize``).
        told = [cost for event in self.events for cost in cost_added(event)]
        counted = (inc.get("cost.known", 0), inc.get("cost.unknown", 0))
        said = (sum(cost is not None for cost in told), sum(cost is None for cost in told))
        if counted != said:
            raise UntoldCost(
                "a change of the project's cost that its events do not tell: it adds"
                f" {counted[0]} known and {counted[1]} unknown costs, its events tell"
                f" {said[0]} and {said[1]}"
            )
        if self.events:
            # The invariant of the log: seq grows by exactly the number of events pushed.
            inc["seq"] = len(self.events)
            pushed = [packed(event) for event in self.events]
            update["$push"] = {"events": {"$each": pushed, "$slice": -log_size}}
            to_set["updated_at"] = now
        if to_set:
            update["$set"] = to_set
        if self.unset:
            update["$unset"] = dict.fromkeys(self.unset, "")
        if inc:
            update["$inc"] = inc
        if self.min:
            update["$min"] = self.min
        if self.pull:
            update["$pull"] = self.pull
        return Write(filter_, update, len(self.events), settle, settle_from)


def clip_guard(
    project_id: str,
    scene_index: int,
    *,
    tenant_id: str | None = None,
    **clip_fields: Any,
) -> Document:
    """The filter of a change of the scene's clip: the project (``tenant_id``'s, if given) and
    the clip's fields as given (``lease__token``: the dotted ``lease.token``)."""
    path = clip_path(scene_index)
    found: Document = {"_id": project_id}
    if tenant_id is not None:
        found["tenant_id"] = tenant_id
    for name, value in clip_fields.items():
        found[f"{path}.{name.replace('__', '.')}"] = value
    return found


def set_clip(update: Update, scene_index: int, **fields: Any) -> None:
    """Set the scene's clip ``fields`` in ``update`` (a status as its value)."""
    path = clip_path(scene_index)
    for name, value in fields.items():
        update.set[f"{path}.{name}"] = value.value if isinstance(value, ClipStatus) else value
