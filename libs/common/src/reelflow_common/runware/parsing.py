"""Pure translation between Runware's JSON and our models: no I/O, usable on webhook bodies."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from reelflow_common.redact import redact
from reelflow_common.runware.models import TaskFailure, TaskState, TaskStatus, VideoRequest

# Older docs and the old Python SDK (PY-OLD in docs/RUNWARE.md §3.2) use these for a task
# that is not finished yet.
_PROCESSING = frozenset({"processing", "pending", "queued", "scheduled", "waiting"})
_FAILED = frozenset({"error", "failed"})
_RANK: dict[TaskStatus, int] = {"processing": 0, "success": 1, "error": 2}

_VIDEO_FIELDS = (
    ("model", "model"),
    ("positive_prompt", "positivePrompt"),
    ("duration", "duration"),
    ("width", "width"),
    ("height", "height"),
    ("negative_prompt", "negativePrompt"),
    ("seed", "seed"),
    ("fps", "fps"),
    ("webhook_url", "webhookURL"),
)


def build_video_task(request: VideoRequest) -> dict[str, Any]:
    """The ``videoInference`` task object for an async submit."""
    task: dict[str, Any] = {
        "taskType": "videoInference",
        "taskUUID": request.task_uuid,
        "deliveryMethod": "async",
        "includeCost": True,
        "outputType": "URL",
        "outputFormat": "MP4",
        "numberResults": 1,
    }
    for attribute, key in _VIDEO_FIELDS:
        value = getattr(request, attribute)
        if value is not None:
            task[key] = value
    return task


def build_poll_task(task_uuid: str) -> dict[str, Any]:
    """A ``getResponse`` task: always the ORIGINAL task UUID, never a new one."""
    return {"taskType": "getResponse", "taskUUID": task_uuid}


def error_entries(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every error object in a body: ``errors`` (list) and ``error`` (object or list)."""
    entries: list[Mapping[str, Any]] = []
    for key in ("errors", "error"):
        value = body.get(key)
        if isinstance(value, Mapping):
            entries.append(value)
        elif isinstance(value, list):
            entries.extend(item for item in value if isinstance(item, Mapping))
        elif value is True:
            # The legacy WebSocket shape puts the error fields beside "error": true.
            entries.append(body)
    return entries


def request_level_errors(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Error objects that name no task, so they concern the whole request."""
    return [entry for entry in error_entries(body) if _str(entry.get("taskUUID")) is None]


def failure_from_entry(entry: Mapping[str, Any]) -> TaskFailure:
    """The code, message, parameter and allowed values of one error object.

    The message is Runware's own words, stored on the clip and shown to its tenant:
    one echoing the task's ``webhookURL`` (a validation error's, say) would show the
    webhook secret, so URL secrets are masked here, where every Runware message enters.
    """
    parameter = entry.get("parameter")
    if isinstance(parameter, list):  # the CLI accepts a list of parameter names too
        parameter = ",".join(str(name) for name in parameter)
    allowed = entry.get("allowedValues")
    return TaskFailure(
        code=_str(entry.get("code")),
        message=redact(_str(entry.get("message")) or _str(entry.get("errorMessage")) or ""),
        parameter=_str(parameter),
        allowed_values=tuple(allowed) if isinstance(allowed, list) else None,
    )


def parse_task_states(body: Mapping[str, Any]) -> dict[str, TaskState]:
    """Task states by task UUID from a poll answer or webhook body; errors become error states.

    ``data`` and the error lists are read independently, since a body may carry
    both. When one task appears more than once, error beats success beats processing.
    """
    states: dict[str, TaskState] = {}
    candidates = [_state_from_item(item) for item in _data_items(body)]
    candidates += [_state_from_error(entry) for entry in error_entries(body)]
    for state in candidates:
        if state is None:
            continue
        known = states.get(state.task_uuid)
        if known is None or _RANK[state.status] > _RANK[known.status]:
            states[state.task_uuid] = state
    return states


def _data_items(body: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    data = body.get("data")
    if isinstance(data, Mapping):
        data = [data]
    if isinstance(data, list):
        yield from (item for item in data if isinstance(item, Mapping))


def _state_from_item(item: Mapping[str, Any]) -> TaskState | None:
    task_uuid = _str(item.get("taskUUID"))
    if task_uuid is None:
        return None
    raw_status = _str(item.get("status"))
    video_url = _str(item.get("videoURL")) or _str(item.get("mediaURL"))
    nested = item.get("error")
    failure: TaskFailure | None = None
    status: TaskStatus
    if raw_status in _FAILED or isinstance(nested, Mapping):
        status = "error"
        failure = failure_from_entry(nested if isinstance(nested, Mapping) else item)
    elif video_url is not None or raw_status == "success":
        status = "success"
    else:
        # Unknown status words count as "not finished": polling again is the safe reading.
        status = "processing"
    return TaskState(
        task_uuid=task_uuid,
        status=status,
        progress=_int(item.get("progress")),
        video_uuid=_str(item.get("videoUUID")) or _str(item.get("mediaUUID")),
        video_url=video_url,
        seed=_int(item.get("seed")),
        cost=_float(item.get("cost")),
        error=failure,
    )


def _state_from_error(entry: Mapping[str, Any]) -> TaskState | None:
    task_uuid = _str(entry.get("taskUUID"))
    if task_uuid is None:
        return None
    return TaskState(task_uuid=task_uuid, status="error", error=failure_from_entry(entry))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _float(value: Any) -> float | None:
    """A finite number, or None: a NaN or infinite cost (``json.loads`` accepts them)
    would poison the project's cost total for good."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
