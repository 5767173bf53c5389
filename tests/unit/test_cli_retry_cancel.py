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
