"""Each tenant's ledger (``tenant_ledgers``): clips in flight and money committed per period.

Only tenants with a budget or an in-flight limit have one, so a tenant without
limits pays no database operation for it. One document per tenant::

    {"_id": "<tenant>", "open": 3,
     "committed": {"2026-12-01": 1.2, "2026-12": 7.9},
     "limits": {"daily_budget_usd": 5.0, ...},
     "settled": ["<charge id>:<task uuid>", ...],
     "reserved_at": <the last reservation, database clock>,
     "reserving": [{"key": "<digest of an Idempotency-Key, or a retry's project>",
                    "at": <its reservation>,
                    "id": "<the reservation's id>"}, ...],
     "unreserved": {"2026-12-01": 1.8, "2026-12": 1.8}}

``committed`` holds, per UTC day and month, the estimates of clips not yet
ended plus what ended clips cost (an unknown cost keeps its estimate), and what tasks
that hold no reservation spent (``unreserved``: bought before the tenant had a ledger),
as last counted from its projects (:meth:`LedgerStore.count_unreserved`). A create
or a retry **reserves** with one guarded ``find_one_and_update`` (upsert): the
filter says "still room for this much", so of two concurrent creates that
together exceed a budget one matches and the other is refused; nothing is read
first. A clip's end **settles** its reservation with one ``$inc``, guarded on its key's
absence from the bounded list of recently settled keys in the same document; its project
then records the key (``ProjectStore``), which makes it idempotent however late a duplicate
comes: the list covers the moment between the two writes.
A create with an Idempotency-Key leaves the key's digest in ``reserving`` with its
reservation (the same update): a request refused for room while one with its key may still
be storing its project is that request's twin, not a refusal (:class:`KeyInProgress`); a
reservation given back (its create failed) is forgotten there, so its twin is judged on the
room again. A retry leaves its project's digest there alike, forgotten once it is done with
its clips, each written or its charge given back (:meth:`LedgerStore.landed`; not at the
give-back of one clip it lost while it writes others), or when an error ends it and it gives
the room back: a retry of the same project refused for room meanwhile is not told the
budget is spent for room that retry holds, maybe briefly (each reserves for the clips it
read failed before it knows whether it wins them).
An operator's **recount** sets ``open`` to what the tenant's clips hold, with one
update guarded on the ledger as read before the count (:meth:`LedgerStore.recount`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from pymongo import WriteConcern
from pymongo.errors import DuplicateKeyError, PyMongoError

from reelflow_common.accounting.limits import (
    Limit,
    LimitExceeded,
    TenantLimits,
    day_key,
    day_resets_at,
    month_key,
    month_resets_at,
)
from reelflow_common.errors import ReelflowError, TransientError
from reelflow_common.logging import get_logger
from reelflow_common.money import format_usd
from reelflow_common.mongo import REREAD_ATTEMPTS, Database, Document

log = get_logger(__name__)

COLLECTION = "tenant_ledgers"
#: how many settled keys a ledger remembers: enough for a settlement whose project does not
#: record it yet (a crash between the two writes, then its message's redelivery)
SETTLED_KEPT = 1000
#: float sums of costs: a budget is reached within a millionth of a dollar
_EPSILON = 1e-6
#: a clip in flight ends within minutes; the client is told to try again after this
IN_FLIGHT_RETRY_AFTER_S = 30
#: a reservation's clips are stored, or it is given back or kept, well within this: a create's
#: insert (a retry's writes of its clips), and after an unknown outcome the read and the
#: release, each take at most REELFLOW_MONGO_TIMEOUT_S (10 s by default); a recount waits it out
RESERVATION_LANDS_S = 60.0
#: the Idempotency-Keys of a tenant's last reservations a ledger remembers (each matters for
#: RESERVATION_LANDS_S): a tenant creating more keyed projects than this in that time may see
#: a twin refused for the room its first holds, as before keys were remembered
RESERVING_KEPT = 64


class Charge(BaseModel):
    """What a reservation holds on its tenant's ledger: an estimate, in the period it was made.

    ``id`` names the reservation, so that a clip reserved again (a retry) settles again.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    usd: float
    day: str
    month: str

    @property
    def reservation_id(self) -> str:
        """The id of the reservation this charge is part of (:meth:`split` numbers its clips)."""
        return self.id.partition(".")[0]

    def split(self, estimates: list[float]) -> list[Charge]:
        """One charge per clip of this reservation, each with its own estimate."""
        return [
            Charge(id=f"{self.id}.{i}", usd=usd, day=self.day, month=self.month)
            for i, usd in enumerate(estimates)
        ]


