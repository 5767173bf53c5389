"""``CheckClip`` (a due poll) and ``RecordRunwareResult`` (a webhook): one path to the store."""

from __future__ import annotations

from datetime import UTC, datetime

from reelflow_common.broker import Publisher
from reelflow_common.domain import ClipStatus
from reelflow_common.logging import get_logger
from reelflow_common.messages import CheckClip, RecordRunwareResult
from reelflow_common.runware import RunwareClient, RunwareError, parse_task_states
from reelflow_common.store import Clip, ProjectStore
from reelflow_common.topology import CHECK_CLIP
from reelflow_poller.service import CheckAgain, Decision, Failed, Policy, Succeeded

log = get_logger(__name__)


class ClipRecorder:
    """Applies a decision to the store and publishes what changed."""

    def __init__(self, projects: ProjectStore, publisher: Publisher) -> None:
        self.projects = projects
        self._publisher = publisher

    async def tracked_clip(self, project_id: str, task_uuid: str) -> Clip | None:
        """The clip if it is still being tracked; re-publishes the events of a finished one."""
        project = await self.projects.get(project_id)
        clip = project.clip(task_uuid) if project else None
        if clip is None:
            # A retried clip got a new task UUID, or the project is gone: nothing to track.
            log.info("clip_not_tracked")
            return None
        if clip.status.is_terminal:
            # A crash may have come between write and publish; consumers drop duplicate seqs.
            await self._publisher.publish_events(
                await self.projects.events_for_clip(project_id, task_uuid)
            )
            return None
        return clip

    async def apply(self, project_id: str, task_uuid: str, decision: Succeeded | Failed) -> None:
        now = datetime.now(UTC)
        if isinstance(decision, Succeeded):
            state = decision.state
            events = await self.projects.record_success(
                project_id,
                task_uuid,
                video_url=state.video_url or "",
                video_uuid=state.video_uuid,
                cost=state.cost,
                seed=state.seed,
                completed_at=now,
            )
            log.info("clip_succeeded", cost=state.cost)
        else:
            events = await self.projects.record_failure(
                project_id,
                task_uuid,
                code=decision.code,
                message=decision.message,
                completed_at=now,
            )
            log.warning("clip_failed", code=decision.code, reason=decision.message)
        await self._publisher.publish_events(events)


class CheckHandler:
    """Asks Runware where a processing clip stands; schedules the next check if unfinished."""

    def __init__(
        self, recorder: ClipRecorder, runware: RunwareClient, publisher: Publisher, policy: Policy
    ) -> None:
        self._recorder = recorder
        self._runware = runware
        self._publisher = publisher
        self._policy = policy

    async def __call__(self, message: CheckClip) -> None:
        clip = await self._recorder.tracked_clip(message.project_id, message.task_uuid)
        if clip is None or clip.status is not ClipStatus.PROCESSING:
            return
        age_s = (datetime.now(UTC) - message.submitted_at).total_seconds()
        decision: Decision
        try:
            state = await self._runware.get_response(message.task_uuid)
        except RunwareError as error:
            log.warning("clip_check_failed", error=str(error), retryable=error.retryable)
            decision = self._policy.after_error(error, attempt=message.attempt, age_s=age_s)
        else:
            decision = self._policy.after_state(state, attempt=message.attempt, age_s=age_s)
        if isinstance(decision, CheckAgain):
            # A fresh message (new id and time): the next check is a new command.
            following = CheckClip(
                project_id=message.project_id,
                task_uuid=message.task_uuid,
                attempt=message.attempt + 1,
                submitted_at=message.submitted_at,
                correlation_id=message.correlation_id,
            )
            await self._publisher.send(CHECK_CLIP, following, delay_s=decision.delay_s)
            log.info("clip_check_scheduled", attempt=message.attempt + 1, delay_s=decision.delay_s)
            return
        await self._recorder.apply(message.project_id, message.task_uuid, decision)


class RecordResultHandler:
    """A webhook's task state, recorded like a poll result; polling stays on as a safety net."""

    def __init__(self, recorder: ClipRecorder, policy: Policy) -> None:
        self._recorder = recorder
        self._policy = policy

    async def __call__(self, message: RecordRunwareResult) -> None:
        state = parse_task_states(message.body).get(message.task_uuid)
        if state is None or state.status == "processing":
            return
        clip = await self._recorder.tracked_clip(message.project_id, message.task_uuid)
        if clip is None:
            return
        # A quick task's webhook can beat the submitter's own write: not yet submitted_at.
        submitted_at = clip.submitted_at or datetime.now(UTC)
        age_s = (datetime.now(UTC) - submitted_at).total_seconds()
        decision = self._policy.after_state(state, attempt=1, age_s=age_s)
        if isinstance(decision, CheckAgain):
            return  # nothing final in it; the clip's own checks carry on
        await self._recorder.apply(message.project_id, message.task_uuid, decision)
