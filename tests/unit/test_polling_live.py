"""The live planner's delays on the checks' wait-queue ladder."""

from __future__ import annotations

import pytest

from reelflow_common.backoff import Backoff
from reelflow_common.polling.book import CompletionBook
from reelflow_common.polling.learned import LearnedPlanner
from reelflow_common.polling.live import OnLadder
from reelflow_common.polling.plan import ClipProfile
from reelflow_common.polling.reference import FixedSchedulePlanner
from reelflow_common.polling.schedule import Plan

LADDER = Backoff(first_s=1.0, cap_s=300.0, factor=1.2)
VEO = ClipProfile("google:3@3", duration=4, width=1280, height=720)


def wants(delay_s: float) -> FixedSchedulePlanner:
    """A planner that wants ``delay_s`` for the first check and the next one from 0 s."""
    return FixedSchedulePlanner(Plan((delay_s,), delay_s))


def rungs_s() -> list[float]:
    return [ms / 1000 for ms in LADDER.rungs_ms()]


@pytest.mark.parametrize("wanted_s", [0.2, 3.0, 17.0, 40.0, 150.0])
def test_a_delay_goes_on_the_nearest_rung(wanted_s: float) -> None:
    planner = OnLadder(wants(wanted_s), LADDER, bound_s=60.0)

    delay = planner.next_check_s(VEO, elapsed_s=0.0, progress=None)

    assert delay in rungs_s()
    assert delay == LADDER.nearest_rung_ms(wanted_s) / 1000
    assert planner.first_check_s(VEO) == delay


def test_a_delay_within_the_bound_never_lands_past_it() -> None:
    bound = 63.0  # between two rungs, nearer the one above (66.2 s)
    assert LADDER.nearest_rung_ms(bound) / 1000 > bound

    delay = OnLadder(wants(bound), LADDER, bound_s=bound).next_check_s(
        VEO, elapsed_s=0.0, progress=None
    )

    assert delay <= bound
    assert delay == max(r for r in rungs_s() if r <= bound)


def test_a_delay_past_the_bound_a_safety_net_keeps_its_nearest_rung() -> None:
    delay = OnLadder(wants(290.0), LADDER, bound_s=60.0).next_check_s(
        VEO, elapsed_s=0.0, progress=None
    )

    assert delay == LADDER.nearest_rung_ms(290.0) / 1000


def test_completions_reach_the_planner_underneath() -> None:
    book = CompletionBook()
    OnLadder(LearnedPlanner(book), LADDER, bound_s=60.0).observe_completion(
        VEO, elapsed_s=90.0, since_s=80.0, since_progress=70
    )

    [counted] = book.take_pending().values()
    assert counted.total == pytest.approx(1.0)
