"""``reelflow retry`` and ``cancel`` say what they did, and when there was nothing to do."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.unit.cli_runner import invoke

PROJECT_ID = "3f6c1a2e-51e0-4b88-9c1a-2d3e4f5a6b7c"


def answer(status: str, clips_changed: int) -> httpx.Response:
    body: dict[str, Any] = {
        "project_id": PROJECT_ID,
        "title": "Trip to Lisbon",
        "status": status,
        "completed": 2,
        "pending": 0,
        "failed": 0,
        "total_clips": 2,
        "clips_changed": clips_changed,
        "results": [],
    }
    return httpx.Response(202, json=body)


@pytest.mark.parametrize(
    ("command", "status", "changed", "said"),
    [
        ("retry", "completed", 0, "Nothing to retry: no clip failed."),
        ("retry", "generating", 2, "2 clips retried."),
        ("cancel", "completed", 0, "Nothing to cancel: every clip had finished."),
        ("cancel", "cancelled", 1, "1 clip cancelled."),
    ],
)
def test_the_last_line_says_what_the_call_changed(
    monkeypatch: pytest.MonkeyPatch, command: str, status: str, changed: int, said: str
) -> None:
    result = invoke(monkeypatch, answer(status, changed), command, PROJECT_ID)

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == said


def cancelled_answer(*statuses: tuple[str, bool]) -> httpx.Response:
    """A cancel's answer with ``results``: each clip's status and whether it had been
    submitted to Runware."""
    body = answer("cancelled", sum(status == "cancelled" for status, _ in statuses)).json()
    body["results"] = [
        {"task_uuid": f"t{index}", "scene_index": index, "status": status}
        | ({"submitted_at": "2026-12-01T10:00:00.125000Z"} if submitted else {})
        for index, (status, submitted) in enumerate(statuses)
    ]
    return httpx.Response(202, json=body)


def test_cancel_says_a_clip_runware_had_started_is_billed_all_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = cancelled_answer(("success", True), ("cancelled", True), ("cancelled", False))

    result = invoke(monkeypatch, started, "cancel", PROJECT_ID)

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == [
        "2 clips cancelled.",
        "1 of the cancelled clips had started at Runware: billed all the same.",
    ]


def test_cancel_of_clips_never_submitted_says_nothing_of_billing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queued = cancelled_answer(("success", True), ("cancelled", False))

    result = invoke(monkeypatch, queued, "cancel", PROJECT_ID)

    assert result.stdout.splitlines()[-1] == "1 clip cancelled."
    assert "billed" not in result.stdout


def test_a_cancel_answer_that_cannot_tell_gets_the_billing_note_all_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = answer("cancelled", 1).json()
    del body["results"]

    result = invoke(monkeypatch, httpx.Response(202, json=body), "cancel", PROJECT_ID)

    assert result.stdout.splitlines()[-1] == "A clip Runware had started is billed all the same."


def test_cancels_help_says_a_started_clip_is_billed(monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke(monkeypatch, answer("cancelled", 0), "cancel", "--help")

    assert "A clip Runware has started is billed all the same." in " ".join(result.stdout.split())
