"""``SubmitClip``: send one clip to Runware and record that Runware has it."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from reelflow_common.broker import Publisher
from reelflow_common.domain import ClipStatus
from reelflow_common.errors import InvalidMessage, TransientError
from reelflow_common.logging import get_logger
from reelflow_common.messages import CheckClip, SubmitClip
from reelflow_common.runware import RunwareClient, RunwareError
from reelflow_common.store import Clip, ProjectStore
from reelflow_common.topology import CHECK_CLIP, SUBMIT_CLIP
from reelflow_submitter.service import GiveUp, RetryLater, after_submit_error, video_request
from reelflow_submitter.settings import Settings

log = get_logger(__name__)


class SubmitHandler:
    """Moves a clip ``queued → submitting → processing`` (or ``failed``).

    Safe to run twice for the same message: the task UUID was chosen before the
    first submit, so a resubmit after a crash answers ``conflictTaskUUID`` and
    nothing is billed twice.
    """

    def __init__(
        self,
        projects: ProjectStore,
        runware: RunwareClient,
        publisher: Publisher,
        settings: Settings,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._projects = projects
        self._runware = runware
        self._publisher = publisher
        self._settings = settings
        self._rng = rng or random.Random()

    async def __call__(self, message: SubmitClip) -> None:
        clip = await self._projects.start_submitting(message.project_id, message.task_uuid)
        if clip is None:
            await self._already_past_submit(message)
            return
        request = video_request(clip, webhook_url=self._settings.webhook_url(message.project_id))
        try:
            result = await self._runware.submit_video(request)
        except RunwareError as error:
            await self._on_error(message, error)
            return
        if result.already_submitted:
            log.info("clip_already_at_runware")
        await self._accepted(message)

    async def _accepted(self, message: SubmitClip) -> None:
        submitted_at = datetime.now(UTC)
        events = await self._projects.mark_processing(
            message.project_id, message.task_uuid, submitted_at=submitted_at
        )
        if events:  # else another submitter recorded it first and started its polling
            await self._start_polling(message, submitted_at)
        await self._publisher.publish_events(events)
        log.info("clip_submitted", attempt=message.attempt)

    async def _start_polling(self, message: SubmitClip, submitted_at: datetime) -> None:
        await self._publisher.send(
            CHECK_CLIP,
            CheckClip(
                project_id=message.project_id,
                task_uuid=message.task_uuid,
                submitted_at=submitted_at,
                correlation_id=message.correlation_id,
            ),
            delay_s=self._settings.poll_initial_delay_s,
        )

    async def _on_error(self, message: SubmitClip, error: RunwareError) -> None:
        decision = after_submit_error(
            error,
            attempt=message.attempt,
            max_attempts=self._settings.submit_max_attempts,
            base_s=self._settings.retry_initial_delay_s,
            cap_s=self._settings.retry_max_delay_s,
            rng=self._rng,
        )
        if isinstance(decision, RetryLater):
            # A fresh message (new id and time): the retry is a new command, not a redelivery.
            retry = SubmitClip(
                project_id=message.project_id,
                task_uuid=message.task_uuid,
                attempt=message.attempt + 1,
                correlation_id=message.correlation_id,
            )
            await self._publisher.send(SUBMIT_CLIP, retry, delay_s=decision.delay_s)
            log.warning(
                "clip_submit_retry_scheduled",
                attempt=message.attempt,
                delay_s=round(decision.delay_s, 3),
                error=str(error),
            )
            return
        may_hold_task = error.retryable or message.attempt > 1
        if may_hold_task and await self._runware_has_task(message.task_uuid):
            # An earlier answer was lost, yet that submit got through: track it, don't fail it.
            await self._accepted(message)
            return
        assert isinstance(decision, GiveUp)
        events = await self._projects.record_failure(
            message.project_id,
            message.task_uuid,
            code=decision.code,
            message=decision.message,
            completed_at=datetime.now(UTC),
            # Another submitter may have got it to Runware meanwhile: never fail that.
            allowed_from=(ClipStatus.QUEUED, ClipStatus.SUBMITTING),
        )
        await self._publisher.publish_events(events)
        log.warning("clip_submit_failed", code=decision.code, error=str(error))

    async def _runware_has_task(self, task_uuid: str) -> bool:
        """Whether Runware holds the task; raises ``TransientError`` while it cannot say."""
        try:
            await self._runware.get_response(task_uuid)
        except RunwareError as error:
            if error.retryable:
                # Failing the clip now could leave a billed task behind a "failed" clip:
                # keep the message on the retry ladder until Runware can answer.
                raise TransientError(f"cannot tell whether Runware has {task_uuid}") from error
            return False
        return True

    async def _already_past_submit(self, message: SubmitClip) -> None:
        """A duplicate or redelivered message: repair what a crash may have left undone."""
        project = await self._projects.get(message.project_id)
        current: Clip | None = project.clip(message.task_uuid) if project else None
        if project is None:
            raise InvalidMessage(f"project {message.project_id} does not exist")
        if current is None:
            # A retry replaced this clip with a new task: this message is stale.
            log.info("clip_not_tracked")
            return
        if current.status is ClipStatus.PROCESSING and current.submitted_at is not None:
            # The crash may have come before the first CheckClip was published.
            await self._start_polling(message, current.submitted_at)
        await self._publisher.publish_events(
            await self._projects.events_for_clip(message.project_id, message.task_uuid)
        )
        log.info("clip_submit_skipped", status=current.status.value)
