"""Upgrading project documents of the first landing (v1) to the current shape (v2).

v1 documents have no ``schema`` field, clips keyed by task UUID with their
request fields inside, an internal ``submitting`` state, an outbox flag
(``dispatched``) and an event log of whole messages. :func:`upgrade_v1` is pure;
:func:`migrate_v1_projects` applies it to every v1 document, each with one
replace guarded on the document still being v1, so running it again (or on two
machines at once) changes nothing.

What becomes of a v1 project's clips in flight: their commands in the queues
are of the old shape and end in a DLQ, so every open clip gets a lease that
has already run out, and the reconciler asks Runware about it and re-arms it
on its next pass. The v1 event log is not converted: ``seq`` carries on and the
log starts empty, so a WebSocket client resuming from before the upgrade gets a
fresh snapshot.
"""

from __future__ import annotations

from datetime import datetime

from pymongo import WriteConcern

from reelflow_common.domain import ClipRequest, ClipStatus, ProjectStatus
from reelflow_common.mongo import Database, Document, drop_retired_indexes
from reelflow_common.store.documents import SCHEMA
from reelflow_common.store.leases import new_token

_REQUEST_FIELDS = tuple(ClipRequest.model_fields)
_V1_INDEX = "undispatched"


def is_v1(doc: Document) -> bool:
    return "schema" not in doc


def upgrade_v1(doc: Document, *, now: datetime) -> Document:
    """The v2 document of a v1 project document. Pure; ``now`` stamps the expired leases."""
    by_scene: dict[int, list[Document]] = {}
    for clip in doc.get("clips", {}).values():
        by_scene.setdefault(int(clip["scene_index"]), []).append(clip)
    clips: dict[str, Document] = {}
    requests: list[Document] = []
    cost = {"usd": 0.0, "known": 0, "unknown": 0}
    open_clips = 0
    for scene_index in sorted(by_scene):
        # v1 replaced a retried clip; should two share a scene, the newest is the current one.
        versions = sorted(by_scene[scene_index], key=lambda clip: _when(clip, doc))
        current = versions[-1]
        requests.append({name: current.get(name) for name in _REQUEST_FIELDS})
        state = _clip_state(current, doc, now=now)
        if len(versions) > 1:
            state["attempts"] = {
                old["task_uuid"]: _attempt(_clip_state(old, doc, now=now)) for old in versions[:-1]
            }
        if state["status"] == ClipStatus.SUCCESS.value:
            if state["cost"] is None:
                cost["unknown"] += 1
            else:
                cost["usd"] += float(state["cost"])
                cost["known"] += 1
        open_clips += "lease" in state
        clips[str(scene_index)] = state
    upgraded = {
        key: value
        for key, value in doc.items()
        if key not in ("clips", "events", "dispatched", "undispatched_since")
    }
    upgraded |= {
        "schema": SCHEMA,
        "clips": clips,
        "requests": requests,
        "cost": cost,
        "events": [],
        # Due at once: the reconciler re-arms the open clips on its next pass.
        "due_at": now
        if open_clips or doc.get("status") == ProjectStatus.GENERATING.value
        else None,
    }
    return upgraded


def _when(clip: Document, doc: Document) -> datetime:
    created: datetime = clip.get("created_at") or doc["created_at"]
    return created


def _clip_state(clip: Document, doc: Document, *, now: datetime) -> Document:
    status = clip["status"]
    if status == "submitting":  # v1's internal claim before submitting; v2 has none
        status = ClipStatus.QUEUED.value
    queued_at = _when(clip, doc)
    state: Document = {
        "scene_index": int(clip["scene_index"]),
        "task_uuid": clip["task_uuid"],
        "status": status,
        "video_url": clip.get("video_url"),
        "video_uuid": clip.get("video_uuid"),
        "cost": clip.get("cost"),
        "error": clip.get("error"),
        "queued_at": queued_at,
        "submitted_at": clip.get("submitted_at"),
        "completed_at": clip.get("completed_at"),
        "updated_at": clip.get("updated_at") or queued_at,
        "watched_since": clip.get("submitted_at") or queued_at,
    }
    if not ClipStatus(status).is_terminal:
        state["lease"] = {"token": new_token(), "until": now}
    return state


def _attempt(state: Document) -> Document:
    keep = ("status", "video_url", "video_uuid", "cost", "error", "queued_at", "submitted_at")
    return {key: state.get(key) for key in (*keep, "completed_at")}


async def migrate_v1_projects(db: Database, *, now: datetime) -> int:
    """Upgrade every v1 project document in ``db``; how many this call upgraded.

    Written with majority write concern, as every write to ``projects``: an upgrade a
    failover rolled back would leave a v1 document the services cannot read.
    """
    projects = db.get_collection("projects", write_concern=WriteConcern(w="majority"))
    upgraded = 0
    async for doc in projects.find({"schema": {"$exists": False}}):
        result = await projects.replace_one(
            {"_id": doc["_id"], "schema": {"$exists": False}}, upgrade_v1(doc, now=now)
        )
        upgraded += result.modified_count
    await drop_retired_indexes(projects, [_V1_INDEX])  # never there, or dropped already
    return upgraded