@dataclass(frozen=True)
class Settlement:
    """What a clip's change does to its reservation.

    ``ended``: the clip left the pending bucket (one fewer in flight, estimate released).
    ``billed``: Runware charged the task; ``cost`` None means it did not say how much
    (the estimate then stays committed, or, for a late result whose clip's end released
    it already, is committed again: a billed video is never counted as $0).
    """

    #: what makes it unique for its charge (the task, or the task's late result)
    key: str
    ended: bool
    billed: bool
    cost: float | None = None

    def key_on(self, charge: Charge) -> str:
        """What names this settlement of ``charge``, on the ledger and on its project."""
        return f"{charge.id}:{self.key}"

    def delta_usd(self, charge: Charge) -> float:
        released = -charge.usd if self.ended else 0.0
        if not self.billed:
            return released
        return released + (charge.usd if self.cost is None else self.cost)


class LedgerView(BaseModel):
    """A ledger as read: in flight, committed per period."""

    model_config = ConfigDict(frozen=True)

    open: int = 0
    committed: dict[str, float] = {}

    def committed_in(self, period: str) -> float:
        return float(self.committed.get(period, 0.0))


class LedgerStore:
    """The ``tenant_ledgers`` collection."""

    def __init__(self, db: Database) -> None:
        self._ledgers = db.get_collection(COLLECTION, write_concern=WriteConcern(w="majority"))

    async def reserve(
        self,
        tenant_id: str,
        limits: TenantLimits,
        *,
        clips: int,
        usd: float,
        now: datetime,
        idempotency_key: str | None = None,
        retrying: str | None = None,
    ) -> Charge | None:
        """Hold ``clips`` in flight and ``usd`` for today and this month, or raise LimitExceeded.

        None when the tenant's limits need no ledger (nothing written).
        ``idempotency_key``: the create's; ``retrying``: the project a retry reserves for
        (one or neither); remembered with the reservation (``reserving``).
        Refused for room while a reservation made with the same key (a retry of the same
        project) less than RESERVATION_LANDS_S ago may not have its project (its clips) stored
        yet: raises :class:`KeyInProgress` instead (that request's answer is this one's).
        """
        if not limits.needs_ledger:
            return None
        day, month = day_key(now), month_key(now)
        _refuse_alone(limits, clips=clips, usd=usd)
        guard: Document = {"_id": tenant_id}
        if limits.max_clips_in_flight is not None:
            guard["open"] = {"$not": {"$gt": limits.max_clips_in_flight - clips}}
        if limits.daily_budget_usd is not None:
            room = limits.daily_budget_usd - usd + _EPSILON
            guard[f"committed.{day}"] = {"$not": {"$gt": room}}
        if limits.monthly_budget_usd is not None:
            room = limits.monthly_budget_usd - usd + _EPSILON
            guard[f"committed.{month}"] = {"$not": {"$gt": room}}
        update = {
            "$inc": {"open": clips, f"committed.{day}": usd, f"committed.{month}": usd},
            # ``reserved_at``: a recount waits until the clips reserved are stored
            "$set": {"reserved_at": now},
            # The limits as cached with the key, for a ledger this creates (a race with
            # ``set_limits``); never over the ledger's own: they may be older than an
            # operator's change, which ``set_limits`` wrote there.
            "$setOnInsert": {"limits": limits.model_dump()},
        }
        charge_id = secrets.token_hex(6)
        digest = _holder_digest(idempotency_key, retrying)
        if digest is not None:
            entry = {"key": digest, "at": now, "id": charge_id}
            update["$push"] = {"reserving": {"$each": [entry], "$slice": -RESERVING_KEPT}}
        for _ in range(REREAD_ATTEMPTS):
            try:
                # Upsert: a tenant's first reservation creates its ledger. A ledger that
                # exists but has no room makes the upsert insert a second _id: refused.
                await self._ledgers.find_one_and_update(guard, update, upsert=True)
                return Charge(id=charge_id, usd=usd, day=day, month=month)
            except DuplicateKeyError:
                ledger, reserving = await self._read_refused(tenant_id)
                try:
                    _refuse_with(limits, ledger, clips=clips, usd=usd, now=now)
                except LimitExceeded:
                    if digest is not None and _reserved_since(
                        reserving, digest, now - timedelta(seconds=RESERVATION_LANDS_S)
                    ):
                        raise KeyInProgress(
                            "a request with this Idempotency-Key (a retry of this project)"
                            " holds the room and may still be storing what it reserved for"
                        ) from None
                    raise
                # Room appeared between the write and the read (a clip ended): try again.
        raise TransientError("the tenant's ledger kept changing; the request may be retried")

    async def release(
        self, tenant_id: str, charge: Charge, *, clips: int, forget: bool = True
    ) -> None:
        """Give back a reservation nothing was created for (an idempotent replay, an error).

        Its Idempotency-Key's entry in ``reserving`` goes with it: a create that failed after
        reserving held its twins' answers to 409 for RESERVATION_LANDS_S, whatever the room.
        ``forget`` False keeps the entry: a retry giving back one clip it lost while it still
        writes its others (:meth:`landed` forgets it once they are written).
        """
        update: Document = {
            "$inc": {
                "open": -clips,
                f"committed.{charge.day}": -charge.usd,
                f"committed.{charge.month}": -charge.usd,
            }
        }
        if forget:
            update["$pull"] = {"reserving": {"id": charge.reservation_id}}
        await self._ledgers.update_one({"_id": tenant_id}, update)

    async def landed(self, tenant_id: str, charge: Charge) -> None:
        """What the reservation of ``charge`` was for is done with (a retry's clips: each
        written holding its charge, or given it back): its entry in ``reserving`` is
        forgotten, so a request refused for room is judged on the room alone again. If
        MongoDB fails here, the entry stays its RESERVATION_LANDS_S (logged)."""
        try:
            await self._ledgers.update_one(
                {"_id": tenant_id}, {"$pull": {"reserving": {"id": charge.reservation_id}}}
            )
        except PyMongoError as exc:
            log.warning("reserving_not_forgotten", tenant_id=tenant_id, error=repr(exc))

    async def give_back(
        self, tenant_id: str, charges: Iterable[Charge], *, forget: bool = True
    ) -> None:
        """Release reservations no clip holds (one clip each), for a caller answering something
        else (an error, a replay). If MongoDB fails here, the rest stay committed: the tenant's
        room is understated, never overstated (``reservation_not_released`` is logged).
        ``forget``: as for :meth:`release`."""
        try:
            for charge in charges:
                await self.release(tenant_id, charge, clips=1, forget=forget)
        except PyMongoError as exc:
            log.warning("reservation_not_released", tenant_id=tenant_id, error=repr(exc))

    async def settle(self, tenant_id: str, charge: Charge, settlement: Settlement) -> bool:
        """Apply a clip's change to the ledger once; False if this key was settled already
        (among the last SETTLED_KEPT: a settlement its project records is not asked again)."""
        key = settlement.key_on(charge)
        delta = settlement.delta_usd(charge)
        inc: dict[str, Any] = {}
        if settlement.ended:
            inc["open"] = -1
        if delta:
            inc[f"committed.{charge.day}"] = delta
            inc[f"committed.{charge.month}"] = delta
        update: Document = {
            "$push": {"settled": {"$each": [key], "$slice": -SETTLED_KEPT}},
        }
        if inc:
            update["$inc"] = inc
        found = await self._ledgers.update_one({"_id": tenant_id, "settled": {"$ne": key}}, update)
        return found.matched_count == 1

    async def read(self, tenant_id: str) -> LedgerView:
        doc = await self._ledgers.find_one({"_id": tenant_id}, {"open": 1, "committed": 1})
        return LedgerView() if doc is None else LedgerView.model_validate(doc)

    async def _read_refused(self, tenant_id: str) -> tuple[LedgerView, list[Document]]:
        """The ledger as a refused reservation reads it (one read): its room, and the keys of
        its last reservations."""
        doc = await self._ledgers.find_one(
            {"_id": tenant_id}, {"open": 1, "committed": 1, "reserving": 1}
        )
        if doc is None:
            return LedgerView(), []
        reserving = doc.pop("reserving", None) or []
        return LedgerView.model_validate(doc), reserving

    async def recount(
        self, tenant_id: str, count: CountInFlight, *, now: datetime, apply: bool
    ) -> Recount | None:
        """Set ``open`` to what the tenant's clips hold in flight (``count``), unless the ledger
        moved while they were counted; None when the tenant has no ledger.

        Raises LedgerMoved, counting nothing, while a reservation may not have its clips
        stored yet (made less than RESERVATION_LANDS_S ago). The correction is one update
        guarded on the ledger as read before the count: nothing reserved, released or
        settled since (``open``, ``reserved_at`` and the ``settled`` keys unchanged).
        ``apply`` False: writes nothing (it reads the ledger again to tell whether it moved).
        """
        seen = await self._snapshot(tenant_id)
        if seen is None:
            return None
        if seen.reserved_at is not None:
            age = (now - seen.reserved_at).total_seconds()
            if age < RESERVATION_LANDS_S:
                raise LedgerMoved(
                    f"the tenant reserved clips {max(age, 0.0):.0f} s ago, which may not be"
                    f" stored yet; run it again in {RESERVATION_LANDS_S - age:.0f} s"
                )
        counted = await count(tenant_id, seen)
        correction = counted - seen.in_flight
        if apply and correction:
            found = await self._ledgers.update_one(seen.guard(), {"$set": {"open": counted}})
            moved = found.matched_count == 0
        else:
            moved = await self._snapshot(tenant_id) != seen
        return Recount(
            ledger_open=seen.in_flight,
            counted=counted,
            applied=apply and bool(correction) and not moved,
            moved=moved,
        )

    async def _snapshot(self, tenant_id: str) -> LedgerSnapshot | None:
        doc = await self._ledgers.find_one(
            {"_id": tenant_id}, {"open": 1, "settled": 1, "reserved_at": 1}
        )
        if doc is None:
            return None
        settled = doc.get("settled")
        return LedgerSnapshot(
            tenant_id=tenant_id,
            open=doc.get("open"),
            settled=None if settled is None else tuple(settled),
            reserved_at=doc.get("reserved_at"),
        )

    async def count_unreserved(
        self, tenant_id: str, count: CountUnreserved, *, now: datetime, apply: bool = True
    ) -> Unreserved | None:
        """Count what the tenant's tasks that hold no charge spent in the day and month of
        ``now`` (``count``) into ``committed``; None when the tenant has no ledger.

        Those tasks reach the ledger by nothing else, and every other task only by its
        reservation and settlements, so the two add up whatever runs meanwhile: the count
        moves ``committed`` by its difference from the last one (``unreserved``), with one
        update guarded on that as read, never over what a reservation or settlement wrote.
        A count that another one overtook counts again. ``apply`` False: writes nothing.
        """
        for _ in range(REREAD_ATTEMPTS):
            doc = await self._ledgers.find_one({"_id": tenant_id}, {"unreserved": 1})
            if doc is None:
                return None
            spent = await count(tenant_id, now)
            seen = doc.get("unreserved") or {}
            before = (seen.get(spent.day), seen.get(spent.month))
            found = Unreserved(
                day=spent.day,
                month=spent.month,
                day_usd=spent.day_usd,
                month_usd=spent.month_usd,
                day_before=float(before[0] or 0.0),
                month_before=float(before[1] or 0.0),
            )
            if not apply or not found.moves:
                return found
            # ``None`` matches a period not counted yet (no field).
            guard = {
                "_id": tenant_id,
                f"unreserved.{spent.day}": before[0],
                f"unreserved.{spent.month}": before[1],
            }
            update = {
                "$set": {
                    f"unreserved.{spent.day}": spent.day_usd,
                    f"unreserved.{spent.month}": spent.month_usd,
                },
                "$inc": {
                    f"committed.{spent.day}": spent.day_usd - found.day_before,
                    f"committed.{spent.month}": spent.month_usd - found.month_before,
                },
            }
            if (await self._ledgers.update_one(guard, update)).matched_count == 1:
                return found
        raise LedgerMoved(
            "other counts of the tenant's unreserved spend kept landing; run it again"
        )

    async def set_limits(self, tenant_id: str, limits: TenantLimits) -> None:
        """The limits the submitter's budget gate reads (the API reads them with the key).

        Limits that need a ledger create it, so it holds them before the first reservation
        (which never writes limits over a ledger's own).
        """
        await self._ledgers.update_one(
            {"_id": tenant_id},
            {"$set": {"limits": limits.model_dump()}},
            upsert=limits.needs_ledger,
        )

    async def budget(self, tenant_id: str) -> Budget | None:
        """The tenant's budgets and what is committed (the submitter's gate); None: no ledger."""
        doc = await self._ledgers.find_one({"_id": tenant_id}, {"committed": 1, "limits": 1})
        if doc is None:
            return None
        return Budget(
            limits=TenantLimits.model_validate(doc.get("limits") or {}),
            ledger=LedgerView.model_validate(doc),
        )


