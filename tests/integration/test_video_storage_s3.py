"""The S3 backend against an S3-compatible server (moto in server mode, a dev dependency).

The bucket stays private: reelflow writes with its credentials, and clients get a
presigned GET through the api's redirect.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from aiobotocore.session import get_session
from moto.server import ThreadedMotoServer
from pydantic import SecretStr

from reelflow_api.settings import Settings as ApiSettings
from reelflow_common.messages import StoreVideo
from reelflow_common.settings import StorageSettings
from reelflow_common.storage import (
    CopyFailed,
    Redirect,
    StorageError,
    VideoCopier,
    open_storage,
)
from reelflow_common.store import ProjectStore, TaskSucceeded
from reelflow_common.topology import STORE_VIDEO
from reelflow_poller.copies import StoreHandler
from reelflow_runware_sim.testing import RunningSimulator
from tests.integration.api_helpers import running_api
from tests.integration.video_helpers import (
    SAMPLE,
    SECRET,
    links,
    resolves_public,
    sample_file,
    signed_in,
)
from tests.integration.worker_helpers import World, open_world
from tests.waiting import eventually

pytestmark = pytest.mark.integration

CREDENTIALS = {"s3_access_key_id": SecretStr("testing"), "s3_secret_access_key": SecretStr("x")}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
async def s3_settings(s3_endpoint: str) -> dict[str, Any]:
    """Storage settings of a bucket of this test's own (created here)."""
    bucket = f"reelflow-{uuid.uuid4().hex[:12]}"
    async with get_session().create_client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="x",
    ) as client:
        await client.create_bucket(Bucket=bucket)
    return {
        "storage_backend": "s3",
        "s3_endpoint_url": s3_endpoint,
        "s3_bucket": bucket,
        "video_url_secret": SECRET,
        **CREDENTIALS,
    }


async def test_the_bucket_takes_a_video_tells_its_size_and_presigns_a_get(
    s3_settings: dict[str, Any], tmp_path: Path
) -> None:
    async with open_storage(StorageSettings(**s3_settings)) as storage:
        assert storage is not None
        await storage.put("videos/p/0/t.mp4", sample_file(tmp_path))
        assert await storage.size("videos/p/0/t.mp4") == len(SAMPLE)
        assert await storage.size("videos/p/0/none.mp4") is None
        delivery = await storage.delivery("videos/p/0/t.mp4")
    assert isinstance(delivery, Redirect)
    async with httpx.AsyncClient() as http:
        fetched = await http.get(delivery.url)
        unsigned = await http.get(delivery.url.split("?")[0])
    assert fetched.content == SAMPLE
    assert unsigned.status_code == 403  # the bucket is private


async def test_a_presigned_get_to_save_has_the_bucket_answer_as_an_attachment(
    s3_settings: dict[str, Any], tmp_path: Path
) -> None:
    async with open_storage(StorageSettings(**s3_settings)) as storage:
        assert storage is not None
        await storage.put("videos/p/0/t.mp4", sample_file(tmp_path))
        delivery = await storage.delivery("videos/p/0/t.mp4", download_name="scene-00-t.mp4")
    assert isinstance(delivery, Redirect)
    async with httpx.AsyncClient() as http:
        fetched = await http.get(delivery.url)
    assert fetched.content == SAMPLE
    assert fetched.headers["content-disposition"] == 'attachment; filename="scene-00-t.mp4"'


async def test_a_storage_that_does_not_answer_is_a_copy_to_try_again(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = StorageSettings(
        storage_backend="s3",
        s3_endpoint_url=f"http://127.0.0.1:{port}",
        s3_bucket="nowhere",
        video_url_secret=SECRET,
        s3_access_key_id=CREDENTIALS["s3_access_key_id"],
        s3_secret_access_key=CREDENTIALS["s3_secret_access_key"],
    )
    async with open_storage(settings) as storage:
        assert storage is not None
        with pytest.raises(StorageError):
            await storage.put("videos/p/0/t.mp4", sample_file(tmp_path))
        copier = VideoCopier(
            storage,
            max_bytes=1 << 20,
            resolve=resolves_public,
            transport=httpx.MockTransport(lambda _: httpx.Response(200, content=SAMPLE)),
        )
        with pytest.raises(CopyFailed) as failed:
            await copier.copy("https://cdn/v", "k.mp4")
    assert (failed.value.code, failed.value.retryable) == ("storageUnavailable", True)


@pytest.fixture
async def world(
    amqp_connection: AbstractRobustConnection,
    mongo_db: Any,
    settings_for: Callable[..., Any],
    runware_sim: RunningSimulator,
) -> AsyncIterator[World]:
    store = ProjectStore(mongo_db)
    await store.ensure_indexes()
    settings = settings_for(ApiSettings)
    async with open_world(amqp_connection, settings, store, runware_sim) as world:
        yield world


async def test_a_finished_clip_is_copied_to_the_bucket_and_served_by_redirect(
    world: World,
    s3_settings: dict[str, Any],
    settings_for: Callable[..., Any],
    mongo_db: Any,
    amqp_connection: AbstractRobustConnection,
) -> None:
    api_settings = settings_for(ApiSettings, **s3_settings)
    async with running_api(api_settings, mongo_db, amqp_connection) as api:
        auth = await signed_in(api, world)
        project = await world.processing(await world.new_project("a fox [sim:latency=5]"))
        clip = project.clips[0]
        await world.until_finished_at_runware(clip.task_uuid)
        state = await world.runware.get_response(clip.task_uuid)
        video_url = state.video_url
        assert video_url is not None
        video = TaskSucceeded(video_url=video_url)
        assert (await world.projects.record(project.id, 0, clip.task_uuid, video)).applied
        async with (
            open_storage(StorageSettings(**s3_settings)) as storage,
            httpx.AsyncClient() as http,
        ):
            assert storage is not None
            copier = VideoCopier(
                storage,
                max_bytes=1 << 20,
                allowed_hosts=[httpx.URL(video_url).host],  # the simulator's
                internal_hosts=[httpx.URL(video_url).host],  # on 127.0.0.1
                allow_http=True,
            )
            handler = StoreHandler(
                world.projects,
                copier,
                world.publisher,
                links(),
                backoff=world.topology.backoffs[STORE_VIDEO],
                max_attempts=3,
            )
            command = StoreVideo(
                project_id=project.id, scene_index=0, task_uuid=clip.task_uuid, video_url=video_url
            )
            async with copier, world.consuming(STORE_VIDEO, StoreVideo, handler):
                await world.publisher.send(STORE_VIDEO, command)

                async def stored() -> bool:
                    return (await world.project(project.id)).clips[0].stored_key is not None

                await eventually(stored, "the video was stored in the bucket")
            status = await api.client.get(f"/v1/projects/{project.id}", headers=auth)
            stored_url = status.json()["results"][0]["stored_url"]
            redirect = await api.client.get(stored_url)
            assert redirect.status_code == 307
            assert redirect.headers["location"].startswith(s3_settings["s3_endpoint_url"])
            played = await http.get(redirect.headers["location"])
            assert played.content == SAMPLE
            assert "content-disposition" not in played.headers
            to_save = await api.client.get(f"{stored_url}&download=1")
            assert to_save.status_code == 307
            saved = await http.get(to_save.headers["location"])
            assert saved.content == SAMPLE
            assert saved.headers["content-disposition"] == (
                f'attachment; filename="scene-00-{clip.task_uuid}.mp4"'
            )
