"""prepare_database builds the indexes first, and upgrades old documents once, however
often it runs."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from reelflow_common.mongo import Database
from reelflow_common.store import ProjectStore
from reelflow_common.store.migration import migrate_v1_projects
from reelflow_common.store.timefmt import utcnow
from reelflow_devtools.database import prepare_database
from tests.unit.test_migration import v1_project

pytestmark = pytest.mark.integration


async def test_prepare_database_upgrades_v1_projects_once(
    mongo_db: Database, mongo_url: str, mongo_database: str
) -> None:
    projects = mongo_db["projects"]
    await projects.create_index([("dispatched", 1), ("undispatched_since", 1)], name="undispatched")
    await projects.insert_one(v1_project())

    first = await prepare_database(mongo_url, mongo_database)
    upgraded: dict[str, Any] | None = await projects.find_one({"_id": "p1"})
    second = await prepare_database(mongo_url, mongo_database)

    assert (first, second) == (1, 0)
    assert upgraded is not None
    assert upgraded["schema"] == 2
    assert await projects.find_one({"_id": "p1"}) == upgraded
    assert "undispatched" not in await projects.index_information()
    project = await ProjectStore(mongo_db).get("p1")
    assert project is not None
    assert [clip.task_uuid for clip in project.clips] == ["t0", "t1", "t2"]


async def test_prepare_database_builds_the_poll_stats_index(
    mongo_db: Database, mongo_url: str, mongo_database: str
) -> None:
    # The poller builds it at start too; building it first keeps it from racing the first write.
    await prepare_database(mongo_url, mongo_database)

    assert "day" in await mongo_db["poll_stats"].index_information()


class ProjectUpdates(monitoring.CommandListener):
    """The write concern of each ``update`` command on ``projects`` a client sends."""

    def __init__(self) -> None:
        self.write_concerns: list[Any] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "update" and event.command["update"] == "projects":
            self.write_concerns.append(event.command.get("writeConcern"))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_the_upgrade_writes_with_majority_write_concern(
    mongo_db: Database, mongo_url: str
) -> None:
    # As every other write to projects: an upgrade a failover rolled back would leave v1.
    await mongo_db["projects"].insert_one(v1_project())
    updates = ProjectUpdates()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_url, uuidRepresentation="standard", tz_aware=True, event_listeners=[updates]
    )
    try:
        assert await migrate_v1_projects(client[mongo_db.name], now=utcnow()) == 1
    finally:
        await client.close()

    assert updates.write_concerns == [{"w": "majority"}]
