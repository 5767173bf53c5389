"""``reelflow list`` on a screen of any width: the ids whole, what gives way first; in a pipe,
whole lines."""

from __future__ import annotations

import io

import httpx
import pytest
from rich.console import Console

from reelflow_cli.render import project_list
from tests.unit.cli_runner import invoke

PROJECT_ID = "c4738360-4dd8-4bad-84cd-fee2adfe0abc"
ITEM = {
    "project_id": PROJECT_ID,
    "title": "Trip to Lisbon, with a title longer than a column",
    "status": "generating",
    "completed": 1,
    "total_clips": 3,
    "failed": 1,
    "created_at": "2026-12-04T10:11:12Z",
}


def listed(width: int, *, terminal: bool = True) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=terminal, color_system=None)
    project_list(console, {"items": [ITEM]})
    return out.getvalue().splitlines()


@pytest.mark.parametrize(
    ("width", "columns", "cells"),
    [
        (200, ["project", "title", "status", "clips", "created"], ["1/3", "2026-12-04 10:11 UTC"]),
        (100, ["project", "title", "status", "clips", "created"], ["Trip", "10:11 UTC"]),
        (90, ["project", "title", "status", "clips", "created"], ["Trip", "2026-12-04"]),
        (80, ["project", "title", "status", "clips"], ["Trip", "1/3"]),
        (70, ["project", "status", "clips"], ["1/3"]),
        (40, ["project", "status"], []),
    ],
)
def test_the_id_and_the_status_stay_whole_and_the_rest_gives_way(
    width: int, columns: list[str], cells: list[str]
) -> None:
    header, row = listed(width)

    assert header.split() == columns
    assert row.startswith(f"{PROJECT_ID}  ")
    assert "generating" in row.split()
    assert all(cell in row for cell in cells), row
    assert width < 48 or len(row.rstrip()) <= width


def test_in_a_pipe_every_line_is_whole_whatever_the_width() -> None:
    header, row = listed(80, terminal=False)

    assert header.split() == ["project", "title", "status", "clips", "created"]
    assert f"  {ITEM['title']}  " in row
    assert row.endswith("1/3 done, 1 failed  2026-12-04 10:11 UTC")


def test_cancelled_clips_are_listed_apart_from_failed_ones() -> None:
    # As the API lists a cancelled project: failed counts the cancelled clips too.
    cancelled = ITEM | {"status": "cancelled", "failed": 2, "cancelled": 2}
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False, color_system=None)
    project_list(console, {"items": [cancelled]})

    assert "1/3 done, 2 cancelled  " in out.getvalue()
    assert "failed" not in out.getvalue()


@pytest.mark.parametrize(
    ("status", "command"),
    [
        (None, "More: reelflow list --cursor c2"),
        ("completed", "More: reelflow list --status completed --cursor c2"),
    ],
)
def test_the_next_page_command_keeps_the_status_filter(status: str | None, command: str) -> None:
    # The API binds a cursor to its filter: the next page without it is a 422.
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False, color_system=None)
    project_list(console, {"items": [ITEM], "next_cursor": "c2"}, status=status)

    assert out.getvalue().splitlines()[-1] == command


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["--limit", "2"], "More: reelflow list --limit 2 --cursor c2"),
        (
            ["--status", "completed", "--limit", "2"],
            "More: reelflow list --status completed --limit 2 --cursor c2",
        ),
        ([], "More: reelflow list --cursor c2"),
    ],
)
def test_the_next_page_command_keeps_the_page_size(
    monkeypatch: pytest.MonkeyPatch, args: list[str], command: str
) -> None:
    # Without --limit the next page would be 20 rows, not the size asked for.
    page = httpx.Response(200, json={"items": [ITEM], "next_cursor": "c2"})

    result = invoke(monkeypatch, page, "list", *args)

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == command


@pytest.mark.parametrize(
    ("created_at", "shown"),
    [
        ("2026-12-04T10:11:12Z", "2026-12-04 10:11 UTC"),
        ("2026-12-04T11:11:12+01:00", "2026-12-04 10:11 UTC"),  # the same moment, in UTC
        ("not a time", "not a time"),
    ],
)
def test_a_creation_time_is_said_in_utc(created_at: str, shown: str) -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False, color_system=None)
    project_list(console, {"items": [ITEM | {"created_at": created_at}]})

    assert out.getvalue().splitlines()[1].endswith(f"  {shown}")
