"""What a clip's tasks that hold no reservation count on a new ledger (``unreserved_usd``):
each such task once, a reserved one never (its reservation and settlements count it)."""

from __future__ import annotations

import pytest

from reelflow_common.accounting.ledger import Charge
from reelflow_common.domain import ClipStatus
from reelflow_common.store.models import Attempt, ClipState
from reelflow_common.store.unreserved import unreserved_usd

ESTIMATE = 0.25
CHARGE = Charge(id="c", usd=ESTIMATE, day="2026-12-05", month="2026-12")


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
            0.3,
            id="a-retry-reserved-its-earlier-video-not",
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
    ],
)
def test_a_task_without_a_reservation_counts_once_and_a_reserved_one_never(
    state: ClipState, usd: float
) -> None:
    assert unreserved_usd(state, ESTIMATE) == pytest.approx(usd)
