"""Videos that stay: a success is copied to reelflow's storage, served from it after
Runware's link expired, retried with backoff, and visible when it keeps failing.

The poller runs for real (its ``main``) against RabbitMQ, MongoDB, the simulator
and a local storage directory; the api serves the copies. Failures come from an
``httpx.MockTransport`` standing in for Runware's CDN.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from prometheus_client import REGISTRY

from reelflow_api.settings import Settings as ApiSettings
from reelflow_common.domain import ClipStatus, ProjectStatus
from reelflow_common.messages import (
    AttemptStored,
    AttemptSucceeded,
    ClipStored,
    ClipUpdated,
    StoreVideo,
)
from reelflow_common.storage import LocalStorage, VideoCopier, video_key
from reelflow_common.store import ClipState, TaskSucceeded
from reelflow_common.store.timefmt import utcnow
from reelflow_common.topology import CHECK_CLIP, STORE_VIDEO
from reelflow_common.tracking.copysweep import CopySweep
from reelflow_poller.copies import StoreHandler
from reelflow_poller.main import main
from reelflow_poller.settings import Settings
from reelflow_runware_sim.config import SimConfig
from reelflow_runware_sim.testing import RunningSimulator
from tests.integration.api_helpers import assert_problem, running_api
from tests.integration.video_helpers import (
    SAMPLE,
    SECRET,
    copies_from,
    links,
    resolves_public,
    sample_file,
    signed_in,
)
from tests.integration.worker_helpers import (
    FAST_LADDERS,
    World,
    running,
    runware_settings,
)
from tests.waiting import eventually, eventually_returns

pytestmark = pytest.mark.integration

#: simulated seconds: Runware's shortest URL lifetime is a minute; fifty here (3 real
#: seconds), so that the copy (a poll and a download) lands before it runs out even on
#: a busy machine (ten, 0.6 real seconds, ran out before the poller got to it), and
#: the link is gone once the simulator's clock is moved on by an hour
LINK_TTL = 3000.0
SPEEDUP = 1000.0
HOUR = 3600.0
FAST_COPIES = {"copy_initial_delay_s": 0.05, "copy_max_delay_s": 0.2}
MAX_ATTEMPTS = 3


@pytest.fixture
def runware_sim_config() -> SimConfig:
    return SimConfig(port=0, speedup=SPEEDUP, seed=7, video_url_ttl=LINK_TTL)


@pytest.fixture
def storage_dir(tmp_path: Path) -> Path:
    return tmp_path / "videos"


@pytest.fixture
def storage_settings(storage_dir: Path) -> dict[str, Any]:
    return {
        "storage_backend": "local",
        "storage_dir": str(storage_dir),
        "video_url_secret": SECRET,
        "copy_max_attempts": MAX_ATTEMPTS,
        **FAST_COPIES,
    }


@pytest.fixture
def settings(
    settings_for: Callable[..., Any],
    runware_sim: RunningSimulator,
    storage_settings: dict[str, Any],
) -> Settings:
    settings: Settings = settings_for(
        Settings,
        http_host="127.0.0.1",
        http_port=0,
        **FAST_LADDERS,
        **storage_settings,
        **runware_settings(runware_sim),
        **copies_from(runware_sim),
    )
    return settings


def copies(outcome: str) -> float:
    return REGISTRY.get_sample_value("reelflow_video_copies_total", {"outcome": outcome}) or 0.0


def advance(sim: RunningSimulator, simulated_s: float) -> None:
    """Move the simulator's clock forward (a compressed clock: no real waiting)."""
    shift = sim.config.real_seconds(simulated_s)
    sim.state.clock = lambda: time.monotonic() + shift


async def stored_clip(world: World, project_id: str) -> Any:
    async def probe() -> bool:
        clip = (await world.project(project_id)).clips[0]
        return clip.stored_key is not None

    await eventually(probe, "the video was stored")
    return (await world.project(project_id)).clips[0]


