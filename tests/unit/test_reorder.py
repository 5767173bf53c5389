"""Events a little out of ``seq`` order are put back in order before routing; nothing is lost,
and a gap that does not fill goes on after the hold."""

from __future__ import annotations

from reelflow_common.messages import Event
from reelflow_notifier.reorder import Reorder
from tests.builders import clip_updated

HOLD_S = 0.2


def reorder(**limits: int) -> Reorder[Event]:
    return Reorder(lambda found: found, hold_s=HOLD_S, **limits)


def seqs(events: list[Event]) -> list[int]:
    return [found.seq for found in events]


def test_events_in_order_go_on_at_once() -> None:
    arranging = reorder()

    arranged = [seqs(arranging.arrange(clip_updated(seq), now=0.0)) for seq in (4, 5, 6)]
    assert arranged == [[4], [5], [6]]
    assert arranging.next_release() is None


def test_an_event_ahead_waits_for_the_ones_before_it_then_all_go_in_order() -> None:
    arranging = reorder()
    arranging.arrange(clip_updated(1), now=0.0)

    assert arranging.arrange(clip_updated(4), now=0.01) == []
    assert arranging.arrange(clip_updated(3), now=0.02) == []
    assert arranging.next_release() == 0.01 + HOLD_S

    assert seqs(arranging.arrange(clip_updated(2), now=0.03)) == [2, 3, 4]
    assert arranging.next_release() is None
    assert seqs(arranging.arrange(clip_updated(5), now=0.04)) == [5]


def test_a_gap_that_does_not_fill_goes_on_after_the_hold_in_order() -> None:
    arranging = reorder()
    arranging.arrange(clip_updated(1), now=0.0)
    arranging.arrange(clip_updated(4), now=0.0)
    arranging.arrange(clip_updated(3), now=0.05)

    assert arranging.overdue(now=HOLD_S - 0.01) == []
    assert seqs(arranging.overdue(now=HOLD_S)) == [3, 4]
    # Expected from there on: the lost event 2 is the watchers' to fill from the log.
    assert seqs(arranging.arrange(clip_updated(5), now=0.3)) == [5]
    assert seqs(arranging.arrange(clip_updated(2), now=0.3)) == [
        2
    ]  # late: a duplicate, as it comes


def test_a_held_run_freed_part_way_keeps_its_deadline() -> None:
    arranging = reorder()
    arranging.arrange(clip_updated(1), now=0.0)
    arranging.arrange(clip_updated(3), now=0.0)
    arranging.arrange(clip_updated(5), now=0.0)

    assert seqs(arranging.arrange(clip_updated(2), now=0.1)) == [2, 3]
    assert arranging.next_release() == HOLD_S  # at most the hold, from the first held
    assert seqs(arranging.overdue(now=HOLD_S)) == [5]


def test_projects_are_ordered_apart() -> None:
    arranging = reorder()
    arranging.arrange(clip_updated(1, project_id="a"), now=0.0)
    arranging.arrange(clip_updated(7, project_id="b"), now=0.0)

    assert arranging.arrange(clip_updated(3, project_id="a"), now=0.0) == []
    assert seqs(arranging.arrange(clip_updated(8, project_id="b"), now=0.0)) == [8]
    assert seqs(arranging.reset()) == [3]
    # Nothing is expected after a reset (events were lost): the next goes on as it comes.
    assert seqs(arranging.arrange(clip_updated(9, project_id="b"), now=0.0)) == [9]


def test_a_forgotten_project_starts_again_from_the_next_event_that_comes() -> None:
    arranging = reorder()
    arranging.arrange(clip_updated(1), now=0.0)
    arranging.arrange(clip_updated(3), now=0.0)
    arranging.forget("p1")  # its events went unrouted for a while

    assert seqs(arranging.arrange(clip_updated(9), now=0.1)) == [9]
    assert arranging.next_release() is None


def test_past_the_most_held_in_all_the_oldest_hold_goes_on() -> None:
    arranging = reorder(max_held=2)
    arranging.arrange(clip_updated(1, project_id="a"), now=0.0)
    arranging.arrange(clip_updated(1, project_id="b"), now=0.0)

    assert arranging.arrange(clip_updated(3, project_id="a"), now=0.0) == []
    assert arranging.arrange(clip_updated(4, project_id="a"), now=0.0) == []
    assert seqs(arranging.arrange(clip_updated(3, project_id="b"), now=0.1)) == [
        3,
        4,
    ]  # a's, the oldest hold
    assert arranging.next_release() == 0.1 + HOLD_S  # b's 3 waits on


def test_a_release_never_moves_what_is_expected_back() -> None:
    arranging = reorder(max_projects=1)
    arranging.arrange(clip_updated(1, project_id="a"), now=0.0)
    arranging.arrange(clip_updated(3, project_id="a"), now=0.0)  # held
    arranging.arrange(
        clip_updated(1, project_id="b"), now=0.0
    )  # a is forgotten: the most projects is 1
    assert seqs(arranging.arrange(clip_updated(5, project_id="a"), now=0.1)) == [
        5
    ]  # first seen again

    assert seqs(arranging.overdue(now=HOLD_S)) == [3]
    assert seqs(arranging.arrange(clip_updated(6, project_id="a"), now=0.3)) == [
        6
    ]  # not held behind 4
