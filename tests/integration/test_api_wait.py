"""``?wait=`` is woken by the project's ``project.finished``, not by re-reading MongoDB."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from reelflow_api.deps import AppState
from reelflow_api.settings import Settings
from reelflow_common.broker import Publisher, amqp_channel
from reelflow_common.store import Project
from tests.integration.api_helpers import Api, finish, running_api
from tests.waiting import DEADLINE_S, eventually, eventually_matches

pytestmark = pytest.mark.integration

#: the safety-net re-read, far beyond the test's deadline: only an event can wake the waiter
NEVER_S = 600.0
#: a ?wait= the test never reaches (the API allows up to 120 s)
LONG_WAIT_S = 100


async def test_a_waiting_post_is_woken_by_the_projects_event_and_reads_mongodb_twice(
    settings_for: Callable[..., Any],
    mongo_db: Any,
    amqp_connection: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_for(Settings, wait_check_interval_s=NEVER_S)
    async with running_api(settings, mongo_db, amqp_connection) as api:
        state: AppState = api.app.state.reelflow
        reads = count_reads(state, monkeypatch)
        auth = await api.tenant()
        tenant_id = await api.keys.tenant_for_key(auth["Authorization"].removeprefix("Bearer "))
        assert tenant_id is not None

        request = asyncio.create_task(api.create(auth, wait=LONG_WAIT_S))
        listed = await eventually_matches(
            lambda: api.projects.list(tenant_id), lambda page: bool(page[0]), "the project stored"
        )
        project = listed[0][0]
        await eventually(lambda: state.wakeups.waiting() == 1, "the POST waiting")
        # Long enough for a poller at the old 0.5 s to have read several times.
        await asyncio.sleep(1.5)  # a test of what does not happen: no reads while nothing changes
        assert reads(project.id) == 1  # the read that starts the wait
        events = [event for clip in project.clips for event in await _finish(api, project, clip)]
        async with amqp_channel(api.connection) as channel:
            await Publisher(channel, api.topology, timeout_s=5).publish_events(events)

        response = await asyncio.wait_for(request, DEADLINE_S)

        assert response.status_code == 200, response.text
        assert response.json()["all_complete"] is True
        assert reads(project.id) == 2  # and one after the wake-up
        assert state.wakeups.waiting() == 0


async def test_a_waiter_whose_event_is_never_published_answers_at_its_deadline(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> None:
    settings = settings_for(Settings, wait_check_interval_s=NEVER_S)
    async with running_api(settings, mongo_db, amqp_connection) as api:
        state: AppState = api.app.state.reelflow

        response = await api.create(await api.tenant(), wait=0.5)

        assert response.status_code == 202
        assert response.json()["pending"] == 2
        assert state.wakeups.waiting() == 0


async def _finish(api: Api, project: Project, clip: Any) -> list[Any]:
    return (await finish(api, project.id, clip.task_uuid)).events


def count_reads(state: AppState, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], int]:
    """Count the app's reads of each project from now on; the count for a project id."""
    counts: dict[str, int] = {}
    get: Callable[..., Awaitable[Project | None]] = state.projects.get

    async def counted(project_id: str, *args: Any, **kwargs: Any) -> Project | None:
        counts[project_id] = counts.get(project_id, 0) + 1
        return await get(project_id, *args, **kwargs)

    monkeypatch.setattr(state.projects, "get", counted)
    return lambda project_id: counts.get(project_id, 0)
