"""``reelflow download``: the finished clips' videos, and with ``--earlier`` the billed videos of
a scene's earlier tasks too, each from reelflow's copy when it has one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

import reelflow_cli.app as cli
from tests.unit.cli_runner import API_URL, invoke

PROJECT_ID = "3f6c1a2e-51e0-4b88-9c1a-2d3e4f5a6b7c"
CLIP_TASK = "c4738360-4dd8-4bad-84cd-fee2adfe0abc"
EARLIER_TASK = "7a1f0c2e-9b3d-4e5f-8a6b-1c2d3e4f5a6b"
FAILED_TASK = "0b9e8d7c-6a5f-4e3d-8c2b-1a0f9e8d7c6b"
KEPT = "/v1/videos/videos/3f6c/0/earlier.mp4?expires=1796428800&signature=9d1c"
RUNWARE = "https://vm.runware.ai/video/ws/5/vi/clip.mp4"

PROJECT = {
    "project_id": PROJECT_ID,
    "title": "Trip to Lisbon",
    "status": "completed",
    "results": [
        {
            "scene_index": 0,
            "task_uuid": CLIP_TASK,
            "status": "success",
            "video_url": RUNWARE,
            "attempts": [
                {"task_uuid": FAILED_TASK, "status": "failed", "error": {"code": "x"}},
                # A retry's earlier task whose video came after all: billed, kept by reelflow.
                {
                    "task_uuid": EARLIER_TASK,
                    "status": "success",
                    "video_url": "https://vm.runware.ai/video/ws/5/vi/old.mp4",
                    "stored_url": KEPT,
                },
            ],
        }
    ],
}


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """What the command downloaded: target file name -> the URL it came from."""
    got: dict[str, str] = {}

    def download(url: str, target: Path) -> int:
        got[target.name] = url
        return 3

    monkeypatch.setattr(cli, "download", download)
    return got


def test_only_the_clips_own_videos_by_default(
    monkeypatch: pytest.MonkeyPatch, fetched: dict[str, str], tmp_path: Path
) -> None:
    answer = httpx.Response(200, json=PROJECT)
    result = invoke(monkeypatch, answer, "download", PROJECT_ID, str(tmp_path))

    assert result.exit_code == 0, result.stderr
    assert fetched == {f"scene-00-{CLIP_TASK}.mp4": RUNWARE}


def test_earlier_also_saves_an_earlier_tasks_billed_video_from_reelflows_copy(
    monkeypatch: pytest.MonkeyPatch, fetched: dict[str, str], tmp_path: Path
) -> None:
    answer = httpx.Response(200, json=PROJECT)
    args = ("download", PROJECT_ID, str(tmp_path), "--earlier", "--json")
    result = invoke(monkeypatch, answer, *args)

    assert result.exit_code == 0, result.stderr
    assert fetched == {
        f"scene-00-{CLIP_TASK}.mp4": RUNWARE,
        f"scene-00-earlier-{EARLIER_TASK}.mp4": f"{API_URL}{KEPT}",
    }
    report = json.loads(result.stdout)
    assert [(item["task_uuid"], item["earlier"]) for item in report["saved"]] == [
        (CLIP_TASK, False),
        (EARLIER_TASK, True),
    ]
    assert report["not_ready"] == 0


def _with_clip(clip: dict[str, object]) -> dict[str, Any]:
    """PROJECT with one more finished clip, as a hostile or broken server names it."""
    return {**PROJECT, "results": [*PROJECT["results"], clip | {"status": "success"}]}


@pytest.mark.parametrize(
    ("clip", "said"),
    [
        # A path in the task UUID: with DIR/scene-01-../ existing it wrote to DIR/../
        (
            {"scene_index": 1, "task_uuid": "../../escaped"},
            'skipped a video of scene 1: the server sent task_uuid "../../escaped", not a UUID',
        ),
        (
            {"scene_index": 1, "task_uuid": f"{CLIP_TASK}/../../x"},
            "not a UUID",
        ),
        ({"scene_index": 1, "task_uuid": "x" * 5000}, 'task_uuid "xxxxxxxx'),
        ({"scene_index": 1, "task_uuid": 7}, "the server sent task_uuid 7, not a UUID"),
        ({"scene_index": 1}, "the server sent task_uuid null, not a UUID"),
        (
            {"scene_index": "1", "task_uuid": EARLIER_TASK},
            'skipped a video: the server sent scene_index "1", not a scene number',
        ),
        ({"scene_index": True, "task_uuid": EARLIER_TASK}, "scene_index true, not a scene"),
        ({"scene_index": -1, "task_uuid": EARLIER_TASK}, "scene_index -1, not a scene"),
        ({"scene_index": 10**400, "task_uuid": EARLIER_TASK}, "scene_index 1000000000"),
        ({"scene_index": 1.5, "task_uuid": EARLIER_TASK}, "scene_index 1.5, not a scene"),
    ],
)
def test_a_clip_the_server_names_oddly_is_skipped_and_the_command_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clip: dict[str, object], said: str
) -> None:
    directory = tmp_path / "videos"
    (directory / "scene-01-..").mkdir(parents=True)  # so a "/../" in a name would resolve
    written: list[Path] = []

    def download(url: str, target: Path) -> int:
        written.append(target)
        return 3

    monkeypatch.setattr(cli, "download", download)
    answer = httpx.Response(200, json=_with_clip(clip | {"video_url": RUNWARE}))
    result = invoke(monkeypatch, answer, "download", PROJECT_ID, str(directory))

    # The good clip is saved, the odd one is not, and the exit code says so.
    assert written == [directory / f"scene-00-{CLIP_TASK}.mp4"]
    assert result.exit_code == 6
    warning, error = result.stderr.strip().splitlines()
    assert warning.startswith("warning: skipped ")
    assert said in warning
    assert len(warning) < 250  # a long value is cut short
    assert error == (
        "error: 1 video(s) not downloaded: the server's answer named them with an invalid"
        " scene_index or task_uuid"
    )
    assert f"saved {directory / f'scene-00-{CLIP_TASK}.mp4'} (3 bytes)" in result.stdout


def test_with_json_a_clip_the_server_names_oddly_leaves_one_json_line_on_stderr(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(cli, "download", lambda url, target: 3)
    clip = {"scene_index": -1, "task_uuid": EARLIER_TASK, "video_url": RUNWARE}
    answer = httpx.Response(200, json=_with_clip(clip))
    result = invoke(monkeypatch, answer, "download", PROJECT_ID, str(tmp_path), "--json")

    assert result.exit_code == 6
    [line] = result.stderr.strip().splitlines()
    assert json.loads(line)["detail"].startswith("1 video(s) not downloaded")
    assert json.loads(result.stdout)["saved"][0]["scene_index"] == 0


def test_a_task_uuid_is_named_in_its_canonical_form(
    monkeypatch: pytest.MonkeyPatch, fetched: dict[str, str], tmp_path: Path
) -> None:
    clip = {"scene_index": 1, "task_uuid": "{" + EARLIER_TASK.upper() + "}", "video_url": RUNWARE}
    answer = httpx.Response(200, json=_with_clip(clip))
    result = invoke(monkeypatch, answer, "download", PROJECT_ID, str(tmp_path), "--json")

    assert result.exit_code == 0, result.stderr
    assert sorted(fetched) == [f"scene-00-{CLIP_TASK}.mp4", f"scene-01-{EARLIER_TASK}.mp4"]
    assert [item["task_uuid"] for item in json.loads(result.stdout)["saved"]] == [
        CLIP_TASK,
        EARLIER_TASK,
    ]


def test_a_file_that_cannot_be_written_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / f"scene-00-{CLIP_TASK}.mp4").mkdir()  # a directory where the file goes

    def download(url: str, target: Path) -> int:
        target.with_name(target.name + ".part").write_bytes(b"mp4")
        target.with_name(target.name + ".part").replace(target)
        return 3

    monkeypatch.setattr(cli, "download", download)
    answer = httpx.Response(200, json=PROJECT)
    result = invoke(monkeypatch, answer, "download", PROJECT_ID, str(tmp_path))

    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: cannot write {tmp_path / f'scene-00-{CLIP_TASK}.mp4'}:"
    )


@pytest.mark.parametrize(
    ("status", "said"),
    [
        ("failed", "error: no finished clip to download: the project ended (failed)"),
        ("cancelled", "error: no finished clip to download: the project ended (cancelled)"),
        ("generating", "error: no finished clip to download yet"),
    ],
)
def test_no_finished_clip_says_yet_only_while_the_project_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, status: str, said: str
) -> None:
    clip = {"scene_index": 0, "task_uuid": FAILED_TASK, "status": "failed", "error": {}}
    answer = httpx.Response(200, json=PROJECT | {"status": status, "results": [clip]})

    result = invoke(monkeypatch, answer, "download", PROJECT_ID, str(tmp_path))

    assert result.exit_code == 1
    assert result.stderr.strip() == said
