"""Upgrading a first-landing (v1) project document: pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from reelflow_common.domain import ClipStatus, ProjectStatus
from reelflow_common.store.documents import project_from_document
from reelflow_common.store.migration import is_v1, upgrade_v1

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=20)


def v1_clip(task: str, scene: int, status: str, **fields: Any) -> dict[str, Any]:
    return {
        "task_uuid": task,
        "scene_index": scene,
        "status": status,
        "prompt": f"scene {scene}",
        "negative_prompt": None,
        "duration": 4,
        "width": 1280,
        "height": 720,
        "seed": None,
        "fps": None,
        "video_url": None,
        "video_uuid": None,
        "cost": None,
        "error": None,
        "created_at": T0,
        "submitted_at": None,
        "completed_at": None,
        "updated_at": T0,
    } | fields


def v1_project() -> dict[str, Any]:
    done = v1_clip(
        "t0", 0, "success", video_url="https://v/0.mp4", cost=0.4, submitted_at=T0,
        completed_at=T0 + timedelta(minutes=2),
    )  # fmt: skip
    return {
        "_id": "p1",
        "tenant_id": "tenant-a",
        "title": "Trip",
        "model": "google:3@3",
        "status": "generating",
        "seq": 3,
        "counts": {"total_clips": 3, "completed": 1, "pending": 2, "failed": 0, "cancelled": 0},
        "clips": {
            "t0": done,
            "t1": v1_clip("t1", 1, "submitting"),
            "t2": v1_clip("t2", 2, "processing", submitted_at=T0),
        },
        "events": [{"type": "clip.updated", "seq": 3}],
        "correlation_id": "req-1",
        "idempotency_key": None,
        "request_hash": "h",
        "dispatched": True,
        "undispatched_since": T0,
        "created_at": T0,
        "updated_at": T0,
        "finished_at": None,
    }


def test_a_v1_document_becomes_a_v2_one_with_clips_by_scene() -> None:
    old = v1_project()
    assert is_v1(old)

    new = upgrade_v1(old, now=NOW)

    assert not is_v1(new)
    project = project_from_document(new)
    assert [(c.scene_index, c.task_uuid, c.status) for c in project.clips] == [
        (0, "t0", ClipStatus.SUCCESS),
        (1, "t1", ClipStatus.QUEUED),  # v1's internal "submitting"
        (2, "t2", ClipStatus.PROCESSING),
    ]
    assert [r.prompt for r in project.requests or []] == ["scene 0", "scene 1", "scene 2"]
    assert (project.seq, project.status) == (3, ProjectStatus.GENERATING)
    assert project.cost.model_dump() == {"usd": 0.4, "known": 1, "unknown": 0}
    assert project.public_status().wire()["clips"] == {
        "t0": "https://v/0.mp4",
        "t1": "pending",
        "t2": "pending",
    }
    assert "dispatched" not in new
    assert "undispatched_since" not in new


def test_open_clips_get_a_lease_that_has_run_out_so_the_reconciler_takes_them() -> None:
    project = project_from_document(upgrade_v1(v1_project(), now=NOW))

    assert project.clips[0].lease is None
    leases = [clip.lease for clip in project.clips[1:]]
    assert all(lease is not None and lease.until == NOW for lease in leases)
    assert project.due_at == NOW
    assert project.clips[2].watch_start() == T0  # its ceiling still counts from its submit


def test_the_v1_event_log_is_not_carried_over() -> None:
    new = upgrade_v1(v1_project(), now=NOW)

    assert (new["events"], new["seq"]) == ([], 3)
