"""A project as an operator sees it: everything stored, and what a reconcile pass did. Pure.

``project show --json`` prints :func:`project_state`; without ``--json``,
:func:`render_project` writes the same in lines a person reads. Times are UTC
(RFC 3339); "in N s" is against the clock of the machine running the command.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from reelflow_common.domain import ClipRequest
from reelflow_common.messages import (
    AttemptStored,
    AttemptSucceeded,
    ClipStored,
    ClipUpdated,
    Event,
)
from reelflow_common.money import format_usd
from reelflow_common.store import ClipState, Project
from reelflow_common.store.timefmt import rfc3339
from reelflow_common.tracking.chains import Action, Pass

Json = dict[str, Any]


def _time(value: datetime | None) -> str | None:
    return None if value is None else rfc3339(value)


def project_state(project: Project, events: Sequence[Event]) -> Json:
    """Everything stored about ``project``, JSON-ready: its clips with their attempts and
    leases, its counts and cost, and the events still in its log (oldest first)."""
    requests = project.requests or []
    return {
        "project_id": project.id,
        "tenant_id": project.tenant_id,
        "title": project.title,
        "model": project.model,
        "status": project.status.value,
        "seq": project.seq,
        "counts": project.counts.model_dump(),
        "cost": project.cost.model_dump(),
        "correlation_id": project.correlation_id,
        "due_at": _time(project.due_at),
        "created_at": _time(project.created_at),
        "updated_at": _time(project.updated_at),
        "finished_at": _time(project.finished_at),
        "clips": [
            _clip_state(
                clip, requests[clip.scene_index] if clip.scene_index < len(requests) else None
            )
            for clip in project.clips
        ],
        "events": [
            {"type": event.message_type, **event.model_dump(mode="json", exclude_none=True)}
            for event in events
        ],
    }


def _clip_state(clip: ClipState, request: ClipRequest | None) -> Json:
    state: Json = clip.model_dump(mode="json", exclude={"attempts"})
    state["watched_since"] = _time(clip.watch_start())
    state["attempts"] = [
        {"task_uuid": task_uuid, **attempt.model_dump(mode="json")}
        for task_uuid, attempt in clip.earlier_attempts()
    ]
    state["request"] = None if request is None else request.model_dump(exclude_none=True)
    return state


def listed_state(project: Project) -> Json:
    """One project as ``project list --json`` prints it: what its line says, JSON-ready."""
    return {
        "project_id": project.id,
        "tenant_id": project.tenant_id,
        "title": project.title,
        "status": project.status.value,
        "counts": project.counts.model_dump(),
        "cost": project.cost.model_dump(),
        "created_at": _time(project.created_at),
        "updated_at": _time(project.updated_at),
        "due_at": _time(project.due_at),
    }


def list_rows(
    projects: Sequence[Project], *, with_tenant: bool, with_lease: bool
) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """``project list``'s header and one row per project: its id, when it was created, its
    status, its clips' counts and its title (quoted, control characters escaped, as
    ``project show`` prints it); the tenant when the list is not one tenant's, and when the
    earliest lease of its open clips ran out (``due_at``) with ``--past-lease``."""
    header = (
        "PROJECT",
        *(("TENANT",) if with_tenant else ()),
        "CREATED",
        "STATUS",
        "CLIPS",
        "COMPLETED",
        "PENDING",
        "FAILED",
        "CANCELLED",
        *(("LEASE_ENDED",) if with_lease else ()),
        "TITLE",
    )
    rows = []
    for project in projects:
        counts = project.counts
        rows.append(
            (
                project.id,
                *((project.tenant_id,) if with_tenant else ()),
                rfc3339(project.created_at),
                project.status.value,
                str(counts.total_clips),
                str(counts.completed),
                str(counts.pending),
                str(counts.failed),
                str(counts.cancelled),
                *((_time(project.due_at) or "-",) if with_lease else ()),
                repr(project.title),
            )
        )
    return header, rows


# --- lines for a person ------------------------------------------------------------------


def _when(value: str | None, now: datetime) -> str:
    if value is None:
        return "-"
    seconds = (datetime.fromisoformat(value) - now).total_seconds()
    relative = f"in {seconds:.0f} s" if seconds >= 0 else f"{-seconds:.0f} s ago"
    return f"{value} ({relative})"


def _due(state: Json, now: datetime) -> str:
    """When a poller's reconciler looks at the project next (it looks only while generating)."""
    if state["status"] != "generating":
        return "- (only a generating project is reconciled)"
    return _when(state["due_at"], now)


def _error(error: Json | None) -> str:
    if not error:
        return ""
    return f"{error.get('code', '?')}: {error.get('message', '')}"


