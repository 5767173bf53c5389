"""``GET /v1/projects/{id}/scenes``: what a project asked for, as a client that reloads sees it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from reelflow_api.settings import Settings
from tests.integration.api_helpers import TWO_SCENES, Api, assert_problem, running_api

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> AsyncIterator[Api]:
    settings = settings_for(Settings, default_duration=6, default_width=1920, default_height=1080)
    async with running_api(settings, mongo_db, amqp_connection) as api:
        yield api


async def test_the_scenes_are_what_the_project_asked_for_with_the_defaults_applied(
    api: Api,
) -> None:
    auth = await api.tenant()
    every_field = {
        "prompt": "tram climbing a steep street at dawn",
        "negative_prompt": "blurry, [text]",
        "duration": 4,
        "width": 1280,
        "height": 720,
        "seed": 42,
        "fps": 24,
    }
    body = {
        "title": "Trip to Lisbon",
        "model": "acme:video@2",
        "scenes": [every_field, {"prompt": "sunset over the river"}],
    }
    created = (await api.create(auth, body)).json()

    response = await api.client.get(f"/v1/projects/{created['project_id']}/scenes", headers=auth)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "project_id": created["project_id"],
        "title": "Trip to Lisbon",
        "model": "acme:video@2",
        "scenes": [
            {"scene_index": 0, **every_field},
            # what the scene did not name is left out, or the default it was made with
            {
                "scene_index": 1,
                "prompt": "sunset over the river",
                "duration": 6,
                "width": 1920,
                "height": 1080,
            },
        ],
    }
    # It never changes: the client may keep it, its own (another key asks again).
    assert response.headers["cache-control"] == "private, max-age=3600"
    assert response.headers["vary"] == "Authorization"


async def test_a_project_that_named_no_model_shows_the_default_one(api: Api) -> None:
    auth = await api.tenant()
    created = (await api.create(auth, {"scenes": [{"prompt": "a fox in the snow"}]})).json()

    response = await api.client.get(f"/v1/projects/{created['project_id']}/scenes", headers=auth)

    assert response.status_code == 200, response.text
    assert response.json()["model"] == api.settings.default_model
    assert response.json()["title"] == ""


async def test_the_status_stays_as_it_was_without_the_requests(api: Api) -> None:
    auth = await api.tenant()
    created = (await api.create(auth, TWO_SCENES)).json()

    status = await api.client.get(f"/v1/projects/{created['project_id']}", headers=auth)

    assert "scenes" not in status.json()
    assert all("prompt" not in clip for clip in status.json()["results"])


async def test_another_tenants_project_has_no_scenes_to_show(api: Api) -> None:
    created = (await api.create(await api.tenant("a"))).json()
    other = await api.tenant("b")

    response = await api.client.get(f"/v1/projects/{created['project_id']}/scenes", headers=other)

    problem = assert_problem(response, 404)
    assert TWO_SCENES["scenes"][0]["prompt"] not in response.text
    assert response.headers["cache-control"] == "no-store"
    # The same answer as for its status: nothing says the project exists.
    status = await api.client.get(f"/v1/projects/{created['project_id']}", headers=other)
    assert problem["detail"] == status.json()["detail"]


async def test_an_unknown_project_has_no_scenes(api: Api) -> None:
    auth = await api.tenant()
    project_id = uuid.uuid4()

    response = await api.client.get(f"/v1/projects/{project_id}/scenes", headers=auth)

    problem = assert_problem(response, 404)
    status = await api.client.get(f"/v1/projects/{project_id}", headers=auth)
    assert problem["detail"] == status.json()["detail"] == "No such project."


@pytest.mark.parametrize("project_id", ["not-a-uuid", "x" * 300, "%20", "a.b", "$where"])
async def test_a_malformed_id_answers_as_the_status_does(api: Api, project_id: str) -> None:
    auth = await api.tenant()

    status = await api.client.get(f"/v1/projects/{project_id}", headers=auth)
    scenes = await api.client.get(f"/v1/projects/{project_id}/scenes", headers=auth)

    assert_problem(scenes, status.status_code)
    assert scenes.json()["detail"] == status.json()["detail"]


async def test_without_a_key_the_scenes_are_a_401(api: Api) -> None:
    created = (await api.create(await api.tenant())).json()

    response = await api.client.get(f"/v1/projects/{created['project_id']}/scenes")

    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
