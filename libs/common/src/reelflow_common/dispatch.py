"""Hand a project's queued clips to the submitter: the outbox step after a project is stored.

The project document is written first with ``dispatched: false``; then one
``SubmitClip`` per queued clip is published; then the flag is set. A process that
dies in between leaves the flag unset, and the submitter's sweeper dispatches the
project again. Duplicate ``SubmitClip`` messages bill nothing twice: the
submitter's conditional update and Runware's ``conflictTaskUUID`` absorb them.
"""

from __future__ import annotations

from reelflow_common.broker import Publisher
from reelflow_common.domain import ClipStatus
from reelflow_common.messages import SubmitClip
from reelflow_common.store import Project, ProjectStore
from reelflow_common.topology import SUBMIT_CLIP


async def dispatch_project(
    publisher: Publisher,
    projects: ProjectStore,
    project: Project,
    *,
    correlation_id: str | None = None,
) -> int:
    """Publish a ``SubmitClip`` for every queued clip, then mark the project dispatched."""
    sent = 0
    for clip in project.clips:
        if clip.status is ClipStatus.QUEUED:
            await publisher.send(
                SUBMIT_CLIP,
                SubmitClip(
                    project_id=project.id,
                    task_uuid=clip.task_uuid,
                    correlation_id=correlation_id,
                ),
            )
            sent += 1
    await projects.mark_dispatched(project)
    return sent
