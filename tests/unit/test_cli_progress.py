"""The CLI shows Runware's progress of a generating clip once the server has stored one."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from reelflow_cli.project import ProjectState
from reelflow_cli.render import ClipLines

COUNTS = {"total_clips": 1, "completed": 0, "pending": 1, "failed": 0}


def clip_updated(seq: int, **clip: Any) -> dict[str, Any]:
    return {
        "type": "clip.updated",
        "seq": seq,
        "counts": COUNTS,
        "clip": {"task_uuid": "t1", "scene_index": 0, **clip},
    }


def test_a_generating_clips_progress_is_shown_as_it_comes() -> None:
    out = io.StringIO()
    lines = ClipLines(Console(file=out, width=80))
    state = ProjectState(project_id="p1")

    for message in (
        clip_updated(1, status="processing"),
        clip_updated(2, status="processing", progress=40),
        clip_updated(3, status="processing", progress=40),  # no change, no line
        clip_updated(4, status="processing", progress=75),
    ):
        lines.show(message, state, state.apply(message))

    assert state.clips[0].progress == 75
    assert out.getvalue().splitlines() == [
        "scene 0: processing",
        "scene 0: processing 40 %",
        "scene 0: processing 75 %",
    ]


def test_a_progress_the_server_never_sent_is_none() -> None:
    state = ProjectState(project_id="p1")
    state.apply(clip_updated(1, status="processing", progress="lots"))

    assert state.clips[0].progress is None
