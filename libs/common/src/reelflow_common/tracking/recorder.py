"""Recording a task's end on its clip, and publishing what changed (and, on a video this
writer applied with copies on, the clip's or an attempt's, the ``StoreVideo`` that keeps it)."""

from __future__ import annotations

from datetime import datetime

from reelflow_common.broker import Publisher
from reelflow_common.domain import ClipStatus
from reelflow_common.logging import get_logger
from reelflow_common.messages import (
    AttemptStored,
    AttemptSucceeded,
    AttemptView,
    ClipStored,
    ClipUpdated,
    ClipView,
    Event,
    StoreVideo,
)
from reelflow_common.store import (
    TIMED_OUT,
    Change,
    ClipState,
    ProjectStore,
    TaskFailed,
    TaskResult,
    TaskSucceeded,
)
from reelflow_common.topology import STORE_VIDEO

log = get_logger(__name__)


class ClipRecorder:
    """Records a task's end on its clip and publishes what changed."""

    def __init__(
        self, projects: ProjectStore, publisher: Publisher, *, copies: bool = False
    ) -> None:
        self.projects = projects
        self._publisher = publisher
        self._copies = copies

    async def record(
        self,
        project_id: str,
        scene_index: int,
        task_uuid: str,
        result: TaskResult,
        *,
        submitted_at: datetime | None = None,
        correlation_id: str | None = None,
        chain_token: str | None = None,
        only_clip: bool = False,
        unattended: ClipState | None = None,
        late_follow_s: float = 0.0,
        chain_goes_on: bool = False,
    ) -> Change:
        """Record ``result`` (Runware's answer: whatever chain brings it); ``only_clip``: the
        project has this one clip; ``unattended``: the clip as read by a caller no message
        stands behind, its settlement is marked owed for the settle sweep
        (:meth:`ProjectStore.record`).

        ``chain_token``: the token of the chain (or the lease as read) that decided it. Our
        ceiling (``timedOut``) is not Runware's word but a chain's: it ends the clip only
        while that chain holds the clip's lease, so a stale chain (one following the task
        in an attempt, or one a re-arm replaced) never times out a clip another chain
        watches; elsewhere (an attempt) it is recorded as any end.

        ``late_follow_s`` (the ceiling's ``Record``): the clip it fails keeps its task followed
        this long more, with its reservation (:meth:`ProjectStore.time_out`; ``Change.follow``
        says under which lease); ``chain_goes_on``: the chain of ``chain_token`` follows it on
        (else the attempts reconciler starts that chain).
        """
        ceiling = isinstance(result, TaskFailed) and result.code == TIMED_OUT
        change = None
        if ceiling and late_follow_s > 0:
            assert isinstance(result, TaskFailed)
            change = await self.projects.time_out(
                project_id,
                scene_index,
                task_uuid,
                result,
                token=chain_token,
                follow_s=late_follow_s,
                goes_on=chain_goes_on,
                submitted_at=submitted_at,
                correlation_id=correlation_id,
                only_clip=only_clip,
                unattended=unattended,
            )
        if change is None:
            change = await self.projects.record(
                project_id,
                scene_index,
                task_uuid,
                result,
                submitted_at=submitted_at,
                correlation_id=correlation_id,
                token=chain_token if ceiling else None,
                only_clip=only_clip,
                unattended=unattended,
            )
        await self._publisher.publish_events(change.events)
        # Only the writer that applied the success sends its copy: a duplicate (webhook hint
        # and chain, reconciler, redelivery) would download the video again. A crash between
        # the success and this send is repaired by the assets sweep (``assets_sweep``).
        if self._copies and change.applied:
            for command in copies_due(project_id, change.events):
                await self._publisher.send(STORE_VIDEO, command)
        if not change.applied:
            log.info("clip_result_known", task_uuid=task_uuid, republished=len(change.events))
        elif isinstance(result, TaskSucceeded):
            log.info("clip_succeeded", task_uuid=task_uuid, cost=result.cost)
        else:
            log.warning("clip_failed", task_uuid=task_uuid, code=result.code, reason=result.message)
            if change.follow is not None:
                log.info("clip_task_followed_late", task_uuid=task_uuid, until=change.follow.until)
        return change


def copies_due(project_id: str, events: list[Event]) -> list[StoreVideo]:
    """A ``StoreVideo`` for each video among ``events`` that no later event stored: a clip's
    success (``clip.updated``), or a video a task in its ``attempts`` delivered
    (``clip.attempt_succeeded``: billed too, so kept too).

    Applied on a writer's own (applied) events only, never on those a repair
    re-publishes: each copy is a download, and a second one costs bandwidth and time
    (the stored write is guarded, so it is only waste, never a wrong answer).
    """
    stored = {
        (e.scene_index, e.task_uuid) for e in events if isinstance(e, ClipStored | AttemptStored)
    }
    commands: dict[tuple[int, str], StoreVideo] = {}
    for event in events:
        video: ClipView | AttemptView
        if isinstance(event, ClipUpdated):
            scene_index, video = event.clip.scene_index, event.clip
        elif isinstance(event, AttemptSucceeded):
            scene_index, video = event.scene_index, event.attempt
        else:
            continue
        key = (scene_index, video.task_uuid)
        if video.status is not ClipStatus.SUCCESS or not video.video_url or key in stored:
            continue
        commands[key] = StoreVideo(
            project_id=project_id,
            scene_index=scene_index,
            task_uuid=video.task_uuid,
            video_url=video.video_url,
            correlation_id=event.correlation_id,
        )
    return list(commands.values())
