"""Keep the simulator's tasks across restarts, as Runware keeps running what it accepted.

One JSON file (`state_file`): read at start, written at stop, and in between every
`state_save_interval` seconds if anything changed, so a crash loses little. Nothing
here runs per request. In memory a task's times are on the monotonic clock; in the
file they are on the wall clock, so a task submitted before a stop finishes at its
due time, or at once if that passed while the simulator was down, and a `videoURL`
expires `video_url_ttl` after its video succeeded, whether the simulator ran meanwhile
or not. Latencies are kept in real seconds, as drawn at the speedup of their submit.
"""

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .directives import Directives
from .models import MODELS
from .state import Generation, SimState, SimTask
from .validation import VideoRequest

log = logging.getLogger(__name__)

#: the file's layout; a file of another one is set aside, not read
FORMAT = 1
#: SimTask fields written as they are (the rest need converting, or are not kept)
_PLAIN_FIELDS = tuple(
    f.name
    for f in fields(SimTask)
    if f.name not in ("request", "submitted_at", "generations", "webhooks_settled", "timers")
)


@dataclass(frozen=True)
class KeptState:
    """What an earlier run left: its tasks (on this process's clock) and its port."""

    tasks: list[SimTask]
    rejected: dict[str, int]
    #: where the earlier run listened, so its videoURLs can stay valid
    port: int | None


def dump_state(state: SimState, port: int | None) -> str:
    """The state as the file's text; tasks' times turned to the wall clock."""
    to_wall = time.time() - state.clock()
    body = {
        "format": FORMAT,
        "saved_at": time.time(),
        "port": port,
        "rejected": dict(state.rejected),
        "tasks": [_task_json(task, to_wall) for task in state.tasks.values()],
    }
    return json.dumps(body, separators=(",", ":"))


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step: a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        # Only its owner reads it: a task's webhookURL carries the webhook secret.
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(text)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def read_state(path: Path, clock: Callable[[], float]) -> KeptState | None:
    """The state an earlier run saved in `path`, on `clock`; None if there is none.

    A file that cannot be read is renamed `<name>.unreadable` (with a warning), so the
    next save does not overwrite what someone may want to look at.
    """
    try:
        body = json.loads(path.read_text())
        if body.get("format") != FORMAT:
            raise ValueError(f"format {body.get('format')!r}, not {FORMAT}")
        to_monotonic = clock() - time.time()
        tasks = [
            task
            for item in body["tasks"]
            if (task := _task_from_json(item, to_monotonic)) is not None
        ]
        rejected = {str(key): int(count) for key, count in body["rejected"].items()}
        port = body.get("port")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        aside = path.with_name(f"{path.name}.unreadable")
        log.warning("state_unreadable path=%s error=%r moved_to=%s", path, exc, aside)
        path.replace(aside)
        return None
    log.info("state_restored path=%s tasks=%d", path, len(tasks))
    return KeptState(tasks=tasks, rejected=rejected, port=port if isinstance(port, int) else None)


def _task_json(task: SimTask, to_wall: float) -> dict[str, Any]:
    request = task.request
    kept_request = {
        f.name: getattr(request, f.name)
        for f in fields(request)
        if f.name not in ("spec", "directives")
    }
    return {
        "request": kept_request | {"model": request.spec.air},
        "directives": asdict(request.directives),
        "submitted_at": task.submitted_at + to_wall,
        "generations": [asdict(generation) for generation in task.generations],
        "webhooks_settled": sorted(task.webhooks_settled),
        **{name: getattr(task, name) for name in _PLAIN_FIELDS},
    }


def _task_from_json(item: dict[str, Any], to_monotonic: float) -> SimTask | None:
    kept_request = dict(item["request"])
    model = kept_request.pop("model")
    spec = MODELS.get(model)
    if spec is None:
        log.warning("state_task_skipped task_uuid=%s model=%s", kept_request["task_uuid"], model)
        return None
    request = VideoRequest(**kept_request, spec=spec, directives=Directives(**item["directives"]))
    return SimTask(
        request=request,
        submitted_at=float(item["submitted_at"]) + to_monotonic,
        generations=[Generation(**generation) for generation in item["generations"]],
        webhooks_settled=frozenset(item["webhooks_settled"]),
        **{name: item[name] for name in _PLAIN_FIELDS},
    )