class KeyInProgress(ReelflowError):
    """A reservation was refused for room while one with its Idempotency-Key, which holds that
    room, may still be storing its project: the request is that one's twin, whose answer is
    its own (a replay), never a refusal for its room. Or a retry's, while another retry of the
    same project holds room and may still be writing its clips."""


def _digest(idempotency_key: str) -> str:
    """What ``reserving`` remembers of a key: short, whatever the key's length (up to 255)."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def _holder_digest(idempotency_key: str | None, retrying: str | None) -> str | None:
    """What ``reserving`` remembers of a reservation's create (its key) or retry (its project).
    A retry's holds a newline, which no Idempotency-Key (a header's value) does."""
    if idempotency_key is not None:
        return _digest(idempotency_key)
    return None if retrying is None else _digest(f"retry\n{retrying}")


def _reserved_since(reserving: list[Document], digest: str, since: datetime) -> bool:
    """Whether ``reserving`` holds a reservation of the key ``digest`` made after ``since``."""
    return any(entry.get("key") == digest and entry["at"] > since for entry in reserving)


class LedgerMoved(TransientError):
    """The ledger moved while its clips were counted, or may move for a reservation whose
    clips are not stored yet: a recount may be run again."""


@dataclass(frozen=True)
class LedgerSnapshot:
    """What a recount reads of a ledger (a field missing: None). Equal snapshots: nothing was
    reserved (``reserved_at``), released (``open``) or settled (``settled``) in between."""

    tenant_id: str
    open: int | None
    #: the settled keys it remembers, oldest first (at most SETTLED_KEPT)
    settled: tuple[str, ...] | None
    reserved_at: datetime | None

    @property
    def in_flight(self) -> int:
        return self.open or 0

    def guard(self) -> Document:
        """A filter matching the ledger only as it is here (``None`` matches a missing field)."""
        return {
            "_id": self.tenant_id,
            "open": self.open,
            "settled": None if self.settled is None else list(self.settled),
            "reserved_at": self.reserved_at,
        }


#: how many charges a tenant's clips hold that its ledger, as read, counts in flight
CountInFlight = Callable[[str, LedgerSnapshot], Awaitable[int]]


@dataclass(frozen=True)
class Recount:
    """What a recount found: the ledger's ``open``, what the clips hold, and what it did."""

    ledger_open: int
    counted: int
    #: ``open`` was set to ``counted``
    applied: bool
    #: the ledger moved between its read and the correction (or the second read): not applied
    moved: bool

    @property
    def correction(self) -> int:
        return self.counted - self.ledger_open


