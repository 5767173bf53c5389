"""The copy sweep: a video that was never copied gets its ``StoreVideo`` again.

A copy can be lost without a trace: the poller dies between recording a success
and sending its ``StoreVideo``, or the command is dead-lettered. Every success
marks its project (``copy_due_at``, the earliest such success); every
``reconcile_interval_s`` each poller looks for projects marked longer than
``copy_sweep_after_s`` ago and claims each with a conditional update on the mark
it read (so one replica sweeps a project at a time; no leader). For every video
with no ``asset`` (neither stored nor given up on) whose task ended more than
``copy_sweep_after_s`` ago — a clip's success, or a video in a clip's ``attempts``
(billed too; its end marks the project the same way) — it sends a fresh ``StoreVideo``. The claim
moves the mark to now, so a project is looked at again ``copy_sweep_after_s``
later while a copy is outstanding; once none is, the mark goes.
``copy_sweep_after_s`` is longer than the copy ladder, so a copy still being
tried is not sent twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from reelflow_common.broker import Publisher
from reelflow_common.clock import Clock
from reelflow_common.logging import bound_context, get_logger
from reelflow_common.messages import StoreVideo
from reelflow_common.store import Project, ProjectStore, TaskVideo
from reelflow_common.topology import STORE_VIDEO

log = get_logger(__name__)


class CopySweep:
    """One sweep at a time: :meth:`run_once` every ``reconcile_interval_s`` (copies on only)."""

    def __init__(
        self,
        projects: ProjectStore,
        publisher: Publisher,
        *,
        clock: Clock,
        after_s: float,
        batch_size: int,
    ) -> None:
        self._projects = projects
        self._publisher = publisher
        self._now = clock
        self._after = timedelta(seconds=after_s)
        self._batch_size = batch_size

    async def run_once(self) -> int:
        """Sweep every project due now (up to a batch); how many copies it sent again."""
        now = self._now()
        before = now - self._after
        sent = 0
        for project_id, due_at in await self._projects.copies_due(
            before=before, limit=self._batch_size
        ):
            with bound_context(project_id=project_id):
                try:
                    sent += await self._sweep(project_id, due_at, now)
                except Exception:
                    # One project's trouble (a bug, an outage) must not stall the others.
                    log.exception("copy_sweep_failed")
        return sent

    async def _sweep(self, project_id: str, due_at: datetime, now: datetime) -> int:
        claimed = await self._projects.claim_copies(project_id, due_at=due_at, now=now)
        if claimed is None:
            return 0  # another replica sweeps it
        project, claimed_at = claimed
        before = now - self._after
        outstanding = uncopied(project)
        sent = 0
        for video in outstanding:
            if video.completed_at is None or video.completed_at >= before:
                continue  # younger than the sweep's wait: its own copy may still be running
            command = StoreVideo(
                project_id=project.id,
                scene_index=video.scene_index,
                task_uuid=video.task_uuid,
                video_url=video.video_url,
                correlation_id=project.correlation_id,
            )
            await self._publisher.send(STORE_VIDEO, command)
            sent += 1
            log.warning(
                "video_copy_swept",
                scene_index=video.scene_index,
                task_uuid=video.task_uuid,
                of_attempt=video.of_attempt,
            )
        if not outstanding:
            await self._projects.copies_swept(project, claimed=claimed_at)
        return sent


def uncopied(project: Project) -> list[TaskVideo]:
    """The videos of ``project`` (its clips' and their attempts') with no copy stored or given
    up on."""
    return [video for clip in project.clips for video in clip.videos() if video.asset is None]