def render_project(state: Json, *, now: datetime) -> str:
    """:func:`project_state` in lines a person reads."""
    counts, cost = state["counts"], state["cost"]
    lines = [
        f"Project {state['project_id']}  {state['title']!r}",
        f"  tenant       {state['tenant_id']}",
        f"  status       {state['status']}  (seq {state['seq']}, model {state['model']})",
        f"  clips        {counts['completed']} completed / {counts['pending']} pending / "
        f"{counts['failed']} failed / {counts['cancelled']} cancelled of {counts['total_clips']}",
        f"  cost         {format_usd(cost['usd'])}"
        f" ({cost['known']} priced, {cost['unknown']} unpriced)",
        f"  created      {state['created_at']}",
        f"  updated      {state['updated_at']}",
        f"  finished     {state['finished_at'] or '-'}",
        f"  due at       {_due(state, now)}",
        f"  correlation  {state['correlation_id'] or '-'}",
        "",
        "Clips",
    ]
    for clip in state["clips"]:
        lines += _clip_lines(clip, now)
    lines += ["", *_event_lines(state)]
    return "\n".join(lines)


def _clip_lines(clip: Json, now: datetime) -> list[str]:
    lines = [f"  #{clip['scene_index']:<3} {clip['status']:<10}  task {clip['task_uuid']}"]
    if clip["video_url"]:
        lines.append(f"        video {clip['video_url']}  cost {format_usd(clip['cost'])}")
    if clip["error"]:
        lines.append(f"        error {_error(clip['error'])}")
    asset = clip.get("asset")
    if asset is not None and asset["status"] == "stored":
        lines.append(f"        stored {asset['key']} ({asset['size_bytes']} bytes)")
    elif asset is not None:
        lines.append(f"        copy failed after {asset['attempts']}: {_error(asset['error'])}")
    lines.append(
        f"        submitted {clip['submitted_at'] or '-'}  completed {clip['completed_at'] or '-'}"
        f"  watched since {clip['watched_since'] or '-'}"
    )
    lease = clip["lease"]
    if lease is not None:
        lines.append(f"        lease {lease['token']} until {_when(lease['until'], now)}")
    for attempt in clip["attempts"]:
        detail = _error(attempt["error"]) or attempt["video_url"] or ""
        lines.append(
            f"        earlier task {attempt['task_uuid']}: {attempt['status']}"
            + (f" ({detail})" if detail else "")
        )
        if attempt["follow_until"] is not None and not attempt["end_recorded"]:
            # A timed-out clip's task, still asked about (ARCHITECTURE.md, "Late follow").
            lines.append(f"          followed late until {_when(attempt['follow_until'], now)}")
    if clip["request"] is not None:
        lines.append(f"        prompt {clip['request']['prompt']!r}")
    return lines


def _event_lines(state: Json) -> list[str]:
    events = state["events"]
    if not events:
        return ["Event log: empty"]
    first, last = events[0]["seq"], events[-1]["seq"]
    lines = [f"Event log (seq {first}-{last}; {len(events)} of {state['seq']} changes kept)"]
    for event in events:
        if event["type"] == ClipUpdated.message_type:
            clip = event["clip"]
            about = f"#{clip['scene_index']} {clip['status']}  task {clip['task_uuid']}"
            if event.get("replaces_task_uuid"):
                about += f" (replaces {event['replaces_task_uuid']})"
        elif event["type"] == ClipStored.message_type:
            about = f"#{event['scene_index']} stored  task {event['task_uuid']}"
        elif event["type"] == AttemptSucceeded.message_type:
            attempt = event["attempt"]
            about = f"#{event['scene_index']} attempt {attempt['task_uuid']} succeeded"
        elif event["type"] == AttemptStored.message_type:
            about = f"#{event['scene_index']} attempt {event['task_uuid']} stored"
        else:
            about = event["status"]
        lines.append(f"  {event['seq']:>4}  {event['occurred_at']}  {event['type']:<16}  {about}")
    return lines


def render_pass(done: Pass, before: Project, after: Project | None) -> str:
    """What ``reelflow-admin reconcile`` did, clip by clip, and where the project stands now."""
    lines: list[str] = []
    for settled in done.settled:
        was = before.clips[settled.scene_index].status.value
        now = "?" if after is None else after.clips[settled.scene_index].status.value
        line = (
            f"#{settled.scene_index:<3} {was} -> {now}  task {settled.task_uuid}"
            f"  Runware: {settled.runware}  {settled.action.value}"
        )
        if settled.action is Action.NOT_STARTED:
            line += " (its first command was not published: due again now)"
        elif settled.lease_until is not None:
            line += f" (lease until {rfc3339(settled.lease_until)})"
        lines.append(line)
    if not done.settled:
        lines.append("no clip was open")
    if done.finished:
        lines.append("the project was finished (no clip was pending)")
    if after is not None:
        counts = after.counts
        lines.append(
            f"project {after.id}: {after.shown_status.value}, {counts.completed} completed / "
            f"{counts.pending} pending / {counts.failed} failed / {counts.cancelled} cancelled"
            f" of {counts.total_clips}"
        )
    return "\n".join(lines)
