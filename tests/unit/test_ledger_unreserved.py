"""What a clip's tasks that hold no reservation count on a new ledger (``unreserved_usd``):
each such task once, a reserved one never (its reservation and settlements count it)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reelflow_common.accounting.ledger import Charge
from reelflow_common.domain import ClipStatus
from reelflow_common.store.models import Attempt, ClipState
from reelflow_common.store.transitions import charges
from reelflow_common.store.unreserved import unreserved_usd

ESTIMATE = 0.25
CHARGE = Charge(id="c", usd=ESTIMATE, day="2026-12-05", month="2026-12")
OTHER = Charge(id="o", usd=ESTIMATE, day="2026-12-05", month="2026-12")
#: reserved without an estimate (an in-flight limit only, before every reservation held one)
FREE = Charge(id="f", usd=0.0, day="2026-12-05", month="2026-12")
#: the end of a late follow (a timed-out clip's task followed on)
T = datetime(2026, 12, 6, tzinfo=UTC)


def clip(status: ClipStatus, **fields: object) -> ClipState:
    return ClipState.model_validate({"scene_index": 0, "task_uuid": "t", "status": status} | fields)


@pytest.mark.parametrize(
    ("state", "usd"),
    [
        pytest.param(clip(ClipStatus.SUCCESS, cost=0.4), 0.4, id="a-video-at-its-cost"),
        pytest.param(clip(ClipStatus.SUCCESS), ESTIMATE, id="an-unpriced-video-never-0"),
        pytest.param(clip(ClipStatus.QUEUED), ESTIMATE, id="queued"),
        pytest.param(clip(ClipStatus.PROCESSING), ESTIMATE, id="processing"),
        pytest.param(clip(ClipStatus.FAILED), 0.0, id="failed"),
        pytest.param(clip(ClipStatus.PROCESSING, charge=CHARGE), 0.0, id="reserved"),
        pytest.param(
            clip(
                ClipStatus.PROCESSING,
                charge=CHARGE,
                attempts={"old": Attempt(status=ClipStatus.SUCCESS, cost=0.3)},
            ),
            # Its video settles on the clip's charge (``charges.attempt_end``): the
            # repair path of any duplicate of it bills it there, so the count must not.
            0.0,
            id="an-earlier-video-without-a-charge-is-the-clips-charges-to-bill",
        ),
        pytest.param(
            clip(
                ClipStatus.CANCELLED,
                attempts={"t": Attempt(status=ClipStatus.CANCELLED)},
            ),
            ESTIMATE,
            id="a-cancelled-task-runware-still-runs-once",
        ),
        pytest.param(
            clip(
                ClipStatus.CANCELLED,
                attempts={"t": Attempt(status=ClipStatus.PROCESSING, charge=CHARGE)},
            ),
            0.0,
            id="a-cancelled-task-whose-charge-moved",
        ),
        pytest.param(
            clip(
                ClipStatus.FAILED,
                attempts={"t": Attempt(status=ClipStatus.SUCCESS, cost=0.2, late=True)},
            ),
            0.2,
            id="a-late-video-once",
        ),
        pytest.param(
            clip(
                ClipStatus.SUCCESS,
                cost=0.25,
                charge=CHARGE,
                attempts={"p": Attempt(status=ClipStatus.SUCCESS, cost=0.3, late=True)},
            ),
            0.0,
            id="an-unreserved-tasks-late-video-billed-on-the-retrys-charge",
        ),
        pytest.param(
            clip(
                ClipStatus.SUCCESS,
                cost=0.4,
                charge=CHARGE,
                attempts={"r": Attempt(status=ClipStatus.PROCESSING)},
            ),
            0.0,
            id="a-task-replaced-under-the-code-before-whose-video-the-clips-charge-bills",
        ),
        pytest.param(
            clip(
                ClipStatus.SUCCESS,
                cost=0.25,
                attempts={"p": Attempt(status=ClipStatus.SUCCESS, cost=0.3, late=True)},
            ),
            0.55,
            id="a-late-video-with-no-charge-to-bill-it-on",
        ),
        pytest.param(
            clip(
                ClipStatus.FAILED, attempts={"t": Attempt(status=ClipStatus.FAILED, follow_until=T)}
            ),
            ESTIMATE,
            id="a-timed-out-task-followed-late-runware-may-still-bill",
        ),
        pytest.param(
            clip(
                ClipStatus.FAILED,
                attempts={
                    "t": Attempt(status=ClipStatus.FAILED, follow_until=T, end_recorded=True)
                },
            ),
            0.0,
            id="a-late-follow-ended-without-a-video",
        ),
        pytest.param(
            clip(
                ClipStatus.FAILED,
                attempts={"t": Attempt(status=ClipStatus.FAILED, follow_until=T, charge=CHARGE)},
            ),
            0.0,
            id="a-late-follow-holding-the-clips-charge",
        ),
        pytest.param(clip(ClipStatus.PROCESSING, charge=FREE), ESTIMATE, id="held-at-0"),
        pytest.param(clip(ClipStatus.SUCCESS, charge=FREE), ESTIMATE, id="settled-at-0-unpriced"),
        pytest.param(
            clip(ClipStatus.SUCCESS, charge=FREE, cost=0.4), 0.0, id="settled-at-0-priced"
        ),
        pytest.param(clip(ClipStatus.FAILED, charge=FREE), 0.0, id="freed-at-0"),
    ],
)
def test_a_task_without_a_reservation_counts_once_and_a_reserved_one_never(
    state: ClipState, usd: float
) -> None:
    assert unreserved_usd(state, ESTIMATE) == pytest.approx(usd)


@pytest.mark.parametrize(
    "state",
    [
        clip(ClipStatus.SUCCESS, cost=0.2, charge=CHARGE),
        clip(ClipStatus.FAILED, charge=CHARGE),
        clip(
            ClipStatus.SUCCESS,
            cost=0.25,
            charge=CHARGE,
            attempts={"p": Attempt(status=ClipStatus.SUCCESS, cost=0.3, late=True)},
        ),
        clip(
            ClipStatus.FAILED,
            charge=CHARGE,
            attempts={
                "p": Attempt(status=ClipStatus.SUCCESS, cost=0.3, late=True, charge=OTHER),
                "t": Attempt(status=ClipStatus.SUCCESS, cost=0.2, late=True, charge=CHARGE),
            },
        ),
        clip(
            ClipStatus.CANCELLED,
            attempts={
                "t": Attempt(status=ClipStatus.SUCCESS, cost=0.2, charge=CHARGE),
                "p": Attempt(status=ClipStatus.SUCCESS, cost=0.3, late=True),
            },
        ),
    ],
)
def test_every_end_settles_on_the_charge_that_counts_its_task_and_no_other_is_counted(
    state: ClipState,
) -> None:
    """One rule: where a task's end settles is the charge that keeps it off the count."""
    tasks = {state.task_uuid, *state.attempts}
    for task_uuid in tasks:
        for charge, _ in charges.settlements(state, task_uuid):
            assert charges.counted_on(state, task_uuid) == charge
    uncounted = [task for task in tasks if charges.counted_on(state, task) is None]
    assert unreserved_usd(state, ESTIMATE) == pytest.approx(
        sum(
            (state.cost or 0.0) if task == state.task_uuid else (state.attempts[task].cost or 0.0)
            for task in uncounted
            if (state.status if task == state.task_uuid else state.attempts[task].status)
            is ClipStatus.SUCCESS
        )
    )
