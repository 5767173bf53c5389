"""``reelflow retry`` and ``cancel`` say what they did, and when there was nothing to do."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

import reelflow_cli.app as cli
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
        ("cancel", "completed", 0, "Nothing to cancel: no clip is queued or processing."),
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


def test_the_command_list_wraps_cancel_only_where_the_terminal_ends() -> None:
    """No line break of its source's: at 120 columns each command's summary is one row."""
    result = CliRunner().invoke(cli.app, ["--help"], env={"COLUMNS": "120"})

    panel = result.stdout.split("Commands")[1].splitlines()
    rows = [line.strip("│ ") for line in panel if line.startswith("│")]
    cancel = next(row for row in rows if row.startswith("cancel "))
    assert cancel.removeprefix("cancel").strip() == (
        "Stop every clip that has not finished. A clip Runware has started is billed all the same."
    )
    group = typer.main.get_command(cli.app)
    assert isinstance(group, typer.core.TyperGroup)
    assert sorted(row.split()[0] for row in rows) == sorted(group.commands)


@pytest.mark.parametrize(
    ("may_be_billed", "said"),
    [
        (
            2,
            "2 of the cancelled clips may still be billed: Runware had them, or may have"
            " (every clip, in the first seconds after creating).",
        ),
        (0, "3 clips cancelled."),
    ],
)
def test_cancel_says_how_many_clips_the_server_counts_as_maybe_billed(
    monkeypatch: pytest.MonkeyPatch, may_be_billed: int, said: str
) -> None:
    # A clip cancelled while queued may be on its way to Runware: submitted_at cannot tell,
    # the server's count (clips_may_be_billed) can.
    body = cancelled_answer(("cancelled", False), ("cancelled", False), ("cancelled", True)).json()
    body["clips_may_be_billed"] = may_be_billed

    result = invoke(monkeypatch, httpx.Response(202, json=body), "cancel", PROJECT_ID)

    assert result.exit_code == 0, result.stderr
    said_last = " ".join(result.stdout.split())
    assert said_last.endswith(said)
    assert ("billed" in said_last) == bool(may_be_billed)
