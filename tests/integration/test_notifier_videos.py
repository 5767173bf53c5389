"""The notifier forwards ``clip.stored`` in order, and its snapshots sign a fresh ``stored_url``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from reelflow_common.storage import VIDEOS_PATH, video_key
from reelflow_notifier.settings import Settings
from tests.integration.notifier_helpers import RunningNotifier, client, receive
from tests.integration.test_notifier import World, notifier, project_url, world  # noqa: F401
from tests.integration.video_helpers import SECRET, links

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(settings_for: Callable[..., Any]) -> Settings:
    built: Settings = settings_for(
        Settings, http_host="127.0.0.1", http_port=0, video_url_secret=SECRET
    )
    return built


async def test_a_stored_video_reaches_the_client_and_the_next_snapshot_signs_it_afresh(
    notifier: RunningNotifier,  # noqa: F811
    world: World,  # noqa: F811
) -> None:
    project = await world.new_project(clips=1)
    task_uuid = project.clips[0].task_uuid
    key = video_key(project.id, 0, task_uuid)
    async with client(project_url(notifier, project), key=world.key) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        await world.publish(*await world.success(project, 0))
        updated, finished = await receive(ws), await receive(ws)
        change = await world.projects.record_stored(
            project.id,
            0,
            task_uuid,
            key=key,
            size_bytes=5893,
            sha256=None,
            content_type="video/mp4",
            stored_url=links().url(key),
        )
        await world.publish(*change.events)
        stored = await receive(ws)

    assert (updated["type"], finished["type"]) == ("clip.updated", "project.finished")
    assert stored == {
        "type": "clip.stored",
        "seq": 3,
        "project_id": project.id,
        "scene_index": 0,
        "task_uuid": task_uuid,
        "stored_url": stored["stored_url"],
        "size_bytes": 5893,
        "counts": finished["counts"],
        "cost": finished["cost"],  # a copy costs nothing
    }
    async with client(project_url(notifier, project), key=world.key) as ws:
        snapshot = await receive(ws)
    (result,) = snapshot["project"]["results"]
    url = urlsplit(result["stored_url"])
    query = parse_qs(url.query)
    assert url.path == f"{VIDEOS_PATH}{key}"
    assert links().check(key, expires=int(query["expires"][0]), signature=query["signature"][0])
    assert result["video_url"].startswith("https://cdn.example/")  # Runware's stays