@dataclass(frozen=True)
class Spent:
    """What a tenant's tasks without a charge spent in one UTC day and its month (dollars)."""

    day: str
    month: str
    day_usd: float
    month_usd: float


#: what a tenant's tasks without a charge spent in the day and month of ``now``
CountUnreserved = Callable[[str, datetime], Awaitable[Spent]]


@dataclass(frozen=True)
class Unreserved:
    """What tasks without a charge spent in a day and its month: as counted now, and as the
    ledger held it before (``*_before``: what it counted last, 0 if it never did)."""

    day: str
    month: str
    day_usd: float
    month_usd: float
    day_before: float
    month_before: float

    @property
    def moves(self) -> bool:
        return (self.day_usd, self.month_usd) != (self.day_before, self.month_before)


@dataclass(frozen=True)
class Budget:
    """A tenant's budgets and its ledger, as read."""

    limits: TenantLimits
    ledger: LedgerView

    def exceeded(self, charge: Charge, now: datetime) -> LimitExceeded | None:
        """Whether the periods of ``charge`` are past their budget.

        ``committed`` already holds the clip's own estimate, so over means: what ended
        cost more than estimated, or an operator lowered the budget. The period that is
        spent is the charge's, so it resets when that period ends, which may have passed
        by ``now`` (a clip reserved before midnight, gated after it): a retry then
        reserves in the period of its own day.
        """
        limits, ledger = self.limits, self.ledger
        day_began = datetime.strptime(charge.day, "%Y-%m-%d").replace(tzinfo=UTC)
        checks = (
            (Limit.DAILY_BUDGET_USD, limits.daily_budget_usd, charge.day, day_resets_at(day_began)),
            (
                Limit.MONTHLY_BUDGET_USD,
                limits.monthly_budget_usd,
                charge.month,
                month_resets_at(day_began),
            ),
        )
        spent = [
            LimitExceeded(
                limit,
                f"The tenant's {_name(limit)} of {format_usd(budget)} is spent"
                f" ({format_usd(ledger.committed_in(period))} committed for {period}).",
                value=budget,
                resets_at=resets_at,
            )
            for limit, budget, period, resets_at in checks
            if budget is not None and ledger.committed_in(period) > budget + _EPSILON
        ]
        # A period still running first: one that has ended is no reason to wait (a day ended,
        # its month spent too: the month is the one to wait for).
        still_running = [e for e in spent if e.resets_at is not None and e.resets_at > now]
        first = still_running or spent
        return first[0] if first else None


