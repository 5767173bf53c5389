"""The API in-process: ``?wait=``, cancel, retry, and what a broker outage does to them."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from reelflow_api.deps import AppState
from reelflow_api.settings import Settings
from reelflow_common.broker import Publisher, PublishError, amqp_channel
from reelflow_common.messages import CheckClip, Message, SubmitClip
from reelflow_common.store import TIMED_OUT, Project
from reelflow_common.topology import CHECK_CLIP, SUBMIT_CLIP
from tests.integration.api_helpers import (
    Api,
    assert_problem,
    fail,
    finish,
    running_api,
    stored,
)
from tests.waiting import DEADLINE_S, eventually_matches

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> AsyncIterator[Api]:
    settings = settings_for(Settings, wait_check_interval_s=0.02)
    async with running_api(settings, mongo_db, amqp_connection) as api:
        yield api


# --- ?wait= ------------------------------------------------------------------------


async def test_wait_with_no_clip_finishing_answers_202_with_clips_pending(api: Api) -> None:
    response = await api.create(await api.tenant(), wait=0.2)

    assert response.status_code == 202
    body = response.json()
    assert body["pending"] == 2
    assert body["all_complete"] is False
    assert set(body["clips"].values()) == {"pending"}


async def test_wait_answers_200_with_the_videos_once_every_clip_finishes(api: Api) -> None:
    auth = await api.tenant()
    tenant_id = await api.keys.tenant_for_key(auth["Authorization"].removeprefix("Bearer "))
    assert tenant_id is not None
    request = asyncio.create_task(api.create(auth, wait=60))

    listed = await eventually_matches(
        lambda: api.projects.list(tenant_id), lambda page: bool(page[0]), "the project stored"
    )
    project = listed[0][0]
    for clip in project.clips:
        await finish(api, project.id, clip.task_uuid)
    response = await asyncio.wait_for(request, DEADLINE_S)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["all_complete"] is True
    assert (body["completed"], body["pending"], body["status"]) == (2, 0, "completed")
    assert body["clips"] == {
        c.task_uuid: f"https://cdn.test/{c.task_uuid}.mp4" for c in project.clips
    }
    assert [r["status"] for r in body["results"]] == ["success", "success"]


async def test_a_replay_with_wait_of_a_finished_project_answers_200_at_once(api: Api) -> None:
    auth = await api.tenant()
    key = {"Idempotency-Key": "k-1"}
    first = (await api.create(auth, headers=key)).json()
    for task_uuid in first["clips"]:
        await finish(api, first["project_id"], task_uuid)

    again = await asyncio.wait_for(api.create(auth, headers=key, wait=120), DEADLINE_S)

    assert again.status_code == 200
    assert again.json()["all_complete"] is True


async def test_without_wait_a_finished_project_replay_answers_202(api: Api) -> None:
    auth = await api.tenant()
    key = {"Idempotency-Key": "k-1"}
    first = (await api.create(auth, headers=key)).json()
    for task_uuid in first["clips"]:
        await finish(api, first["project_id"], task_uuid)

    again = await api.create(auth, headers=key)

    assert again.status_code == 202
    assert again.json()["status"] == "completed"


# --- cancel ------------------------------------------------------------------------


async def test_cancel_makes_every_unfinished_clip_cancelled(api: Api) -> None:
    auth = await api.tenant()
    created = (await api.create(auth)).json()
    done = next(iter(created["clips"]))
    await finish(api, created["project_id"], done)
    events = await api.events_queue()

    response = await api.client.post(f"/v1/projects/{created['project_id']}/cancel", headers=auth)

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "cancelled"  # though one video exists
    statuses = {r["task_uuid"]: r["status"] for r in body["results"]}
    assert statuses.pop(done) == "success"
    assert set(statuses.values()) == {"cancelled"}
    assert (body["completed"], body["pending"], body["all_complete"]) == (1, 0, True)
    assert body.pop("clips_changed") == 1
    assert body.pop("clips_may_be_billed") == 1  # queued within the POST's first seconds
    got = await api.client.get(f"/v1/projects/{created['project_id']}", headers=auth)
    assert got.json() == body
    announced = [m.body for m in await api.take(events)]
    assert [e.get("clip", {}).get("status") for e in announced] == ["cancelled", None]
    assert announced[-1]["status"] == body["status"]
    # The answer includes the events its cancel made: none after it is news.
    assert body["seq"] == announced[-1]["seq"]


async def test_cancel_of_an_untouched_project_makes_it_cancelled(api: Api) -> None:
    auth = await api.tenant()
    created = (await api.create(auth)).json()

    response = await api.client.post(f"/v1/projects/{created['project_id']}/cancel", headers=auth)

    body = response.json()
    assert response.status_code == 202
    assert body["status"] == "cancelled"
    assert {r["status"] for r in body["results"]} == {"cancelled"}
    assert set(body["clips"].values()) == {"failed"}  # the seed's column knows no cancel
    assert body["clips_changed"] == 2
    # The seed's failed counts them too; cancelled says how many of those were cancelled,
    # in the list's items as well.
    assert (body["failed"], body["cancelled"]) == (2, 2)
    listed = await api.client.get("/v1/projects", headers=auth)
    (item,) = listed.json()["items"]
    assert (item["failed"], item["cancelled"]) == (2, 2)


async def test_cancel_right_after_the_post_says_every_clip_may_still_be_billed(
    api: Api,
) -> None:
    # It answered clips_changed 6, cost 0, and 6 videos were billed later: within
    # submit_read_after_s of the POST a first submit does not read the cancel.
    auth = await api.tenant()
    created = (await api.create(auth)).json()

    response = await api.client.post(f"/v1/projects/{created['project_id']}/cancel", headers=auth)

    assert response.status_code == 202
    body = response.json()
    assert (body["clips_changed"], body["clips_may_be_billed"]) == (2, 2)


async def test_cancel_counts_a_processing_clip_but_not_a_queued_one_read_before_its_submit(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> None:
    settings = settings_for(Settings, submit_read_after_s=0)
    async with running_api(settings, mongo_db, amqp_connection) as api:
        tenant_id, auth = await api.new_tenant()
        created = (await api.create(auth)).json()
        project = await stored(api, created["project_id"])
        running = project.clips[0]
        assert running.lease is not None
        await api.projects.mark_processing(
            project.id, 0, running.task_uuid, token=running.lease.token
        )
        url = f"/v1/projects/{project.id}/cancel"

        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
            first = await api.client.post(url, headers=auth)
            second = await api.client.post(url, headers=auth)

    assert (first.json()["clips_changed"], first.json()["clips_may_be_billed"]) == (2, 1)
    assert (second.json()["clips_changed"], second.json()["clips_may_be_billed"]) == (0, 0)
    # An operator asked why a cancelled project was billed finds the cancel and its answer.
    logged = [line for line in lines if line["event"] == "project_cancel"]
    assert [(line["clips_changed"], line["clips_may_be_billed"]) for line in logged] == [
        (2, 1),
        (0, 0),
    ]
    for line in logged:
        assert (line["log_level"], line["project_id"], line["tenant_id"]) == (
            "info",
            project.id,
            tenant_id,
        )


async def test_cancel_twice_changes_nothing_the_second_time_and_says_so(api: Api) -> None:
    auth = await api.tenant()
    created = (await api.create(auth)).json()
    url = f"/v1/projects/{created['project_id']}/cancel"
    first = await api.client.post(url, headers=auth)

    second = await api.client.post(url, headers=auth)

    assert second.status_code == 202
    assert first.json()["clips_changed"] == 2
    assert second.json() == first.json() | {"clips_changed": 0, "clips_may_be_billed": 0}


def another_writer_moves_scene_at_every_try(
    api: Api, monkeypatch: pytest.MonkeyPatch, scene_index: int
) -> None:
    """Every guarded write of the app's store on that scene's clip matches nothing, as when
    another writer (a renewal, a submit, a late video) moves it between each read and write."""
    store = api.app.state.reelflow.projects
    apply = store._apply
    path = f"clips.{scene_index}."

    async def beaten(write: Any, *args: Any, **kwargs: Any) -> Any:
        if any(name.startswith(path) for name in write.filter):
            return None
        return await apply(write, *args, **kwargs)

    monkeypatch.setattr(store, "_apply", beaten)


async def test_a_cancel_whose_clip_kept_moving_is_a_503_to_send_again(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It answered 202 "clips_changed: 1" as if the busy clip had finished: the CLI said
    # "every clip had finished" while it ran on, billed.
    auth = await api.tenant()
    created = (await api.create(auth)).json()
    url = f"/v1/projects/{created['project_id']}/cancel"
    another_writer_moves_scene_at_every_try(api, monkeypatch, 1)

    busy = await api.client.post(url, headers=auth)

    assert_problem(busy, 503)
    assert busy.headers["Retry-After"] == "1"
    assert "1 clip(s) kept changing" in busy.json()["detail"]
    clips = (await stored(api, created["project_id"])).clips
    assert [clip.status for clip in clips] == ["cancelled", "queued"]
    monkeypatch.undo()
    again = await api.client.post(url, headers=auth)
    assert again.status_code == 202
    assert (again.json()["clips_changed"], again.json()["status"]) == (1, "cancelled")


async def test_a_retry_whose_clip_kept_moving_is_a_503_to_send_again(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = await api.tenant()
    created = (await api.create(auth)).json()
    project_id = created["project_id"]
    for task_uuid in created["clips"]:
        await fail(api, project_id, task_uuid)
    url = f"/v1/projects/{project_id}/retry"
    another_writer_moves_scene_at_every_try(api, monkeypatch, 0)

    busy = await api.client.post(url, headers=auth)

    assert_problem(busy, 503)
    assert "were not retried" in busy.json()["detail"]
    clips = (await stored(api, project_id)).clips
    assert [clip.status for clip in clips] == ["failed", "queued"]
    monkeypatch.undo()
    again = await api.client.post(url, headers=auth)
    assert (again.status_code, again.json()["clips_changed"]) == (202, 1)


# --- retry -------------------------------------------------------------------------


async def test_retry_gives_a_clip_runware_failed_a_new_task_and_keeps_the_old_one(
    api: Api,
) -> None:
    auth = await api.tenant()
    created = (await api.create(auth)).json()
    project_id = created["project_id"]
    failed, ok = list(created["clips"])
    await fail(api, project_id, failed)
    await finish(api, project_id, ok)
    await api.drain()

    response = await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth)

    assert response.status_code == 202, response.text
    body = response.json()
    assert failed not in body["clips"]
    [new] = [uuid for uuid in body["clips"] if uuid != ok]
    assert body["clips"] == {ok: f"https://cdn.test/{ok}.mp4", new: "pending"}
    assert (body["status"], body["pending"], body["failed"]) == ("generating", 1, 0)
    assert body["clips_changed"] == 1
    by_uuid = {r["task_uuid"]: r for r in body["results"]}
    assert by_uuid[new]["status"] == "queued"
    assert by_uuid[new]["scene_index"] == 0
    [earlier] = by_uuid[new]["attempts"]
    assert (earlier["task_uuid"], earlier["status"], earlier["error"]["code"]) == (
        failed,
        "failed",
        "providerError",
    )
    [message] = await api.drain()
    command = SubmitClip.model_validate(message.body)
    assert (command.project_id, command.task_uuid, command.scene_index) == (project_id, new, 0)
    assert command.request.prompt == "tram climbing a steep street at dawn"
    lease = (await stored(api, project_id)).clips[0].lease
    assert lease is not None
    assert command.token == lease.token


async def test_retry_of_a_timed_out_clip_watches_the_same_task_again(api: Api) -> None:
    auth = await api.tenant()
    created = (await api.create(auth)).json()
    project_id = created["project_id"]
    timed_out, ok = list(created["clips"])
    await fail(api, project_id, timed_out, code=TIMED_OUT)
    await finish(api, project_id, ok)
    await api.drain()

    response = await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth)

    body = response.json()
    assert body["clips"] == {timed_out: "pending", ok: f"https://cdn.test/{ok}.mp4"}
    assert body["results"][0]["status"] == "processing"
    assert "attempts" not in body["results"][0]
    assert await api.drain() == []  # no new task is bought
    [message] = await api.drain(CHECK_CLIP)
    check = CheckClip.model_validate(message.body)
    assert (check.task_uuid, check.scene_index, check.check) == (timed_out, 0, 1)


async def test_retry_without_failed_clips_changes_and_submits_nothing(api: Api) -> None:
    auth = await api.tenant()
    created = (await api.create(auth)).json()
    await api.drain()

    response = await api.client.post(f"/v1/projects/{created['project_id']}/retry", headers=auth)

    assert response.status_code == 202
    assert response.json()["clips"] == created["clips"]
    assert response.json()["clips_changed"] == 0  # nothing to do, and the answer says so
    assert await api.drain() == []


@pytest.mark.parametrize("operation", ["retry", "cancel"])
async def test_retry_and_cancel_of_another_tenants_project_are_404(
    api: Api, operation: str
) -> None:
    created = (await api.create(await api.tenant("owner"))).json()
    await fail(api, created["project_id"], next(iter(created["clips"])))
    intruder = await api.tenant("intruder")

    response = await api.client.post(
        f"/v1/projects/{created['project_id']}/{operation}", headers=intruder
    )

    assert_problem(response, 404)
    project = await stored(api, created["project_id"])
    assert [clip.task_uuid for clip in project.clips] == list(created["clips"])
    assert project.status.value == "generating"


# --- the broker fails ---------------------------------------------------------------


class BrokenPublisher(Publisher):
    """A publisher whose broker never confirms anything."""

    def __init__(self) -> None:
        pass

    async def send(
        self,
        work_queue: str,
        message: Message,
        *,
        delay_s: float | None = None,
        to: str | None = None,
    ) -> None:
        raise PublishError("not confirmed")

    async def publish_event(self, event: Message) -> None:
        raise PublishError("not confirmed")


def break_publisher(api: Api) -> None:
    state: AppState = api.app.state.reelflow
    api.app.state.reelflow = dataclasses.replace(state, publisher=BrokenPublisher())


def expired(until: datetime, project: Project) -> bool:
    """Set to "now" by the create's own request, not ``lease_s`` (600 s) after the create."""
    return until - project.created_at < timedelta(seconds=5)


