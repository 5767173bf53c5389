"""Dispatch projects whose ``SubmitClip`` messages may never have been published.

The API stores a project, publishes one message per clip, then marks it
dispatched. If it died in between, or the broker was down, the project stays
undispatched; this finds it after a grace period and dispatches it again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reelflow_common.broker import Publisher
from reelflow_common.dispatch import dispatch_project
from reelflow_common.logging import get_logger
from reelflow_common.store import ProjectStore

log = get_logger(__name__)


async def sweep_undispatched(
    projects: ProjectStore, publisher: Publisher, *, grace_s: float
) -> int:
    """Dispatch every project left undispatched for longer than ``grace_s``; return how many."""
    older_than = datetime.now(UTC) - timedelta(seconds=grace_s)
    found = await projects.undispatched(older_than=older_than)
    for project in found:
        sent = await dispatch_project(publisher, projects, project)
        log.warning("project_redispatched", project_id=project.id, clips=sent)
    return len(found)