def _name(limit: Limit) -> str:
    return {
        Limit.DAILY_BUDGET_USD: "daily budget",
        Limit.MONTHLY_BUDGET_USD: "monthly budget",
        Limit.MAX_CLIPS_IN_FLIGHT: "limit of clips in flight",
    }.get(limit, limit.value)


def _refuse_alone(limits: TenantLimits, *, clips: int, usd: float) -> None:
    """A request that no ledger could ever take (more than the limit on its own): refused with
    neither a time to retry at nor one its period resets at, since waiting never makes room."""
    in_flight = limits.max_clips_in_flight
    if in_flight is not None and clips > in_flight:
        raise LimitExceeded(
            Limit.MAX_CLIPS_IN_FLIGHT,
            f"{clips} clips at once are more than the tenant's whole"
            f" {_name(Limit.MAX_CLIPS_IN_FLIGHT)} ({in_flight}): no wait makes room for them"
            " (send fewer clips at once, or ask the operator for a higher limit).",
            value=in_flight,
        )
    for limit, budget in (
        (Limit.DAILY_BUDGET_USD, limits.daily_budget_usd),
        (Limit.MONTHLY_BUDGET_USD, limits.monthly_budget_usd),
    ):
        if budget is not None and usd > budget + _EPSILON:
            raise LimitExceeded(
                limit,
                f"This would cost about {format_usd(usd)}, more than the tenant's whole"
                f" {_name(limit)} of {format_usd(budget)} (send fewer scenes at once, or ask the"
                " operator for a larger budget).",
                value=budget,
            )


