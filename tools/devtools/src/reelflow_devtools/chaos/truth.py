"""Every clip of the run against what Runware (the simulator) says happened, and the DLQs.

Each clip falls in exactly one bucket:

- *succeeded*: a success whose video is the one Runware made for its task;
- *failed as injected*: a failure Runware caused (its task ended in error), a
  hung task that reached the ceiling (``timedOut``), or a task Runware never
  accepted because it refused every submit (429/503/504) up to the ceiling
  (``poll_max_age_s``);
- *late video kept*: a failure (reelflow gave the task up: the ceiling, or not
  found within the visibility grace) whose task delivered its video after all,
  recorded in the clip's ``attempts`` under its own task: billed and kept (a retry
  takes it), so nothing is lost;
- *lost*: any other failure: Runware has (or will have) a billed video for it that
  reelflow does not hold, or never saw the task and never refused it;
- *stuck*: still queued or processing after the convergence deadline;
- *forged accepted*: a result no ``getResponse`` gave: a forged webhook's URL or
  error code, or a video Runware did not make for that task.

*Billed twice* counts tasks Runware billed that no clip of the run's projects
(nor an earlier attempt of one) knows: a second task bought for a clip, or the
tasks of a project created twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from reelflow_common.topology import WORK_QUEUES, Topology
from reelflow_devtools.bench.client import (
    REQUEST_ERRORS,
    api_client,
    get_projects,
    list_projects,
)
from reelflow_devtools.chaos.workload import FORGED_CODE, FORGED_URL, Target, WorkloadLog
from reelflow_devtools.connections import amqp

OPEN = ("queued", "processing")
#: the simulator's injected HTTP faults (429/503/504) are outages: a clip fails for them
#: only when Runware refused it up to the ceiling (``poll_max_age_s``), with this code
REFUSALS = ("runwareUnavailable",)
T = TypeVar("T")


@dataclass
class Verdict:
    created: int = 0
    #: successes whose video is in reelflow's storage (``stored_url``), and those not (yet)
    copies_stored: int = 0
    copies_missing: int = 0
    buckets: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)  # failed as injected, by cause
    billed_twice: int = 0
    duplicate_projects: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)
    dead_letters: dict[str, list[str]] = field(default_factory=dict)  # DLQ -> bodies
    dlq_matches_poison: bool = False
    unexpected_dead_letters: list[str] = field(default_factory=list)
    missing_poison: list[str] = field(default_factory=list)

    def note(self, bucket: str, example: str) -> None:
        self.buckets[bucket] += 1
        if bucket != "succeeded":
            self.examples.setdefault(bucket, [])
            if len(self.examples[bucket]) < 5:
                self.examples[bucket].append(example)


def classify(clip: dict[str, Any], task: dict[str, Any] | None) -> tuple[str, str]:
    """The bucket of one clip (a REST ``results`` item), and the cause of an injected failure."""
    status = clip["status"]
    if status in OPEN:
        return "stuck", ""
    video_url = clip.get("video_url")
    code = (clip.get("error") or {}).get("code")
    if video_url == FORGED_URL or code == FORGED_CODE:
        return "forged_accepted", ""
    state = None if task is None else task["state"]
    if status == "success":
        return ("succeeded", "") if _genuine(video_url, task) else ("forged_accepted", "")
    if status == "failed":
        if state == "success" and _kept_late(clip, task):
            return "late_video_kept", ""
        if task is None and code in REFUSALS:
            return "failed_as_injected", "never accepted"
        if state == "error":
            return "failed_as_injected", "task error"
        if state == "hang" and code == "timedOut":
            return "failed_as_injected", "hung, timed out"
    return "lost", ""


def _genuine(video_url: object, task: dict[str, Any] | None) -> bool:
    """Whether ``video_url`` is the video Runware made for ``task``."""
    if task is None or task["state"] != "success":
        return False
    return any(str(video_url).endswith(f"/video/{video}.mp4") for video in task["video_uuids"])


def _kept_late(clip: dict[str, Any], task: dict[str, Any] | None) -> bool:
    """The clip's own task's video, recorded in its ``attempts`` after the clip failed."""
    return any(
        attempt["task_uuid"] == clip["task_uuid"]
        and attempt["status"] == "success"
        and _genuine(attempt.get("video_url"), task)
        for attempt in clip.get("attempts") or []
    )


async def _patiently(read: Callable[[], Awaitable[T]], attempts: int = 10) -> T:
    """``read()``, again after a pause if the API cannot answer yet (it sheds load with 503)."""
    for _ in range(attempts - 1):
        try:
            return await read()
        except REQUEST_ERRORS:
            await asyncio.sleep(2)  # between attempts; their number bounds the wait
    return await read()


async def judge(target: Target, work: WorkloadLog, tasks: list[dict[str, Any]]) -> Verdict:
    """Read every project through the API and compare it with the simulator's tasks."""
    verdict = Verdict()
    by_uuid = {task["task_uuid"]: task for task in tasks}
    known: set[str] = set()
    ids = [project.project_id for project in work.created]
    async with api_client(target.api_url, target.key, connections=8) as api:
        listed = await _patiently(lambda: list_projects(api))
        projects = await _patiently(lambda: get_projects(api, ids, 8))
    # The idempotency key makes a retried POST find its project: one title, one project.
    titles = Counter(project["title"] for project in listed)
    extra = {title: count - 1 for title, count in titles.items() if count > 1}
    verdict.duplicate_projects = sum(extra.values())
    for project in projects:
        for clip in project["results"]:
            verdict.created += 1
            known.add(clip["task_uuid"])
            known.update(attempt["task_uuid"] for attempt in clip.get("attempts") or [])
            task = by_uuid.get(clip["task_uuid"])
            bucket, cause = classify(clip, task)
            where = f"{project['project_id']} scene {clip['scene_index']} task {clip['task_uuid']}"
            state = None if task is None else task["state"]
            verdict.note(bucket, f"{where}: {clip['status']} {clip.get('error')} / Runware {state}")
            if cause:
                verdict.injected[cause] += 1
            if bucket == "succeeded":
                if clip.get("stored_url"):
                    verdict.copies_stored += 1
                else:
                    verdict.copies_missing += 1
    billed_unknown = [
        uuid for uuid, task in by_uuid.items() if task["billed"] and uuid not in known
    ]
    # A second project's tasks are billed and known to no clip of the run's projects.
    verdict.billed_twice = len(billed_unknown)
    if billed_unknown:
        verdict.examples["billed_twice"] = billed_unknown[:5]
    return verdict


