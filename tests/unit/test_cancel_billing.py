"""Which clips a cancel cancels that reelflow knows Runware may bill (``may_be_billed``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reelflow_api.schemas import ProjectCancelled
from reelflow_common.domain import ClipStatus
from reelflow_common.store import ClipState
from reelflow_common.store.cancel import may_be_billed
from reelflow_common.store.models import Attempt, Lease

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
WINDOW_S = 10.0


def clip(
    status: ClipStatus = ClipStatus.QUEUED, *, queued_s_ago: float = 60, **fields: Any
) -> ClipState:
    values: dict[str, object] = {
        "scene_index": 0,
        "task_uuid": "t0",
        "status": status,
        "queued_at": NOW - timedelta(seconds=queued_s_ago),
        "lease": Lease(token="k0", until=NOW + timedelta(minutes=5)),
    }
    return ClipState.model_validate(values | fields)


def billed(found: ClipState) -> bool:
    return may_be_billed(found, now=NOW, submit_read_after_s=WINDOW_S)


def test_a_processing_clip_may_be_billed() -> None:
    assert billed(clip(ClipStatus.PROCESSING))


def test_a_first_task_queued_within_the_read_window_may_be_submitted_unread() -> None:
    assert billed(clip(queued_s_ago=0.3))
    assert billed(clip(queued_s_ago=WINDOW_S))


def test_a_first_task_queued_longer_ago_is_read_before_its_submit() -> None:
    assert not billed(clip(queued_s_ago=WINDOW_S + 0.1))


def test_a_retry_task_is_read_before_every_submit_even_in_the_window() -> None:
    earlier = {"t-old": Attempt(status=ClipStatus.FAILED)}
    assert not billed(clip(queued_s_ago=0.3, task_uuid="t1", attempts=earlier))


@pytest.mark.parametrize(
    "fields",
    [
        {"waiting": {"code": "serverError", "message": "502"}},
        {"lease": None},
        {"lease": Lease(token="k0", until=NOW - timedelta(seconds=1))},
    ],
    ids=["waiting-after-an-outage", "no-lease", "lease-run-out"],
)
def test_a_queued_clip_whose_submit_may_have_gone_unanswered_may_be_billed(
    fields: dict[str, Any],
) -> None:
    assert billed(clip(ClipStatus.QUEUED, queued_s_ago=60, **fields))


@pytest.mark.parametrize("status", [ClipStatus.SUCCESS, ClipStatus.FAILED, ClipStatus.CANCELLED])
def test_a_terminal_clip_is_not_counted(status: ClipStatus) -> None:
    assert not billed(clip(status, queued_s_ago=0.1))


def test_a_submit_in_flight_under_its_lease_goes_uncounted_and_the_answer_does_not_hide_it() -> (
    None
):
    # A submit under way (redelivered after a crash, or tried again after an ambiguous error)
    # leaves nothing on the clip: it looks like one whose submit will read the cancel.
    assert not billed(clip(queued_s_ago=60))
    described = ProjectCancelled.model_fields["clips_may_be_billed"].description or ""
    assert "upper bound" not in described.replace("Not an upper bound", "")
    assert "in flight" in described
