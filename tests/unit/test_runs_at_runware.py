"""Which failed clip's task a retry watches again rather than buy another: its own task, found
at Runware after the clip failed and still followed (``ClipState.runs_at_runware``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reelflow_common.domain import ClipStatus
from reelflow_common.store import ClipState

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
LEASE = {"token": "follow", "until": NOW + timedelta(minutes=10)}
FOLLOW = {"status": "failed", "submitted_at": NOW, "lease": LEASE}


def failed_clip(own_attempt: dict[str, object] | None) -> ClipState:
    attempts = {} if own_attempt is None else {"t": own_attempt}
    return ClipState.model_validate(
        {
            "scene_index": 0,
            "task_uuid": "t",
            "status": "failed",
            "error": {"code": "budgetExceeded", "message": "spent"},
            "attempts": attempts,
        }
    )


def test_a_follow_of_the_clips_own_task_is_watched_again() -> None:
    clip = failed_clip(FOLLOW)

    assert clip.runs_at_runware() == clip.attempts["t"]


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(None, id="no-entry"),
        pytest.param(FOLLOW | {"lease": None}, id="not-followed"),
        pytest.param(FOLLOW | {"end_recorded": True}, id="its-end-recorded"),
        pytest.param(FOLLOW | {"submitted_at": None}, id="never-found-submitted"),
        pytest.param(FOLLOW | {"status": "processing"}, id="a-stray-of-an-older-release"),
    ],
)
def test_anything_else_buys_a_new_task(entry: dict[str, object] | None) -> None:
    assert failed_clip(entry).runs_at_runware() is None


def test_an_open_clip_is_not_retried() -> None:
    clip = failed_clip(FOLLOW).model_copy(update={"status": ClipStatus.PROCESSING})

    assert clip.runs_at_runware() is None