async def test_a_finished_clip_still_plays_from_reelflows_url_an_hour_after_runwares_expired(
    world: World,
    settings: Settings,
    settings_for: Callable[..., Any],
    mongo_db: Any,
    amqp_connection: AbstractRobustConnection,
    storage_settings: dict[str, Any],
    storage_dir: Path,
) -> None:
    api_settings = settings_for(ApiSettings, **storage_settings)
    async with running_api(api_settings, mongo_db, amqp_connection) as api:
        auth = await signed_in(api, world)
        project = await world.processing(await world.new_project("a fox [sim:latency=5]"))
        inbox = await world.events()
        stop = asyncio.Event()
        async with running(main(settings, stop=stop), stop):
            await world.publisher.send(CHECK_CLIP, await world.check_of(project), delay_s=0.05)
            clip = await stored_clip(world, project.id)
            events = await world.events_until(inbox, ClipStored)

        # The clip was a success at once, with Runware's URL; the copy came after, as an event.
        success = next(e for e in events if isinstance(e, ClipUpdated) and e.clip.video_url)
        stored = next(e for e in events if isinstance(e, ClipStored))
        assert success.clip.status is ClipStatus.SUCCESS
        assert stored.seq > success.seq
        assert (stored.scene_index, stored.task_uuid) == (0, clip.task_uuid)
        assert stored.size_bytes == len(SAMPLE)
        after = await world.project(project.id)
        assert after.status is ProjectStatus.COMPLETED  # the copy changed no status
        assert after.counts.completed == 1
        assert clip.status is ClipStatus.SUCCESS
        assert clip.video_url == success.clip.video_url  # Runware's URL stays in the record
        assert (storage_dir / clip.stored_key).read_bytes() == SAMPLE

        # An hour later (the simulator's clock), Runware's link is gone ...
        advance(world.sim, HOUR)
        async with httpx.AsyncClient() as http:
            assert clip.video_url is not None
            assert (await http.get(clip.video_url)).status_code == 404
        # ... and reelflow's own URL, fresh in the project's status, plays the video.
        status = await api.client.get(f"/v1/projects/{project.id}", headers=auth)
        stored_url = status.json()["results"][0]["stored_url"]
        video = await api.client.get(stored_url)
        assert video.status_code == 200
        assert video.headers["content-type"] == "video/mp4"
        assert video.content == SAMPLE
        # So does the URL the event carried, which is valid for a day.
        assert (await api.client.get(stored.stored_url)).content == SAMPLE


async def test_a_cancelled_clips_billed_video_is_kept_and_plays_from_its_attempt_after_an_hour(
    world: World,
    settings: Settings,
    settings_for: Callable[..., Any],
    mongo_db: Any,
    amqp_connection: AbstractRobustConnection,
    storage_settings: dict[str, Any],
    storage_dir: Path,
) -> None:
    """Cancelled while Runware ran its task: the task finishes and is billed, its video
    lands in ``attempts``; reelflow keeps a copy of it too, on that attempt."""
    api_settings = settings_for(ApiSettings, **storage_settings)
    async with running_api(api_settings, mongo_db, amqp_connection) as api:
        auth = await signed_in(api, world)
        project = await world.processing(await world.new_project("a fox [sim:latency=5]"))
        task_uuid = project.clips[0].task_uuid
        check = await world.check_of(project)
        cancelled = await api.client.post(f"/v1/projects/{project.id}/cancel", headers=auth)
        assert cancelled.status_code == 202
        inbox = await world.events()
        stop = asyncio.Event()
        async with running(main(settings, stop=stop), stop):
            await world.publisher.send(CHECK_CLIP, check, delay_s=0.05)

            async def attempt_stored() -> bool:
                clip = (await world.project(project.id)).clips[0]
                attempt = clip.attempts.get(task_uuid)
                return attempt is not None and attempt.stored_key is not None

            await eventually(attempt_stored, "the attempt's video was stored")
            events = await world.events_until(inbox, AttemptStored)

        after = await world.project(project.id)
        clip = after.clips[0]
        attempt = clip.attempts[task_uuid]
        # Billed (its cost counted), kept, and the clip itself as the cancel left it.
        assert (clip.status, clip.asset, clip.video_url) == (ClipStatus.CANCELLED, None, None)
        assert attempt.status is ClipStatus.SUCCESS
        assert after.cost.known == 1
        assert attempt.stored_key is not None
        assert (storage_dir / attempt.stored_key).read_bytes() == SAMPLE
        succeeded = next(e for e in events if isinstance(e, AttemptSucceeded))
        (stored,) = [e for e in events if isinstance(e, AttemptStored)]
        assert not [e for e in events if isinstance(e, ClipStored)]  # not the clip's video
        assert stored.seq > succeeded.seq
        assert (stored.scene_index, stored.task_uuid, stored.size_bytes) == (
            0,
            task_uuid,
            len(SAMPLE),
        )

        # An hour later (the simulator's clock), Runware's link is gone ...
        advance(world.sim, HOUR)
        async with httpx.AsyncClient() as http:
            assert attempt.video_url is not None
            assert (await http.get(attempt.video_url)).status_code == 404
        # ... and the attempt the tenant paid for plays from reelflow's own URL.
        status = await api.client.get(f"/v1/projects/{project.id}", headers=auth)
        (shown,) = status.json()["results"][0]["attempts"]
        assert (shown["task_uuid"], shown["status"]) == (task_uuid, "success")
        video = await api.client.get(shown["stored_url"])
        assert video.status_code == 200
        assert video.headers["content-type"] == "video/mp4"
        assert video.content == SAMPLE
        assert (await api.client.get(stored.stored_url)).content == SAMPLE


