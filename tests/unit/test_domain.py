"""A project's final status follows from its clip counts; each clip state has one bucket."""

from __future__ import annotations

import pytest

from reelflow_common.domain import ClipStatus, Counts, ProjectStatus, final_project_status


def counts(*, completed: int = 0, pending: int = 0, failed: int = 0, cancelled: int = 0) -> Counts:
    total = completed + pending + failed + cancelled
    return Counts(
        total_clips=total, completed=completed, pending=pending, failed=failed, cancelled=cancelled
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (counts(completed=3), ProjectStatus.COMPLETED),
        (counts(completed=2, failed=1), ProjectStatus.PARTIAL),
        (counts(completed=1, cancelled=2), ProjectStatus.CANCELLED),
        (counts(failed=3), ProjectStatus.FAILED),
        (counts(failed=1, cancelled=2), ProjectStatus.CANCELLED),
        (counts(cancelled=3), ProjectStatus.CANCELLED),
        (counts(completed=2, pending=1), ProjectStatus.GENERATING),
        (counts(failed=2, pending=1), ProjectStatus.GENERATING),
    ],
)
def test_final_project_status_follows_the_counts(given: Counts, expected: ProjectStatus) -> None:
    assert final_project_status(given) is expected


def test_open_states_share_the_pending_bucket_and_each_end_has_its_own() -> None:
    assert {status: status.bucket for status in ClipStatus} == {
        ClipStatus.QUEUED: "pending",
        ClipStatus.PROCESSING: "pending",
        ClipStatus.SUCCESS: "completed",
        ClipStatus.FAILED: "failed",
        ClipStatus.CANCELLED: "cancelled",
    }


def test_counts_move_between_buckets() -> None:
    before = counts(pending=2, failed=1)

    assert before.moved("failed", "pending") == counts(pending=3)
    assert before.moved("pending", "pending") == before


def test_only_success_failed_and_cancelled_are_terminal() -> None:
    terminal = {status for status in ClipStatus if status.is_terminal}

    assert terminal == {ClipStatus.SUCCESS, ClipStatus.FAILED, ClipStatus.CANCELLED}
