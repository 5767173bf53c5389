"""Every clip reelflow knows against every task the simulator accepted: lost, extra, resubmitted.

A clip is *lost* if it is not a success in reelflow or the simulator never accepted
its task; a task is *extra* (paid for and used by no clip) if no clip has its UUID.
The simulator bills per task UUID, so no extra task means no clip was billed twice.
A resubmission with the same UUID (``submissions > 1``) costs nothing: Runware answers
``conflictTaskUUID``. Dead-lettered messages are counted as well.
"""

from __future__ import annotations

from typing import Any

from reelflow_devtools.bench.client import (
    BenchError,
    api_client,
    list_projects,
    wait_all_terminal,
)
from reelflow_devtools.bench.launcher import BenchStack
from reelflow_runware_sim.responses import video_url


async def check_ground_truth(
    stack: BenchStack, keys: list[str], *, deadline_s: float
) -> dict[str, Any]:
    clips: dict[str, str] = {}  # task UUID -> the seed's value: a URL, "pending" or "failed"
    not_terminal = 0
    waited_out = False
    for key in keys:
        async with api_client(stack.api_url, key) as api:
            try:
                await wait_all_terminal(api, deadline_s=deadline_s)
            except BenchError:  # counted below as projects not terminal: the run goes on
                waited_out = True
            for project in await list_projects(api):
                not_terminal += project["status"] == "generating"
                clips |= project["clips"]
    tasks = {task["task_uuid"]: task for task in await stack.sim_tasks()}
    stats = await stack.sim_get("/__sim/stats")
    dead_letters = sum((await stack.dead_letters()).values())
    truth = compare(clips, tasks, stats, dead_letters=dead_letters)
    return truth | {"projects_not_terminal": not_terminal, "waited_out": waited_out}


def compare(
    clips: dict[str, str],
    tasks: dict[str, dict[str, Any]],
    stats: dict[str, Any],
    *,
    dead_letters: int | None,
) -> dict[str, Any]:
    """``clips`` (task UUID -> its URL, ``"pending"`` or ``"failed"``) against the
    simulator's ``tasks`` (by UUID) and request counters."""
    not_succeeded = [uuid for uuid, value in clips.items() if value in ("pending", "failed")]
    never_accepted = [uuid for uuid in clips if uuid not in tasks]
    extra = [uuid for uuid in tasks if uuid not in clips]
    billed_twice = [uuid for uuid in extra if tasks[uuid]["billed"]]
    sim_not_success = [uuid for uuid, task in tasks.items() if task["state"] != "success"]
    return {
        "clips": len(clips),
        "sim_tasks": len(tasks),
        "lost": len(set(not_succeeded) | set(never_accepted)),
        "not_succeeded": len(not_succeeded),
        "never_accepted": len(never_accepted),
        "extra_tasks": len(extra),
        "billed_twice": len(billed_twice),
        "sim_not_success": len(sim_not_success),
        "resubmissions": sum(task["submissions"] - 1 for task in tasks.values()),
        "polls": sum(task["polls"] for task in tasks.values()),
        "sim_requests": stats.get("requests"),
        "sim_http_status": stats.get("http_status"),
        "billed_cost": stats.get("billed_cost"),
        "dead_letters": dead_letters,
        "examples": {
            "lost": (not_succeeded + never_accepted)[:5],
            "extra": extra[:5],
        },
    }


def check_stored_projects(
    projects: list[dict[str, Any]],
    tasks: dict[str, dict[str, Any]],
    stats: dict[str, Any],
    *,
    sim_url: str,
) -> dict[str, Any]:
    """The task-queue baseline's projects as stored against the simulator's ``tasks``.

    What :func:`compare` checks, and per clip what the baseline stored of its task:
    a succeeded clip's video URL and cost must be the simulator's, and each task
    submitted once (the run has no faults, so a second submit is the baseline's own
    doing). The baseline has no dead-letter queue: ``dead_letters`` is None.
    """
    clips: dict[str, str] = {}
    wrong_result: list[str] = []
    for project in projects:
        for clip in project["clips"]:
            task_uuid, status = clip["task_uuid"], clip["status"]
            ended = status if status == "failed" else "pending"
            clips[task_uuid] = clip["video_url"] if status == "success" else ended
            task = tasks.get(task_uuid)
            if status == "success" and task is not None and not _same_result(clip, task, sim_url):
                wrong_result.append(task_uuid)
    truth = compare(clips, tasks, stats, dead_letters=None)
    return truth | {
        "projects_not_terminal": sum(project["status"] == "generating" for project in projects),
        "waited_out": False,
        "submitted_more_than_once": sum(task["submissions"] > 1 for task in tasks.values()),
        "wrong_result": len(wrong_result),
        "examples": truth["examples"] | {"wrong_result": wrong_result[:5]},
    }


def _same_result(clip: dict[str, Any], task: dict[str, Any], sim_url: str) -> bool:
    """The clip's stored video URL and cost are those of the simulator's succeeded task."""
    if task["state"] != "success" or not task["video_uuids"] or clip["cost"] is None:
        return False
    url = video_url(sim_url, task["video_uuids"][0])
    return bool(clip["video_url"] == url and round(clip["cost"], 4) == task["cost"])
