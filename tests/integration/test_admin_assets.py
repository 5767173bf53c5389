"""``reelflow-admin assets``: copies given up on are listed, and sent again on request."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import pytest
from pymongo import AsyncMongoClient

from reelflow_common.admin.cli import AdminSettings
from reelflow_common.domain import ClipRequest
from reelflow_common.messages import StoreVideo
from reelflow_common.store import NewProject, ProjectStore, TaskSucceeded
from reelflow_common.topology import STORE_VIDEO, Topology, declare_topology
from tests.integration.test_admin_cli import (  # noqa: F401
    Run,
    _take_all,
    admin,
    admin_with,
    settings,
)

pytestmark = pytest.mark.integration


async def _two_successes_one_copy_failed(admin_settings: AdminSettings) -> str:
    """A project of two successes: scene 0's copy given up on, scene 1's on its way."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        admin_settings.mongo_url.get_secret_value(), tz_aware=True
    )
    try:
        projects = ProjectStore(client[admin_settings.mongo_database])
        new = NewProject(
            tenant_id="t",
            title="t",
            model="google:3@3",
            scenes=[ClipRequest(prompt="a"), ClipRequest(prompt="b")],
        )
        project = (await projects.create(new)).project
        for clip in project.clips:
            video = TaskSucceeded(video_url=f"https://cdn.test/{clip.scene_index}.mp4")
            await projects.record(project.id, clip.scene_index, clip.task_uuid, video)
        assert await projects.record_copy_failed(
            project.id,
            0,
            project.clips[0].task_uuid,
            key="videos/k.mp4",
            code="providerUnavailable",
            message="Runware's video URL answered 503",
            attempts=8,
        )
        return project.id
    finally:
        await client.close()


async def _declared(admin_settings: AdminSettings) -> None:
    url = admin_settings.amqp_url.get_secret_value()
    async with await aio_pika.connect(url) as connection:
        topology = Topology.from_settings(admin_settings)
        await declare_topology(await connection.channel(), topology)


def test_assets_list_shows_copies_given_up_on_and_a_projects_copies(
    admin: Run,  # noqa: F811
    settings: AdminSettings,  # noqa: F811
) -> None:
    project_id = asyncio.run(_two_successes_one_copy_failed(settings))

    code, out, err = admin("assets", "list", "--failed")

    assert code == 0, err
    (row,) = [line for line in out.splitlines() if line.startswith(project_id)]
    assert "failed" in row
    assert "providerUnavailable: Runware's video URL answered 503" in row
    assert " 8 " in row

    code, out, err = admin("assets", "list", project_id)
    assert code == 0, err
    assert [line.split()[3] for line in out.splitlines()[1:]] == ["failed", "pending"]


def test_assets_retry_sends_a_fresh_copy_of_every_video_not_stored(
    admin: Run,  # noqa: F811
    settings: AdminSettings,  # noqa: F811
) -> None:
    project_id = asyncio.run(_two_successes_one_copy_failed(settings))
    asyncio.run(_declared(settings))

    code, out, err = admin("assets", "retry", "--failed")

    assert code == 0, err
    assert out.strip() == f"sent 2 copy command(s) to {STORE_VIDEO}"
    queue = Topology.from_settings(settings).queue(STORE_VIDEO)
    sent = [StoreVideo.model_validate_json(m.body) for m in asyncio.run(_take_all(settings, queue))]
    assert [(m.project_id, m.scene_index, m.attempt) for m in sent] == [
        (project_id, 0, 1),
        (project_id, 1, 1),
    ]
    code, out, _ = admin("assets", "retry", project_id, "--scene", "1")
    assert out.strip() == f"sent 1 copy command(s) to {STORE_VIDEO}"
    with pytest.raises(SystemExit, match="2"):
        admin("assets", "list")  # which projects: argparse says so


async def _cancelled_clips_video_copy_failed(admin_settings: AdminSettings) -> tuple[str, str]:
    """A cancelled clip whose task finished at Runware after all (billed: its video in
    ``attempts``), and that video's copy given up on."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        admin_settings.mongo_url.get_secret_value(), tz_aware=True
    )
    try:
        projects = ProjectStore(client[admin_settings.mongo_database])
        new = NewProject(
            tenant_id="t", title="t", model="google:3@3", scenes=[ClipRequest(prompt="a")]
        )
        project = (await projects.create(new)).project
        task_uuid = project.clips[0].task_uuid
        assert await projects.cancel(project.id, tenant_id="t") is not None
        video = TaskSucceeded(video_url="https://cdn.test/late.mp4", cost=0.4)
        assert (await projects.record(project.id, 0, task_uuid, video)).applied
        assert await projects.record_copy_failed(
            project.id,
            0,
            task_uuid,
            key=f"videos/{project.id}/0/{task_uuid}.mp4",
            code="providerLinkExpired",
            message="Runware's video URL answers 404",
            attempts=3,
        )
        return project.id, task_uuid
    finally:
        await client.close()


def test_an_attempts_copy_given_up_on_is_listed_and_sent_again(
    admin: Run,  # noqa: F811
    settings: AdminSettings,  # noqa: F811
) -> None:
    project_id, task_uuid = asyncio.run(_cancelled_clips_video_copy_failed(settings))
    asyncio.run(_declared(settings))

    code, out, err = admin("assets", "list", "--failed")

    assert code == 0, err
    (row,) = [line for line in out.splitlines() if line.startswith(project_id)]
    assert row.split()[2:4] == [task_uuid, "failed"]
    assert "earlier task: providerLinkExpired" in row

    code, out, err = admin("assets", "retry", project_id)
    assert code == 0, err
    assert out.strip() == f"sent 1 copy command(s) to {STORE_VIDEO}"
    queue = Topology.from_settings(settings).queue(STORE_VIDEO)
    sent = [StoreVideo.model_validate_json(m.body) for m in asyncio.run(_take_all(settings, queue))]
    assert [(m.project_id, m.task_uuid, m.video_url) for m in sent] == [
        (project_id, task_uuid, "https://cdn.test/late.mp4")
    ]


def test_assets_retry_of_a_scene_the_project_lacks_is_an_error(
    admin: Run,  # noqa: F811
    settings: AdminSettings,  # noqa: F811
) -> None:
    project_id = asyncio.run(_two_successes_one_copy_failed(settings))

    # Scenes count from 0, as assets list shows them: the second scene is 1, 2 is none.
    code, out, err = admin("assets", "retry", project_id, "--scene", "2")

    assert (code, out) == (1, "")
    assert f"project {project_id} has no scene 2: its scenes are 0 to 1" in err
    code, out, err = admin("assets", "retry", "--failed", "--scene", "5")
    assert (code, out) == (1, "")
    assert "no project with a copy given up on has a scene 5" in err
    with pytest.raises(SystemExit, match="2"):
        admin("assets", "retry", project_id, "--scene", "-1")
