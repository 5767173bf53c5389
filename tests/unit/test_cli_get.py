"""``reelflow get``: each finished clip's whole video link, reelflow's copy first."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

import reelflow_cli.app as cli
from reelflow_cli.client import Client
from tests.unit.cli_runner import API_URL, invoke

STORED = (
    "/v1/videos/videos/3f6c1a2e-51e0-4b88-9c1a-2d3e4f5a6b7c/0/4e2a9d1c2f0e.mp4"
    "?expires=1796428800&signature=9d1c2f0e4e2a3f6c1a2e51e04b889c1a"
)
RUNWARE = "https://vm.runware.ai/video/ws/5/vi/9d1c2f0e-4e2a-3f6c-1a2e-51e04b889c1a.mp4"
COPIED_TASK = "c4738360-4dd8-4bad-84cd-fee2adfe0abc"
NOT_COPIED_TASK = "7a1f0c2e-9b3d-4e5f-8a6b-1c2d3e4f5a6b"


def clip(scene_index: int, task_uuid: str, **fields: Any) -> dict[str, Any]:
    return {"scene_index": scene_index, "task_uuid": task_uuid, "status": "success"} | fields


PROJECT_ID = "3f6c1a2e-51e0-4b88-9c1a-2d3e4f5a6b7c"
PROJECT = {
    "project_id": PROJECT_ID,
    "title": "Trip to Lisbon",
    "status": "completed",
    "completed": 2,
    "pending": 0,
    "failed": 0,
    "total_clips": 2,
    "results": [
        clip(0, COPIED_TASK, video_url=RUNWARE, stored_url=STORED),
        clip(1, NOT_COPIED_TASK, video_url=RUNWARE),
    ],
}


def test_a_clip_shows_the_whole_link_of_reelflows_copy_else_runwares(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = invoke(monkeypatch, httpx.Response(200, json=PROJECT), "get", PROJECT_ID)

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    [copied] = [line for line in lines if COPIED_TASK in line]
    [not_copied] = [line for line in lines if NOT_COPIED_TASK in line]
    assert copied.split()[-1] == f"{API_URL}{STORED}"
    assert not_copied.split()[-1] == RUNWARE


def test_a_clip_is_numbered_by_its_scene_index_as_the_api_and_the_admin_tool_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = invoke(monkeypatch, httpx.Response(200, json=PROJECT), "get", PROJECT_ID)

    lines = result.stdout.splitlines()
    scenes = [line.split()[0] for line in lines if COPIED_TASK in line or NOT_COPIED_TASK in line]
    assert scenes == ["0", "1"]


def test_a_projects_cost_is_written_as_the_usage_report_writes_dollars(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    costly = PROJECT | {"cost": {"usd": 1234.5, "known": 2, "unknown": 1}}

    result = invoke(monkeypatch, httpx.Response(200, json=costly), "get", PROJECT_ID)

    assert result.exit_code == 0, result.stderr
    assert "cost $1,234.50 + 1 unpriced" in result.stdout.splitlines()


SCENES = {
    "project_id": PROJECT_ID,
    "title": "Trip to Lisbon",
    "model": "google:3@3",
    "scenes": [
        {
            "scene_index": 0,
            "prompt": "tram [bold]climbing[/] a street\nat dawn \x1b]52;c;bad\x07",
            "negative_prompt": "blur",
            "duration": 4.0,
            "width": 1280,
            "height": 720,
        },
        {
            "scene_index": 1,
            "prompt": "sunset over the river",
            "duration": 6.0,
            "width": 1920,
            "height": 1080,
        },
    ],
}


def invoke_routed(
    monkeypatch: pytest.MonkeyPatch, answers: dict[str, httpx.Response], *args: str
) -> Result:
    """``reelflow ARGS`` against an API that answers each path as ``answers`` says (else 404)."""

    def answer(request: httpx.Request) -> httpx.Response:
        problem = {"status": 404, "title": "Not Found", "detail": "No such path."}
        return answers.get(request.url.path) or httpx.Response(404, json=problem)

    def client() -> Client:
        return Client(API_URL, "rf_test", transport=httpx.MockTransport(answer))

    monkeypatch.setattr(cli, "_client", client)
    result = CliRunner().invoke(cli.app, list(args))
    assert "Traceback" not in result.stdout + result.stderr
    return result


def test_get_shows_what_each_scene_asked_for_as_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {
        f"/v1/projects/{PROJECT_ID}": httpx.Response(200, json=PROJECT),
        f"/v1/projects/{PROJECT_ID}/scenes": httpx.Response(200, json=SCENES),
    }

    result = invoke_routed(monkeypatch, answers, "get", PROJECT_ID)

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-3:] == [
        "scenes (model google:3@3):",
        # Brackets are text, a line break stays on the line, an escape is never sent.
        "scene 0 (4 s, 1280x720): tram [bold]climbing[/] a street\\nat dawn"
        " \\x1b]52;c;bad\\x07 (negative: blur)",
        "scene 1 (6 s, 1920x1080): sunset over the river",
    ]
    assert "\x1b" not in result.stdout


def test_get_against_a_server_without_scenes_shows_the_status_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {f"/v1/projects/{PROJECT_ID}": httpx.Response(200, json=PROJECT)}

    result = invoke_routed(monkeypatch, answers, "get", PROJECT_ID)

    assert result.exit_code == 0, result.stderr
    assert COPIED_TASK in result.stdout
    assert "scenes" not in result.stdout
    assert result.stderr == ""


def test_get_shows_the_status_when_the_scenes_cannot_be_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    busy = {"status": 503, "title": "Service Unavailable", "detail": "MongoDB is away."}
    answers = {
        f"/v1/projects/{PROJECT_ID}": httpx.Response(200, json=PROJECT),
        f"/v1/projects/{PROJECT_ID}/scenes": httpx.Response(503, json=busy),
    }

    result = invoke_routed(monkeypatch, answers, "get", PROJECT_ID)

    assert result.exit_code == 0, result.stderr
    assert COPIED_TASK in result.stdout
    assert "prompts not shown" in result.stderr


def test_get_json_is_the_status_as_the_api_answers_it(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {
        f"/v1/projects/{PROJECT_ID}": httpx.Response(200, json=PROJECT),
        f"/v1/projects/{PROJECT_ID}/scenes": httpx.Response(200, json=SCENES),
    }

    result = invoke_routed(monkeypatch, answers, "get", PROJECT_ID, "--json")

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == PROJECT


def test_get_shows_a_broken_servers_scenes_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = {"scenes": [{"scene_index": 0, "prompt": "a fox", "duration": "4"}, "junk"]}
    answers = {
        f"/v1/projects/{PROJECT_ID}": httpx.Response(200, json=PROJECT),
        f"/v1/projects/{PROJECT_ID}/scenes": httpx.Response(200, json=broken),
    }

    result = invoke_routed(monkeypatch, answers, "get", PROJECT_ID)

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == ["scenes (model ?):", "scene 0 (? s, ?x?): a fox"]