async def read_dead_letters(amqp_url: str, topology: Topology) -> dict[str, list[bytes]]:
    """Every message in every DLQ, taken off it (the run is over)."""
    found: dict[str, list[bytes]] = {}
    async with amqp(amqp_url) as connection:
        channel = await connection.channel()
        for work_queue in WORK_QUEUES:
            queue = await channel.get_queue(topology.dead_letter_queue(work_queue))
            bodies: list[bytes] = []
            while (message := await queue.get(no_ack=True, fail=False, timeout=10)) is not None:
                bodies.append(message.body)
            found[work_queue] = bodies
    return found


def compare_dead_letters(
    verdict: Verdict, found: dict[str, list[bytes]], poison: dict[bytes, str]
) -> None:
    """The DLQs must hold exactly the poison messages, each in its own queue's DLQ.

    A poison message whose publish had to be retried (the broker died before its
    confirm) may be there twice: the same body, never anything else.
    """
    verdict.dead_letters = {
        q: [b.decode(errors="replace") for b in bodies] for q, bodies in found.items()
    }
    seen = {(body, queue) for queue, bodies in found.items() for body in bodies}
    expected = {(body, queue) for body, queue in poison.items()}
    verdict.unexpected_dead_letters = [f"{q}: {b[:200]!r}" for b, q in sorted(seen - expected)]
    verdict.missing_poison = [f"{q}: {b!r}" for b, q in sorted(expected - seen)]
    verdict.dlq_matches_poison = seen == expected