async def test_a_create_the_broker_does_not_confirm_is_stored_for_the_reconciler(
    api: Api,
) -> None:
    break_publisher(api)

    response = await api.create(await api.tenant())

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "generating"
    assert body["pending"] == 2
    project = await stored(api, body["project_id"])
    # Every lease already ran out: the reconciler submits the clips after its grace. (Compared
    # with the project's own stamps: the database's clock, which the local one is not.)
    assert all(
        clip.lease is not None and expired(clip.lease.until, project) for clip in project.clips
    )
    assert project.due_at is not None
    assert expired(project.due_at, project)
    assert await api.drain() == []


async def test_a_create_whose_work_queue_is_gone_is_stored_for_the_reconciler(api: Api) -> None:
    async with amqp_channel(api.connection) as channel:
        await channel.queue_delete(api.topology.queue(SUBMIT_CLIP))

    response = await api.create(await api.tenant())

    assert response.status_code == 202
    project = await stored(api, response.json()["project_id"])
    assert project.due_at is not None
    assert expired(project.due_at, project)


async def test_cancel_and_retry_answer_202_when_their_events_cannot_be_published(
    api: Api,
) -> None:
    auth = await api.tenant()
    created = (await api.create(auth)).json()
    project_id = created["project_id"]
    await fail(api, project_id, next(iter(created["clips"])))
    break_publisher(api)

    retried = await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth)
    cancelled = await api.client.post(f"/v1/projects/{project_id}/cancel", headers=auth)

    assert retried.status_code == 202
    assert cancelled.status_code == 202
    assert cancelled.json()["status"] == "cancelled"
