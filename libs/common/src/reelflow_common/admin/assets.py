"""``reelflow-admin assets``: reelflow's copies of the videos, and copies to try again.

reelflow-admin assets list --failed        videos whose copy was given up on (an earlier task's too)
reelflow-admin assets list PROJECT_ID      every video's copy in one project (its clips', and
                                           the videos in their attempts: billed, so kept)
reelflow-admin assets retry PROJECT_ID     copy again what is not stored (a fresh start)
reelflow-admin assets retry --failed       the same, for every scene listed as failed
"""

from __future__ import annotations

from collections.abc import Sequence

from reelflow_common.domain import ClipStatus
from reelflow_common.messages import StoreVideo
from reelflow_common.store import ClipState, Project, TaskVideo
from reelflow_common.store.models import VideoAsset
from reelflow_common.store.timefmt import rfc3339

Row = tuple[str, ...]

HEADER: Row = ("PROJECT", "SCENE", "TASK", "COPY", "ATTEMPTS", "WHEN", "DETAIL")


def copy_state(clip: ClipState) -> Row:
    """COPY, ATTEMPTS, WHEN and DETAIL of one clip's copy."""
    if clip.status is not ClipStatus.SUCCESS:
        return ("-", "", "", f"no video ({clip.status.value})")
    return _asset_state(clip.asset)


def _asset_state(asset: VideoAsset | None) -> Row:
    if asset is None:
        return ("pending", "", "", "not stored yet (copies off, or on its way)")
    if asset.status == "stored":
        when = rfc3339(asset.stored_at) if asset.stored_at else ""
        return ("stored", "", when, f"{asset.key} ({asset.size_bytes} bytes)")
    error = asset.error or {}
    when = rfc3339(asset.failed_at) if asset.failed_at else ""
    detail = f"{error.get('code', '?')}: {error.get('message', '')}"
    return ("failed", str(asset.attempts or ""), when, detail)


def attempt_copy_state(video: TaskVideo) -> Row:
    """COPY, ATTEMPTS, WHEN and DETAIL of the copy of a video in a clip's ``attempts``."""
    copy, tries, when, detail = _asset_state(video.asset)
    return (copy, tries, when, f"earlier task: {detail}")


def rows(projects: Sequence[Project], *, failed_only: bool) -> list[Row]:
    """One row per clip, then one per video in its ``attempts`` (billed, so kept too)."""
    found: list[Row] = []
    for project in projects:
        for clip in project.clips:
            states = [(clip.task_uuid, copy_state(clip))]
            states += [
                (video.task_uuid, attempt_copy_state(video))
                for video in clip.videos()
                if video.of_attempt
            ]
            for task_uuid, state in states:
                if failed_only and state[0] != "failed":
                    continue
                found.append((project.id, str(clip.scene_index), task_uuid, *state))
    return found


def retries(project: Project, *, scene: int | None = None) -> list[StoreVideo]:
    """A first ``StoreVideo`` for every video of ``project`` (a clip's success, or one in its
    ``attempts``) that is not stored."""
    return [
        StoreVideo(
            project_id=project.id,
            scene_index=video.scene_index,
            task_uuid=video.task_uuid,
            video_url=video.video_url,
        )
        for clip in project.clips
        if scene in (None, clip.scene_index)
        for video in clip.videos()
        if video.asset is None or video.asset.status != "stored"
    ]