async def test_a_signed_url_is_refused_once_expired_or_tampered_with(
    world: World,
    settings_for: Callable[..., Any],
    mongo_db: Any,
    amqp_connection: AbstractRobustConnection,
    storage_settings: dict[str, Any],
    storage_dir: Path,
) -> None:
    key = "videos/p/0/t.mp4"
    await LocalStorage(storage_dir).put(key, sample_file(storage_dir.parent))
    api_settings = settings_for(ApiSettings, **storage_settings)
    async with running_api(api_settings, mongo_db, amqp_connection) as api:
        signed = links()
        good = signed.url(key)
        assert (await api.client.get(good)).status_code == 200
        head = await api.client.head(good)
        assert (head.status_code, head.headers["content-length"]) == (200, str(len(SAMPLE)))
        tampered = await api.client.get(good.replace("/0/", "/1/"))
        assert tampered.status_code == 403
        assert tampered.headers["content-type"] == "application/problem+json"
        expired = links(ttl_s=-1).url(key)
        assert (await api.client.get(expired)).status_code == 410
        missing = signed.url("videos/p/0/none.mp4")
        assert (await api.client.get(missing)).status_code == 404
        unsigned = await api.client.get(f"/v1/videos/{key}")
        assert unsigned.status_code == 422


async def test_a_signed_url_with_download_is_a_file_to_save_named_by_scene_and_task(
    world: World,
    settings_for: Callable[..., Any],
    mongo_db: Any,
    amqp_connection: AbstractRobustConnection,
    storage_settings: dict[str, Any],
    storage_dir: Path,
) -> None:
    task = uuid.uuid4()
    key = video_key(str(uuid.uuid4()), 3, str(task))
    await LocalStorage(storage_dir).put(key, sample_file(storage_dir.parent))
    api_settings = settings_for(ApiSettings, **storage_settings)
    async with running_api(api_settings, mongo_db, amqp_connection) as api:
        url = links().url(key)
        played = await api.client.get(url)
        # the yes and no docs/API.md lists, in any case: pydantic's bool
        saved = {
            value: await api.client.get(f"{url}&download={value}")
            for value in ("1", "true", "TRUE", "t", "yes", "Y", "on")
        }
        head = await api.client.head(f"{url}&download=1")
        not_saved = [
            await api.client.get(f"{url}&download={value}")
            for value in ("0", "false", "F", "no", "n", "OFF")
        ]
        unclear = [
            await api.client.get(f"{url}&download={value}") for value in ("maybe", "2", "", " yes")
        ]
        forged = await api.client.get(f"{url.replace('/3/', '/4/')}&download=1")

    assert played.status_code == 200
    assert "content-disposition" not in played.headers
    for answer in (*saved.values(), head):
        assert answer.status_code == 200
        assert answer.headers["content-disposition"] == (
            f'attachment; filename="scene-03-{task}.mp4"'
        )
        assert answer.headers["content-type"] == "video/mp4"
    assert saved["1"].content == SAMPLE
    for answer in not_saved:
        assert answer.status_code == 200
        assert "content-disposition" not in answer.headers
    for answer in unclear:
        assert_problem(answer, 422)
    assert_problem(forged, 403)  # the parameter makes no other key's link valid


# --- retries and failures: the copy handler with a CDN that misbehaves -------------------------


