"""The indexes of ``projects``: the sweeps' marks indexed sparse, the dense ones of
earlier releases dropped at start, however often and on however many replicas."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reelflow_common.domain import ClipRequest
from reelflow_common.mongo import Database
from reelflow_common.store import NewProject, ProjectStore
from reelflow_common.store.documents import RETIRED_PROJECT_INDEXES
from reelflow_common.store.transitions.markers import ATTEMPTS_DUE, COPY_DUE, SETTLE_DUE

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
#: each sweep's mark and the index it reads by
SWEPT = {
    COPY_DUE: "copy_due_sparse",
    ATTEMPTS_DUE: "attempts_due_sparse",
    SETTLE_DUE: "settle_due_sparse",
}
#: what releases before this one made: a dense index of each mark
DENSE = {COPY_DUE: "copy_due", ATTEMPTS_DUE: "attempts_due", SETTLE_DUE: "settle_due"}


async def _project(store: ProjectStore) -> str:
    new = NewProject(
        tenant_id="t",
        title="Trip to Lisbon",
        model="google:3@3",
        scenes=[ClipRequest(prompt="a harbour at dusk", duration=4, width=1280)],
    )
    return (await store.create(new)).project.id


async def _marked_projects(store: ProjectStore, mongo_db: Database) -> dict[str, str]:
    """A project per mark, marked an hour ago, and one without any: {mark: project id}."""
    await _project(store)
    marked: dict[str, str] = {}
    for mark in SWEPT:
        marked[mark] = await _project(store)
        await mongo_db["projects"].update_one(
            {"_id": marked[mark]}, {"$set": {mark: NOW - timedelta(hours=1)}}
        )
    return marked


async def _due(store: ProjectStore) -> dict[str, list[str]]:
    """What each sweep finds due now."""
    found = {
        COPY_DUE: await store.copies_due(before=NOW, limit=10),
        ATTEMPTS_DUE: await store.attempts_due(before=NOW, limit=10),
        SETTLE_DUE: await store.settlements_due(before=NOW, limit=10),
    }
    return {mark: [project_id for project_id, _ in due] for mark, due in found.items()}


async def _indexes(mongo_db: Database) -> dict[str, dict[str, Any]]:
    return dict(await mongo_db["projects"].index_information())


async def test_an_upgrade_replaces_the_dense_indexes_of_the_marks_with_sparse_ones(
    mongo_db: Database,
) -> None:
    projects = mongo_db["projects"]
    for mark, name in DENSE.items():  # as a release before this one left them
        await projects.create_index([(mark, 1)], name=name)
    assert set(RETIRED_PROJECT_INDEXES) == set(DENSE.values())
    replicas = [ProjectStore(mongo_db) for _ in range(3)]
    marked = await _marked_projects(replicas[0], mongo_db)

    # several replicas starting at once, then each again (a restart)
    await asyncio.gather(*(replica.ensure_indexes() for replica in replicas))
    for replica in replicas:
        await replica.ensure_indexes()

    indexes = await _indexes(mongo_db)
    assert not set(DENSE.values()) & set(indexes)
    for mark, name in SWEPT.items():
        assert indexes[name]["key"] == [(mark, 1)]
        assert indexes[name].get("sparse") is True
    assert await _due(replicas[0]) == {mark: [project_id] for mark, project_id in marked.items()}


async def test_each_sweep_finds_what_is_due_earliest_first_by_its_sparse_index(
    mongo_db: Database,
) -> None:
    store = ProjectStore(mongo_db)
    await store.ensure_indexes()
    marked: dict[str, list[tuple[int, str]]] = {mark: [] for mark in SWEPT}
    for _ in range(3):
        await _project(store)  # no mark: not in the sparse indexes
    for minutes in (30, 10, 20, -5):  # the last one not due yet
        for mark in SWEPT:
            project_id = await _project(store)
            await mongo_db["projects"].update_one(
                {"_id": project_id}, {"$set": {mark: NOW - timedelta(minutes=minutes)}}
            )
            if minutes > 0:
                marked[mark].append((minutes, project_id))

    assert await _due(store) == {
        mark: [project_id for _, project_id in sorted(due, reverse=True)]
        for mark, due in marked.items()
    }
    for mark, name in SWEPT.items():
        # the query of ``ProjectCollection._due_by``
        found = mongo_db["projects"].find({mark: {"$lt": NOW}}, {mark: 1})
        plan = (await found.sort(mark, 1).limit(10).explain())["queryPlanner"]["winningPlan"]
        assert [stage.get("indexName") for stage in _stages(plan) if "indexName" in stage] == [
            name
        ], plan
        assert "SORT" not in {stage.get("stage") for stage in _stages(plan)}, plan


def _stages(plan: Any) -> Iterator[dict[str, Any]]:
    """Every stage of an explained plan, nested ones too (MongoDB's shapes and SecantusDB's)."""
    if isinstance(plan, dict):
        if "stage" in plan:
            yield plan
        for value in plan.values():
            yield from _stages(value)
    elif isinstance(plan, list):
        for value in plan:
            yield from _stages(value)
