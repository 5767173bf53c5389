"""The API in-process: creating and reading projects, as a client of the contract sees them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from reelflow_api.settings import Settings
from reelflow_common.broker import amqp_channel
from reelflow_common.domain import ClipStatus
from reelflow_common.messages import SubmitClip
from tests.integration.api_helpers import Api, assert_problem, finish, running_api

pytestmark = pytest.mark.integration

SEED_FIELDS = [
    "success",
    "project_id",
    "total_clips",
    "completed",
    "pending",
    "failed",
    "all_complete",
    "clips",
]


@pytest.fixture
async def api(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> AsyncIterator[Api]:
    settings = settings_for(Settings, default_duration=6, default_width=1920, default_height=1080)
    async with running_api(settings, mongo_db, amqp_connection) as api:
        yield api


async def test_create_answers_202_with_the_seed_compatible_status(api: Api) -> None:
    response = await api.create(await api.tenant())

    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["location"] == f"/v1/projects/{body['project_id']}"
    assert list(body)[: len(SEED_FIELDS)] == SEED_FIELDS
    assert body["success"] is True
    assert (body["total_clips"], body["completed"], body["pending"], body["failed"]) == (2, 0, 2, 0)
    assert body["all_complete"] is False
    assert body["status"] == "generating"
    assert body["title"] == "Trip to Lisbon"
    assert body["clips"] == {result["task_uuid"]: "pending" for result in body["results"]}
    assert [(r["scene_index"], r["status"]) for r in body["results"]] == [
        (0, "queued"),
        (1, "queued"),
    ]
    assert body["created_at"].endswith("Z") or body["created_at"].endswith("+00:00")
    assert body["updated_at"]


async def test_create_publishes_one_submit_clip_per_clip_carrying_its_request_and_lease(
    api: Api,
) -> None:
    response = await api.create(await api.tenant(), headers={"X-Correlation-ID": "req-42"})
    body = response.json()

    received = await api.drain()

    assert sorted(m.body["task_uuid"] for m in received) == sorted(body["clips"])
    for message in received:
        command = SubmitClip.model_validate(message.body)
        assert command.project_id == body["project_id"]
        assert command.correlation_id == "req-42"
        assert message.type == "submit_clip"
        assert message.headers["project_id"] == body["project_id"]
        assert message.headers["task_uuid"] == command.task_uuid
        assert message.headers["correlation_id"] == "req-42"
    stored = await api.projects.get(body["project_id"])
    assert stored is not None
    commands = {m.body["scene_index"]: SubmitClip.model_validate(m.body) for m in received}
    for clip in stored.clips:
        command = commands[clip.scene_index]
        assert clip.lease is not None
        assert (command.task_uuid, command.token, command.lease_until) == (
            clip.task_uuid,
            clip.lease.token,
            clip.lease.until,
        )
    assert commands[1].request.prompt == "sunset over the river"
    assert commands[1].model == stored.model


# --- fair share: straight to a tenant's lane ------------------------------------------------


async def test_a_create_for_a_tenant_whose_lane_a_submitter_consumes_goes_to_the_lane_only(
    api: Api,
) -> None:
    # The sorting hop saved: the shared queue never sees these clips, and the lane gets
    # what the sorter would have put there (the same message, our headers and no others).
    sorted_first = (await api.create(await api.tenant("sorted"))).json()
    via_shared = await api.drain()
    tenant_id, auth = await api.new_tenant()
    lane = await api.announce_lane(tenant_id)

    body = (await api.create(auth)).json()

    assert await api.drain() == []
    received = await api.take(lane)
    assert sorted(m.body["task_uuid"] for m in received) == sorted(body["clips"])
    assert sorted(m.body["task_uuid"] for m in via_shared) == sorted(sorted_first["clips"])
    for message, shared in zip(received, via_shared, strict=True):
        assert message.type == shared.type == "submit_clip"
        assert sorted(message.headers) == sorted(shared.headers)
        assert message.headers["project_id"] == body["project_id"]
        assert SubmitClip.model_validate(message.body).tenant_id == tenant_id


async def test_a_create_whose_lane_is_gone_goes_through_the_shared_queue_and_forgets_it(
    api: Api,
) -> None:
    tenant_id, auth = await api.new_tenant()
    lane = await api.announce_lane(tenant_id)
    async with amqp_channel(api.connection) as channel:
        await channel.queue_delete(lane)  # expired, or deleted by an operator

    response = await api.create(auth)

    assert response.status_code == 202
    assert sorted(m.body["task_uuid"] for m in await api.drain()) == sorted(
        response.json()["clips"]
    )
    assert not api.knows_lane(tenant_id)  # the next project pays no failed publish


async def test_create_applies_the_configured_defaults(api: Api) -> None:
    body = {"scenes": [{"prompt": "a fox in the snow"}]}

    response = await api.create(await api.tenant(), body)

    stored = await api.projects.get(response.json()["project_id"], with_requests=True)
    assert stored is not None
    assert stored.model == api.settings.default_model
    assert stored.title == ""
    assert stored.clips[0].status is ClipStatus.QUEUED
    [request] = stored.requests or []
    assert (request.duration, request.width, request.height) == (6, 1920, 1080)


async def test_create_keeps_the_fields_a_scene_names_for_a_model_it_has_no_rules_for(
    api: Api,
) -> None:
    scene = {
        "prompt": "a fox",
        "negative_prompt": "blur",
        "duration": 6,
        "width": 640,
        "height": 480,
        "seed": 7,
        "fps": 24,
    }

    response = await api.create(await api.tenant(), {"model": "acme:video@2", "scenes": [scene]})

    assert response.status_code == 202, response.text
    stored = await api.projects.get(response.json()["project_id"], with_requests=True)
    assert stored is not None
    assert stored.model == "acme:video@2"
    [request] = stored.requests or []
    assert request.model_dump(include=set(scene)) == scene


async def test_get_answers_the_same_status_as_create(api: Api) -> None:
    auth = await api.tenant()
    created = (await api.create(auth)).json()

    response = await api.client.get(f"/v1/projects/{created['project_id']}", headers=auth)

    assert response.status_code == 200
    assert response.json() == created


async def test_a_status_the_client_has_is_a_304_until_the_project_changes(api: Api) -> None:
    auth = await api.tenant()
    created = (await api.create(auth)).json()
    path = f"/v1/projects/{created['project_id']}"

    first = await api.client.get(path, headers=auth)
    etag = first.headers["etag"]
    same = await api.client.get(path, headers=auth | {"If-None-Match": etag})
    listed = await api.client.get(path, headers=auth | {"If-None-Match": f'W/"other", {etag}'})
    anything = await api.client.get(path, headers=auth | {"If-None-Match": "*"})
    stale = await api.client.get(path, headers=auth | {"If-None-Match": 'W/"other"'})
    await finish(api, created["project_id"], created["results"][0]["task_uuid"])
    changed = await api.client.get(path, headers=auth | {"If-None-Match": etag})
    again = await api.client.get(path, headers=auth | {"If-None-Match": changed.headers["etag"]})

    assert first.status_code == 200
    assert etag.startswith('W/"')
    assert first.headers["cache-control"] == "private, no-cache"
    for unchanged in (same, listed, anything):
        assert unchanged.status_code == 304
        assert unchanged.content == b""
        assert unchanged.headers["etag"] == etag
        assert unchanged.headers["cache-control"] == "private, no-cache"
    assert (stale.status_code, stale.json()) == (200, first.json())
    assert changed.status_code == 200
    assert changed.json()["completed"] == 1
    assert changed.headers["etag"] != etag
    assert again.status_code == 304


async def test_another_tenant_with_the_etag_gets_a_404_not_a_304(api: Api) -> None:
    auth = await api.tenant("a")
    created = (await api.create(auth)).json()
    path = f"/v1/projects/{created['project_id']}"
    etag = (await api.client.get(path, headers=auth)).headers["etag"]

    other = await api.client.get(path, headers=await api.tenant("b") | {"If-None-Match": etag})

    assert_problem(other, 404)


async def test_another_tenants_project_is_not_found(api: Api) -> None:
    created = (await api.create(await api.tenant("a"))).json()
    other = await api.tenant("b")

    response = await api.client.get(f"/v1/projects/{created['project_id']}", headers=other)

    assert_problem(response, 404)


async def test_an_unknown_project_is_not_found(api: Api) -> None:
    response = await api.client.get(f"/v1/projects/{uuid.uuid4()}", headers=await api.tenant())

    assert_problem(response, 404)


# --- Idempotency-Key -------------------------------------------------------------


async def test_same_key_and_body_return_the_first_project_and_submit_once(api: Api) -> None:
    auth = await api.tenant()
    key = {"Idempotency-Key": "order-1"}

    first = await api.create(auth, headers=key)
    again = await api.create(auth, headers=key)

    assert first.status_code == 202
    assert again.status_code in (200, 202)
    assert again.json()["project_id"] == first.json()["project_id"]
    assert again.json()["clips"] == first.json()["clips"]
    assert "idempotency-replayed" not in first.headers
    assert again.headers["idempotency-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert len(await api.drain()) == 2
    listed = (await api.client.get("/v1/projects", headers=auth)).json()
    assert [item["project_id"] for item in listed["items"]] == [first.json()["project_id"]]


async def test_same_key_with_another_body_is_a_422_naming_the_header(api: Api) -> None:
    auth = await api.tenant()
    key = {"Idempotency-Key": "order-1"}
    await api.create(auth, headers=key)

    response = await api.create(auth, {"scenes": [{"prompt": "something else"}]}, headers=key)

    problem = assert_problem(response, 422)
    assert ["header", "idempotency-key"] in [e["loc"] for e in problem["errors"]]


async def test_the_same_key_of_another_tenant_makes_another_project(api: Api) -> None:
    key = {"Idempotency-Key": "order-1"}

    first = await api.create(await api.tenant("a"), headers=key)
    second = await api.create(await api.tenant("b"), headers=key)

    assert second.status_code == 202
    assert second.json()["project_id"] != first.json()["project_id"]
    assert len(await api.drain()) == 4


async def test_a_replayed_create_submits_nothing_again(api: Api) -> None:
    auth = await api.tenant()
    key = {"Idempotency-Key": "order-1"}
    await api.create(auth, headers=key)
    await api.drain()

    await api.create(auth, headers=key)

    assert await api.drain() == []


async def test_a_replay_that_waits_is_marked_too_and_a_new_key_is_not(api: Api) -> None:
    auth = await api.tenant()
    first = await api.create(auth, headers={"Idempotency-Key": "order-1"})

    waited = await api.create(auth, headers={"Idempotency-Key": "order-1"}, wait=0.01)
    other = await api.create(auth, headers={"Idempotency-Key": "order-2"})
    keyless = await api.create(auth)

    assert waited.json()["project_id"] == first.json()["project_id"]
    assert waited.headers["idempotency-replayed"] == "true"
    assert "idempotency-replayed" not in other.headers
    assert "idempotency-replayed" not in keyless.headers


async def test_a_key_with_an_equivalent_body_is_a_replay(api: Api) -> None:
    auth = await api.tenant()
    key = {"Idempotency-Key": "order-1"}
    explicit = {"title": "", "scenes": [{"prompt": "a fox", "seed": None}]}

    first = await api.create(auth, {"scenes": [{"prompt": "a fox"}]}, headers=key)
    again = await api.create(auth, explicit, headers=key)

    assert again.json()["project_id"] == first.json()["project_id"]
