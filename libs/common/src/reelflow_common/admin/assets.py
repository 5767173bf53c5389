"""``reelflow-admin assets``: reelflow's copies of the videos, and copies to try again.

reelflow-admin assets list --failed        scenes whose copy was given up on
reelflow-admin assets list PROJECT_ID      every clip's copy in one project
reelflow-admin assets retry PROJECT_ID     copy again what is not stored (a fresh start)
reelflow-admin assets retry --failed       the same, for every scene listed as failed
"""

from __future__ import annotations

from collections.abc import Sequence

from reelflow_common.domain import ClipStatus
from reelflow_common.messages import StoreVideo
from reelflow_common.store import ClipState, Project
from reelflow_common.store.timefmt import rfc3339

Row = tuple[str, ...]

HEADER: Row = ("PROJECT", "SCENE", "TASK", "COPY", "ATTEMPTS", "WHEN", "DETAIL")


def copy_state(clip: ClipState) -> Row:
    """COPY, ATTEMPTS, WHEN and DETAIL of one clip's copy."""
    asset = clip.asset
    if clip.status is not ClipStatus.SUCCESS:
        return ("-", "", "", f"no video ({clip.status.value})")
    if asset is None:
        return ("pending", "", "", "not stored yet (copies off, or on its way)")
    if asset.status == "stored":
        when = rfc3339(asset.stored_at) if asset.stored_at else ""
        return ("stored", "", when, f"{asset.key} ({asset.size_bytes} bytes)")
    error = asset.error or {}
    when = rfc3339(asset.failed_at) if asset.failed_at else ""
    detail = f"{error.get('code', '?')}: {error.get('message', '')}"
    return ("failed", str(asset.attempts or ""), when, detail)


def rows(projects: Sequence[Project], *, failed_only: bool) -> list[Row]:
    found: list[Row] = []
    for project in projects:
        for clip in project.clips:
            state = copy_state(clip)
            if failed_only and state[0] != "failed":
                continue
            found.append((project.id, str(clip.scene_index), clip.task_uuid, *state))
    return found


def retries(project: Project, *, scene: int | None = None) -> list[StoreVideo]:
    """A first ``StoreVideo`` for every success of ``project`` whose video is not stored."""
    return [
        StoreVideo(
            project_id=project.id,
            scene_index=clip.scene_index,
            task_uuid=clip.task_uuid,
            video_url=clip.video_url,
        )
        for clip in project.clips
        if clip.status is ClipStatus.SUCCESS
        and clip.video_url
        and clip.stored_key is None
        and scene in (None, clip.scene_index)
    ]
