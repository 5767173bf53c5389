"""The API in-process: listing a tenant's projects, newest first, page by page."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from reelflow_common.domain import ClipRequest
from reelflow_common.store import NewProject, Project, ProjectStore
from tests.integration.api_helpers import Api, assert_problem, finish, isolated_api

# Every test lists the projects of a tenant of its own: one app serves the module.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(amqp_url: str, mongo_url: str) -> AsyncIterator[Api]:
    async with isolated_api(amqp_url, mongo_url) as api:
        yield api


def ticking_clock() -> Iterator[datetime]:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    return (start + timedelta(seconds=i) for i in range(10_000))


class Tenant:
    """A tenant with its key, creating projects one second apart (so "newest" is well defined)."""

    def __init__(self, api: Api, auth: dict[str, str], tenant_id: str) -> None:
        self.api = api
        self.auth = auth
        self.tenant_id = tenant_id
        times = ticking_clock()
        self.store = ProjectStore(api.db, clock=lambda: next(times))

    async def project(self, title: str, clips: int = 1) -> Project:
        new = NewProject(
            tenant_id=self.tenant_id,
            title=title,
            model="google:3@3",
            scenes=[ClipRequest(prompt=f"{title} {i}") for i in range(clips)],
        )
        return (await self.store.create(new)).project

    async def list(self, **params: Any) -> dict[str, Any]:
        response = await self.api.client.get("/v1/projects", params=params, headers=self.auth)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


async def tenant(api: Api, name: str = "acme") -> Tenant:
    tenant_id = await api.keys.create_tenant(name)
    key = await api.keys.issue_key(tenant_id)
    return Tenant(api, {"Authorization": f"Bearer {key}"}, tenant_id)


def titles(page: dict[str, Any]) -> list[str]:
    return [item["title"] for item in page["items"]]


async def test_a_new_tenant_has_an_empty_list(api: Api) -> None:
    me = await tenant(api)

    assert await me.list() == {"items": [], "next_cursor": None}


async def test_projects_are_listed_newest_first_without_results(api: Api) -> None:
    me = await tenant(api)
    for title in ("first", "second", "third"):
        await me.project(title, clips=2)

    page = await me.list()

    assert titles(page) == ["third", "second", "first"]
    assert page["next_cursor"] is None
    for item in page["items"]:
        assert "results" not in item
        assert item["total_clips"] == 2
        assert len(item["clips"]) == 2
        got = await api.client.get(f"/v1/projects/{item['project_id']}", headers=me.auth)
        assert {k: v for k, v in got.json().items() if k != "results"} == item


async def test_the_cursor_pages_through_every_project_once(api: Api) -> None:
    me = await tenant(api)
    created = [(await me.project(f"p{i:02}")).id for i in range(11)]

    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        page = await me.list(**params)
        pages += 1
        assert len(page["items"]) <= 4
        seen += [item["project_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == 3
    assert seen == created[::-1]


async def test_a_page_that_ends_exactly_at_the_last_project_has_no_next_cursor(api: Api) -> None:
    me = await tenant(api)
    for i in range(4):
        await me.project(f"p{i}")

    first = await me.list(limit=2)
    second = await me.list(limit=2, cursor=first["next_cursor"])

    assert titles(first) == ["p3", "p2"]
    assert titles(second) == ["p1", "p0"]
    assert second["next_cursor"] is None


async def test_limit_defaults_to_20(api: Api) -> None:
    me = await tenant(api)
    for i in range(21):
        await me.project(f"p{i}")

    page = await me.list()

    assert len(page["items"]) == 20
    assert page["next_cursor"] is not None


async def test_the_status_filter_lists_only_projects_in_that_status(api: Api) -> None:
    me = await tenant(api)
    done = await me.project("done")
    cancelled = await me.project("cancelled")
    await me.project("generating")
    [clip] = done.clips
    await finish(api, done.id, clip.task_uuid)
    await api.projects.cancel(cancelled.id, tenant_id=me.tenant_id)

    assert titles(await me.list(status="completed")) == ["done"]
    assert titles(await me.list(status="cancelled")) == ["cancelled"]
    assert titles(await me.list(status="generating")) == ["generating"]
    assert titles(await me.list(status="failed")) == []
    assert titles(await me.list()) == ["generating", "cancelled", "done"]


async def test_a_tenant_lists_only_its_own_projects(api: Api) -> None:
    me, other = await tenant(api, "me"), await tenant(api, "other")
    await me.project("mine")
    await other.project("theirs")

    assert titles(await me.list()) == ["mine"]
    assert titles(await other.list()) == ["theirs"]


async def test_a_cursor_of_another_tenant_is_a_422(api: Api) -> None:
    # It was a 200 with an empty page: a cursor is bound to the tenant it was returned to.
    me, other = await tenant(api, "me"), await tenant(api, "other")
    for i in range(3):
        await other.project(f"theirs{i}")
    await me.project("mine")
    their_cursor = (await other.list(limit=1))["next_cursor"]

    refused = await api.client.get("/v1/projects", params={"cursor": their_cursor}, headers=me.auth)

    problem = assert_problem(refused, 422)
    assert problem["detail"] == (
        "query.cursor: a cursor returned to another tenant's API key; start again without one"
    )
    assert [error["loc"] for error in problem["errors"]] == [["query", "cursor"]]


async def test_a_cursor_reused_with_another_status_filter_is_a_422_naming_its_own(
    api: Api,
) -> None:
    # It was a 200 with items of the other filter, paged from the wrong place.
    me = await tenant(api)
    for i in range(3):
        cancelled = await me.project(f"c{i}")
        await api.projects.cancel(cancelled.id, tenant_id=me.tenant_id)
    cancelled_cursor = (await me.list(status="cancelled", limit=1))["next_cursor"]
    unfiltered_cursor = (await me.list(limit=1))["next_cursor"]

    other_filter = await api.client.get(
        "/v1/projects", params={"status": "completed", "cursor": cancelled_cursor}, headers=me.auth
    )
    none_then_one = await api.client.get(
        "/v1/projects", params={"status": "cancelled", "cursor": unfiltered_cursor}, headers=me.auth
    )
    same = await me.list(status="cancelled", limit=1, cursor=cancelled_cursor)

    assert assert_problem(other_filter, 422)["detail"] == (
        "query.cursor: a cursor of the listing with status=cancelled; send it with that"
        " filter, or start again without a cursor"
    )
    assert assert_problem(none_then_one, 422)["detail"] == (
        "query.cursor: a cursor of the listing with no status filter; send it without a status"
        " filter, or start again without a cursor"
    )
    assert titles(same) == ["c1"]
