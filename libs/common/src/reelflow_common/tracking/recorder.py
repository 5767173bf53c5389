"""Recording a task's end on its clip, and publishing what changed."""

from __future__ import annotations

from datetime import datetime

from reelflow_common.broker import Publisher
from reelflow_common.logging import get_logger
from reelflow_common.store import Change, ProjectStore, TaskResult, TaskSucceeded

log = get_logger(__name__)


class ClipRecorder:
    """Records a task's end on its clip and publishes what changed."""

    def __init__(self, projects: ProjectStore, publisher: Publisher) -> None:
        self.projects = projects
        self._publisher = publisher

    async def record(
        self,
        project_id: str,
        scene_index: int,
        task_uuid: str,
        result: TaskResult,
        *,
        submitted_at: datetime | None = None,
        correlation_id: str | None = None,
    ) -> Change:
        change = await self.projects.record(
            project_id,
            scene_index,
            task_uuid,
            result,
            submitted_at=submitted_at,
            correlation_id=correlation_id,
        )
        await self._publisher.publish_events(change.events)
        if not change.applied:
            log.info("clip_result_known", task_uuid=task_uuid, republished=len(change.events))
        elif isinstance(result, TaskSucceeded):
            log.info("clip_succeeded", task_uuid=task_uuid, cost=result.cost)
        else:
            log.warning("clip_failed", task_uuid=task_uuid, code=result.code, reason=result.message)
        return change
