"""``StoreVideo``: copy a task's video into reelflow's storage, then say so.

The video is a clip's success, or one a task in the clip's ``attempts`` delivered (a
cancelled clip's task that finished at Runware, a replaced task's late video: billed,
so kept too). Its status is recorded before this runs and stays as it is whatever
happens here: the copy only adds the ``asset`` of the clip (and a ``clip.stored``) or
of that attempt (and a ``clip.attempt_stored``), one guarded update. A copy that
fails in a way that may pass (Runware's CDN or the storage unavailable, a
truncated download) is tried again on the copy ladder (a fresh
``StoreVideo``, ``attempt`` + 1) up to ``copy_max_attempts``; one that cannot
pass (the link expired, not an MP4, too large) or ran out of attempts is
recorded as failed on the clip (or the attempt), counted, and listed by
``reelflow-admin assets list --failed``.
"""

from __future__ import annotations

from reelflow_common.backoff import Backoff
from reelflow_common.broker import Publisher
from reelflow_common.logging import get_logger
from reelflow_common.messages import StoreVideo
from reelflow_common.metrics import VIDEO_COPIES_TOTAL
from reelflow_common.storage import CopiedVideo, CopyFailed, VideoCopier, VideoLinks, video_key
from reelflow_common.store import ProjectStore
from reelflow_common.topology import STORE_VIDEO

log = get_logger(__name__)


class StoreHandler:
    """Copies one video (``VideoCopier``) and records it on its clip, or its attempt."""

    def __init__(
        self,
        projects: ProjectStore,
        copier: VideoCopier,
        publisher: Publisher,
        links: VideoLinks,
        *,
        backoff: Backoff,
        max_attempts: int,
    ) -> None:
        self._projects = projects
        self._copier = copier
        self._publisher = publisher
        self._links = links
        self._backoff = backoff
        self._max_attempts = max_attempts

    async def __call__(self, message: StoreVideo) -> None:
        key = video_key(message.project_id, message.scene_index, message.task_uuid)
        try:
            copied = await self._copier.copy(message.video_url, key, attempt=message.attempt)
        except CopyFailed as failure:
            landed = await self._landed_before(key, failure)
            if landed is None:
                await self._failed(message, key, failure)
                return
            copied = landed
        change = await self._projects.record_stored(
            message.project_id,
            message.scene_index,
            message.task_uuid,
            key=copied.key,
            size_bytes=copied.size_bytes,
            sha256=copied.sha256,
            content_type=copied.content_type,
            stored_url=self._links.url(copied.key),
            correlation_id=message.correlation_id,
        )
        await self._publisher.publish_events(change.events)
        outcome = "stored" if change.applied else "duplicate"
        VIDEO_COPIES_TOTAL.labels(outcome=outcome).inc()
        log.info(f"video_{outcome}", size_bytes=copied.size_bytes, attempt=message.attempt)

    async def _landed_before(self, key: str, failure: CopyFailed) -> CopiedVideo | None:
        """The object an earlier try stored before it could record it (the link expired since)."""
        if failure.code != "providerLinkExpired":
            return None
        size = await self._copier.storage.size(key)
        return None if size is None else CopiedVideo(key=key, size_bytes=size, sha256=None)

    async def _failed(self, message: StoreVideo, key: str, failure: CopyFailed) -> None:
        if failure.retryable and message.attempt < self._max_attempts:
            delay_s = self._backoff.delay_s(message.attempt - 1)
            await self._publisher.send(
                STORE_VIDEO, message.following(attempt=message.attempt + 1), delay_s=delay_s
            )
            VIDEO_COPIES_TOTAL.labels(outcome="retried").inc()
            log.warning(
                "video_copy_retried",
                code=failure.code,
                error=str(failure),
                attempt=message.attempt,
                delay_s=round(delay_s, 3),
            )
            return
        recorded = await self._projects.record_copy_failed(
            message.project_id,
            message.scene_index,
            message.task_uuid,
            key=key,
            code=failure.code,
            message=str(failure),
            attempts=message.attempt,
        )
        VIDEO_COPIES_TOTAL.labels(outcome="failed").inc()
        log.error(
            "video_copy_failed",
            code=failure.code,
            error=str(failure),
            attempt=message.attempt,
            recorded=recorded,
        )
