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

    not_succeeded = [uuid for uuid, value in clips.items() if value in ("pending", "failed")]
    never_accepted = [uuid for uuid in clips if uuid not in tasks]
    extra = [uuid for uuid in tasks if uuid not in clips]
    billed_twice = [uuid for uuid in extra if tasks[uuid]["billed"]]
    sim_not_success = [uuid for uuid, task in tasks.items() if task["state"] != "success"]
    dead_letters = await stack.dead_letters()
    return {
        "clips": len(clips),
        "sim_tasks": len(tasks),
        "projects_not_terminal": not_terminal,
        "waited_out": waited_out,
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
        "dead_letters": sum(dead_letters.values()),
        "examples": {
            "lost": (not_succeeded + never_accepted)[:5],
            "extra": extra[:5],
        },
    }
