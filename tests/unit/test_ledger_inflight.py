"""What a recount counts in flight from a tenant's clips, pure: which charges a clip's tasks
hold, and which of them the ledger still counts, given the settlements known made (the keys
their projects record and the ledger's list shows)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reelflow_common.accounting.ledger import SETTLED_KEPT, Charge
from reelflow_common.domain import ClipStatus
from reelflow_common.store import Attempt, ClipState, Lease
from reelflow_common.store.inflight import SETTLE_WINDOW_S, Held, held_by, in_flight

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
RECENT = NOW - timedelta(seconds=5)
LONG_AGO = NOW - timedelta(seconds=SETTLE_WINDOW_S + 1)


def charge(charge_id: str) -> Charge:
    return Charge(id=charge_id, usd=0.25, day="2026-12-04", month="2026-12")


def clip(status: ClipStatus, **fields: object) -> ClipState:
    values: dict[str, object] = {"scene_index": 0, "task_uuid": "t2", "charge": charge("c2")}
    return ClipState.model_validate(values | {"status": status} | fields)


def test_an_open_clip_holds_its_charge_until_it_ends() -> None:
    held = held_by(clip(ClipStatus.PROCESSING), updated_at=RECENT)

    assert held == [Held(key="c2:t2", ended_at=None)]
    assert in_flight(held, ["c2:t2"], now=NOW) == 1  # not ended: whatever the ledger shows


def test_an_ended_clip_is_in_flight_until_the_ledger_shows_its_settlement() -> None:
    ended = held_by(clip(ClipStatus.FAILED, completed_at=RECENT), updated_at=RECENT)

    # Its end is written, its settlement not yet: the ledger still counts it.
    assert in_flight(ended, ["c1:t1"], now=NOW) == 1
    assert in_flight(ended, ["c1:t1", "c2:t2"], now=NOW) == 0


def test_an_end_older_than_the_ledgers_memory_is_settled_or_never_will_be() -> None:
    ended = held_by(clip(ClipStatus.SUCCESS, completed_at=LONG_AGO), updated_at=RECENT)

    assert in_flight(ended, [], now=NOW) == 0


def test_an_end_no_full_list_shows_is_in_flight_until_its_settlement_is_known_made() -> None:
    """A busy tenant's list is full of keys of later ends within seconds: an end it no longer
    shows and whose project does not record it settled may still be settled (a crash between
    the two writes, then the message's redelivery), so it is in flight."""
    remembered = [Held(key=f"c{i}:t{i}", ended_at=RECENT) for i in range(SETTLED_KEPT)]
    pending = Held(key="old:t", ended_at=RECENT - timedelta(seconds=1))
    shown = {h.key for h in remembered}

    assert in_flight([*remembered, pending], shown, now=NOW) == 1
    # Its project records it settled: whatever the list forgot.
    assert in_flight([*remembered, pending], shown | {"old:t"}, now=NOW) == 0


def test_a_cancelled_clip_followed_in_attempts_holds_one_charge_freed_by_its_cancel() -> None:
    followed = Attempt(status=ClipStatus.PROCESSING, charge=charge("c2"))
    cancelled = clip(ClipStatus.CANCELLED, attempts={"t2": followed})

    held = held_by(cancelled, updated_at=RECENT)

    assert held == [Held(key="c2:t2", ended_at=RECENT)]
    assert in_flight(held, ["c2:t2"], now=NOW) == 0


def test_a_charge_a_cancel_moved_with_its_running_task_is_in_flight_until_its_follow_ends() -> None:
    followed = Attempt(status=ClipStatus.CANCELLED, charge=charge("c2"))
    cancelled = clip(ClipStatus.CANCELLED, charge=None, attempts={"t2": followed})

    held = held_by(cancelled, updated_at=RECENT)

    assert held == [Held(key="c2:t2", ended_at=None)]
    assert in_flight(held, [], now=NOW) == 1
    # Its follow's end recorded (Runware's failure here): in flight until settled, as any end.
    failed = followed.model_copy(
        update={"status": ClipStatus.FAILED, "completed_at": RECENT, "end_recorded": True}
    )
    ended = held_by(cancelled.model_copy(update={"attempts": {"t2": failed}}), updated_at=RECENT)
    assert ended == [Held(key="c2:t2", ended_at=RECENT)]
    assert in_flight(ended, ["c2:t2"], now=NOW) == 0


def test_a_charge_a_timed_out_clips_late_follow_holds_is_in_flight_until_that_follow_ends() -> None:
    followed = Attempt(status=ClipStatus.FAILED, charge=charge("c2"), follow_until=NOW)
    timed_out = clip(ClipStatus.FAILED, charge=None, attempts={"t2": followed})

    held = held_by(timed_out, updated_at=RECENT)

    assert held == [Held(key="c2:t2", ended_at=None)]
    assert in_flight(held, [], now=NOW) == 1
    ended = followed.model_copy(update={"completed_at": RECENT, "end_recorded": True})
    done = held_by(timed_out.model_copy(update={"attempts": {"t2": ended}}), updated_at=RECENT)
    assert done == [Held(key="c2:t2", ended_at=RECENT)]
    assert in_flight(done, ["c2:t2"], now=NOW) == 0


def test_a_charge_a_cancel_moved_with_a_queued_task_is_in_flight_until_its_chain_says() -> None:
    waiting = Attempt(status=ClipStatus.QUEUED, charge=charge("c2"))
    cancelled = clip(ClipStatus.CANCELLED, charge=None, attempts={"t2": waiting})

    # Queued (its chain's word to come), then processing (Runware took it): in flight.
    for status in (ClipStatus.QUEUED, ClipStatus.PROCESSING):
        attempt = waiting.model_copy(update={"status": status})
        held = held_by(cancelled.model_copy(update={"attempts": {"t2": attempt}}), updated_at=NOW)
        assert held == [Held(key="c2:t2", ended_at=None)]
    # Its chain ended it (never sent): in flight until that end's settlement shows.
    failed = waiting.model_copy(update={"status": ClipStatus.FAILED, "completed_at": RECENT})
    ended = cancelled.model_copy(update={"attempts": {"t2": failed}})
    assert held_by(ended, updated_at=NOW) == [Held(key="c2:t2", ended_at=RECENT)]
    # Found at Runware after all and followed again: its charge was freed by that end.
    refollowed = failed.model_copy(update={"lease": Lease(token="f1", until=NOW)})
    again = cancelled.model_copy(update={"attempts": {"t2": refollowed}})
    assert not again.charge_in_flight("t2")
    assert in_flight(held_by(again, updated_at=NOW), ["c2:t2"], now=NOW) == 0


def test_a_replaced_task_still_running_in_attempts_holds_its_own_charge() -> None:
    replaced = Attempt(status=ClipStatus.PROCESSING, charge=charge("c1"))
    retried = Attempt(status=ClipStatus.FAILED, charge=charge("c0"), completed_at=RECENT)
    took_a_video = clip(
        ClipStatus.SUCCESS, completed_at=RECENT, attempts={"t1": replaced, "t0": retried}
    )

    held = held_by(took_a_video, updated_at=RECENT)

    assert in_flight(held, ["c0:t0", "c2:t2"], now=NOW) == 1


def test_a_late_videos_key_shows_the_end_of_its_task_settled() -> None:
    late = Attempt(status=ClipStatus.SUCCESS, charge=charge("c1"), completed_at=RECENT, late=True)
    retried = clip(ClipStatus.QUEUED, attempts={"t1": late})

    held = held_by(retried, updated_at=RECENT)

    assert in_flight(held, ["c1:t1:late"], now=NOW) == 1  # the retry's own clip only


def test_clips_of_a_tenant_without_a_ledger_hold_nothing() -> None:
    assert held_by(clip(ClipStatus.QUEUED, charge=None), updated_at=RECENT) == []


def test_an_end_whose_settlement_is_owed_is_in_flight_until_made_however_old() -> None:
    """A reconciler's pass (or a cancel) marks its end's settlement owed on the project: should
    its writer have stopped before the ``$inc``, the settle sweep makes it, however late."""
    ended = clip(ClipStatus.SUCCESS, completed_at=LONG_AGO)

    owed = held_by(ended, updated_at=RECENT, owed={"c2:t2"})

    assert owed == [Held(key="c2:t2", ended_at=LONG_AGO, owed=True)]
    assert in_flight(owed, [], now=NOW) == 1
    assert in_flight(owed, ["c2:t2"], now=NOW) == 0  # made (recorded, or the list shows it)
    # Only the end's own key: a late video's owed billing frees nothing, nor does the end
    # of the same task under another charge.
    for other in ("c2:t2:late", "c9:t2"):
        assert in_flight(held_by(ended, updated_at=RECENT, owed={other}), [], now=NOW) == 0