class FlakyCdn:
    """Answers ``failures`` times with ``status``, then with the video."""

    def __init__(self, failures: int, status: int = 503) -> None:
        self.failures = failures
        self.status = status
        self.requests = 0

    def __call__(self, _request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.requests <= self.failures:
            return httpx.Response(self.status, text="unavailable")
        return httpx.Response(200, content=SAMPLE)


async def _succeeded_clip(
    world: World, video_url: str = "https://cdn.test/v.mp4"
) -> tuple[str, str]:
    project = await world.processing(await world.new_project("a fox"))
    clip = project.clips[0]
    video = TaskSucceeded(video_url=video_url, cost=0.25)
    assert (await world.projects.record(project.id, 0, clip.task_uuid, video)).applied
    return project.id, clip.task_uuid


def _handler(world: World, storage_dir: Path, cdn: FlakyCdn) -> StoreHandler:
    copier = VideoCopier(
        LocalStorage(storage_dir),
        max_bytes=1 << 20,
        resolve=resolves_public,
        transport=httpx.MockTransport(cdn),
    )
    return StoreHandler(
        world.projects,
        copier,
        world.publisher,
        links(),
        backoff=world.topology.backoffs[STORE_VIDEO],
        max_attempts=MAX_ATTEMPTS,
    )


async def given_up(world: World, project_id: str) -> ClipState:
    """The first clip of the project once its copy was recorded as failed."""

    async def probe() -> ClipState | None:
        clip = (await world.project(project_id)).clips[0]
        return clip if clip.asset is not None and clip.asset.status == "failed" else None

    return await eventually_returns(probe, "the copy was given up on")


def store_command(
    project_id: str, task_uuid: str, video_url: str = "https://cdn.test/v"
) -> StoreVideo:
    return StoreVideo(
        project_id=project_id, scene_index=0, task_uuid=task_uuid, video_url=video_url
    )


async def test_a_copy_that_fails_is_retried_with_backoff_until_it_lands(
    world: World, storage_dir: Path
) -> None:
    project_id, task_uuid = await _succeeded_clip(world)
    cdn = FlakyCdn(failures=MAX_ATTEMPTS - 1)
    retried = copies("retried")
    command = store_command(project_id, task_uuid)
    async with world.consuming(STORE_VIDEO, StoreVideo, _handler(world, storage_dir, cdn)):
        await world.publisher.send(STORE_VIDEO, command)
        clip = await stored_clip(world, project_id)
    assert cdn.requests == MAX_ATTEMPTS
    assert copies("retried") - retried == MAX_ATTEMPTS - 1
    attempts = [m.attempt for m in world.publisher.sent_to(STORE_VIDEO)]
    assert attempts == [1, 2, 3]  # each retry a fresh command on the copy ladder
    assert clip.asset is not None
    assert clip.asset.size_bytes == len(SAMPLE)


async def test_a_copy_that_keeps_failing_is_recorded_counted_and_listed(
    world: World, storage_dir: Path
) -> None:
    project_id, task_uuid = await _succeeded_clip(world)
    failed = copies("failed")
    command = store_command(project_id, task_uuid)
    async with world.consuming(
        STORE_VIDEO, StoreVideo, _handler(world, storage_dir, FlakyCdn(failures=99))
    ):
        await world.publisher.send(STORE_VIDEO, command)
        clip = await given_up(world, project_id)
    assert clip.asset is not None
    assert clip.asset.attempts == MAX_ATTEMPTS
    assert clip.asset.error == {
        "code": "providerUnavailable",
        "message": "Runware's video URL answered 503",
    }
    assert clip.status is ClipStatus.SUCCESS  # the clip keeps Runware's video
    assert copies("failed") - failed == 1
    listed = await world.projects.with_failed_copies()
    assert [p.id for p in listed] == [project_id]


async def test_an_expired_link_is_given_up_on_at_once_with_a_clear_error(
    world: World, storage_dir: Path
) -> None:
    project_id, task_uuid = await _succeeded_clip(world)
    cdn = FlakyCdn(failures=99, status=404)
    command = store_command(project_id, task_uuid)
    async with world.consuming(STORE_VIDEO, StoreVideo, _handler(world, storage_dir, cdn)):
        await world.publisher.send(STORE_VIDEO, command)
        clip = await given_up(world, project_id)
    assert clip.asset is not None
    assert clip.asset.error is not None
    assert clip.asset.error["code"] == "providerLinkExpired"
    assert clip.asset.attempts == 1
    assert cdn.requests == 1


@pytest.mark.parametrize(
    "video_url",
    ["https://169.254.169.254/latest/meta-data", "https://10.0.0.7/v.mp4", "http://cdn.test/v.mp4"],
)
async def test_a_video_url_it_may_not_fetch_is_given_up_on_at_once_and_runwares_url_stays(
    world: World, storage_dir: Path, video_url: str
) -> None:
    """An internal address, or plain http (the copier as production builds it: no http, any
    public host); recorded as any copy that cannot pass, not fetched, not retried."""
    project_id, task_uuid = await _succeeded_clip(world, video_url)
    cdn = FlakyCdn(failures=0)  # would answer the video, if asked
    failed = copies("failed")
    command = store_command(project_id, task_uuid, video_url)
    async with world.consuming(STORE_VIDEO, StoreVideo, _handler(world, storage_dir, cdn)):
        await world.publisher.send(STORE_VIDEO, command)
        clip = await given_up(world, project_id)
    assert clip.asset is not None
    assert clip.asset.error is not None
    assert clip.asset.error["code"] == "urlNotAllowed"
    assert clip.asset.attempts == 1
    assert cdn.requests == 0
    assert (clip.status, clip.video_url) == (ClipStatus.SUCCESS, video_url)
    assert copies("failed") - failed == 1


# --- the copy sweep: a success whose StoreVideo was lost -------------------------------------


def sweep(world: World, *, later_s: float = 0.0) -> CopySweep:
    """A sweep that waits an hour, run as if ``later_s`` had passed."""
    return CopySweep(
        world.projects,
        world.publisher,
        clock=lambda: utcnow() + timedelta(seconds=later_s),
        after_s=HOUR,
        batch_size=10,
    )


async def test_a_success_whose_copy_was_lost_is_sent_again_once_by_one_sweep(
    world: World, storage_dir: Path
) -> None:
    project_id, task_uuid = await _succeeded_clip(world)  # its StoreVideo never sent
    assert await sweep(world).run_once() == 0  # too young: its own copy may be running
    replicas = [sweep(world, later_s=2 * HOUR), sweep(world, later_s=2 * HOUR)]
    assert sum(await asyncio.gather(*(r.run_once() for r in replicas))) == 1
    (command,) = world.publisher.sent_to(STORE_VIDEO)
    assert (command.project_id, command.task_uuid) == (project_id, task_uuid)

    async with world.consuming(STORE_VIDEO, StoreVideo, _handler(world, storage_dir, FlakyCdn(0))):
        await stored_clip(world, project_id)
    later = sweep(world, later_s=4 * HOUR)  # the claim's mark is an hour old then
    assert await later.run_once() == 0  # stored: the mark goes
    assert await world.projects.copies_due(before=utcnow() + timedelta(days=1), limit=10) == []
    assert len(world.publisher.sent_to(STORE_VIDEO)) == 1


async def test_an_attempts_video_whose_copy_was_lost_is_sent_again_by_the_sweep(
    world: World, storage_dir: Path
) -> None:
    """A cancelled clip's task finished and billed, its ``StoreVideo`` never sent: the
    attempt's end marked the project, and the sweep sends that copy, kept on the attempt."""
    project = await world.new_project("a fox")
    task_uuid = project.clips[0].task_uuid
    assert await world.projects.cancel(project.id, tenant_id=world.tenant_id) is not None
    video = TaskSucceeded(video_url="https://cdn.test/late.mp4", cost=0.4)
    assert (await world.projects.record(project.id, 0, task_uuid, video)).applied
    assert await sweep(world).run_once() == 0  # too young: its own copy may be running

    assert await sweep(world, later_s=2 * HOUR).run_once() == 1
    (command,) = world.publisher.sent_to(STORE_VIDEO)
    assert (command.project_id, command.task_uuid, command.video_url) == (
        project.id,
        task_uuid,
        video.video_url,
    )
    async with world.consuming(STORE_VIDEO, StoreVideo, _handler(world, storage_dir, FlakyCdn(0))):

        async def kept() -> bool:
            attempt = (await world.project(project.id)).clips[0].attempts[task_uuid]
            return attempt.stored_key is not None

        await eventually(kept, "the attempt's video was stored")
    after = (await world.project(project.id)).clips[0]
    assert (after.status, after.asset) == (ClipStatus.CANCELLED, None)
    assert await sweep(world, later_s=4 * HOUR).run_once() == 0  # stored: the mark goes
    assert await world.projects.copies_due(before=utcnow() + timedelta(days=1), limit=10) == []