def _refuse_with(
    limits: TenantLimits, ledger: LedgerView, *, clips: int, usd: float, now: datetime
) -> None:
    """Raise LimitExceeded for the first limit ``ledger`` has no room in."""
    limit_in_flight = limits.max_clips_in_flight
    if limit_in_flight is not None and ledger.open + clips > limit_in_flight:
        raise LimitExceeded(
            Limit.MAX_CLIPS_IN_FLIGHT,
            f"{clips} more {'clip' if clips == 1 else 'clips'} would put the tenant past its"
            f" {_name(Limit.MAX_CLIPS_IN_FLIGHT)}"
            f" ({ledger.open} in flight, at most {limit_in_flight}).",
            value=limit_in_flight,
            retry_after_s=IN_FLIGHT_RETRY_AFTER_S,
        )
    budgets = (
        (Limit.DAILY_BUDGET_USD, limits.daily_budget_usd, day_key(now), day_resets_at(now)),
        (Limit.MONTHLY_BUDGET_USD, limits.monthly_budget_usd, month_key(now), month_resets_at(now)),
    )
    for limit, budget, period, resets_at in budgets:
        if budget is None:
            continue
        committed = ledger.committed_in(period)
        if committed + usd > budget + _EPSILON:
            raise LimitExceeded(
                limit,
                f"This would cost about {format_usd(usd)}; the tenant's {_name(limit)} of"
                f" {format_usd(budget)} has {format_usd(max(budget - committed, 0.0))} left"
                f" for {period}.",
                value=budget,
                resets_at=resets_at,
            )
