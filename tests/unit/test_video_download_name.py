"""The name a saved video gets: made of the signed key's scene number and task UUID only."""

from __future__ import annotations

import uuid

import pytest

from reelflow_api.routes.videos import download_name
from reelflow_common.storage import video_key

TASK = "9d1c2f0e-5a7b-4c3d-8e9f-0a1b2c3d4e5f"


def test_a_video_is_saved_as_its_scene_and_task_as_the_cli_names_it() -> None:
    key = video_key(str(uuid.uuid4()), 3, TASK)

    assert download_name(key) == f"scene-03-{TASK}.mp4"
    assert download_name(video_key("p", 12, TASK)) == f"scene-12-{TASK}.mp4"


def test_a_task_uuid_is_named_in_its_canonical_form() -> None:
    assert download_name(f"videos/p/0/{TASK.upper().replace('-', '')}.mp4") == (
        f"scene-00-{TASK}.mp4"
    )


@pytest.mark.parametrize(
    "key",
    [
        "videos/p/0/t.mp4",  # not a task UUID
        'videos/p/0/a"; filename="evil.exe.mp4',
        "videos/p/0/x\r\nSet-Cookie: a=b.mp4",
        f"videos/p/0/../{TASK}.mp4",
        f"videos/p/x/{TASK}.mp4",
        f"videos/p/0/{TASK}.exe",
        f"other/p/0/{TASK}.mp4",
    ],
)
def test_a_key_reelflow_does_not_make_is_saved_under_a_plain_name(key: str) -> None:
    assert download_name(key) == "video.mp4"
