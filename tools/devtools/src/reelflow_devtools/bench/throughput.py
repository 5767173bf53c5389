"""K projects of N clips created at once; how long until all are terminal, and the poll lag.

The end of the run is the latest ``completed_at`` reelflow recorded (the write that
made the last project terminal); the lag of a clip is its ``completed_at`` minus
the moment the simulator finished it, which is ``(now - elapsed) + latency`` read
from ``/__sim/tasks``. Both clocks are this machine's wall clock.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from reelflow_devtools.bench.client import (
    BenchError,
    api_client,
    get_projects,
    scene,
    wait_all_terminal,
)
from reelflow_devtools.bench.launcher import BenchStack
from reelflow_devtools.bench.stats import parse_time, sim_finished_at, summary_ms


@dataclass(frozen=True)
class ThroughputPlan:
    projects: int = 40
    clips: int = 10
    concurrency: int = 20
    #: simulated seconds, cycled over the scenes of a project
    latencies_s: tuple[float, ...] = (30, 50, 70, 90, 110)
    deadline_s: float = 120


@dataclass(frozen=True)
class ThroughputRun:
    key: str
    project_ids: list[str]
    results: dict[str, Any]


async def run_throughput(stack: BenchStack, plan: ThroughputPlan) -> ThroughputRun:
    key = await stack.issue_key("bench-throughput")
    gate = asyncio.Semaphore(plan.concurrency)
    async with api_client(stack.api_url, key, connections=plan.concurrency) as api:

        async def create(index: int) -> str:
            scenes = [
                scene(
                    f"bench project {index} scene {j}", plan.latencies_s[j % len(plan.latencies_s)]
                )
                for j in range(plan.clips)
            ]
            async with gate:
                answer = await api.post(
                    "/v1/projects", json={"title": f"bench {index}", "scenes": scenes}
                )
            if answer.status_code != 202:
                raise BenchError(f"POST /v1/projects answered {answer.status_code}: {answer.text}")
            project_id: str = answer.json()["project_id"]
            return project_id

        started = time.time()
        project_ids = list(await asyncio.gather(*(create(i) for i in range(plan.projects))))
        posted = time.time()
        seen_done = await wait_all_terminal(api, deadline_s=plan.deadline_s)
        projects = await get_projects(api, project_ids, plan.concurrency)

    sim_now = time.time()  # just before the simulator computes its own "now"
    sim_tasks = {task["task_uuid"]: task for task in await stack.sim_tasks()}

    lags: list[float] = []
    submit_delays: list[float] = []
    completed_at: list[float] = []
    cost_mismatches = 0
    statuses: dict[str, int] = {}
    for project in projects:
        statuses[project["status"]] = statuses.get(project["status"], 0) + 1
        created = parse_time(project["created_at"])
        for clip in project["results"]:
            if clip.get("submitted_at"):
                submit_delays.append(parse_time(clip["submitted_at"]) - created)
            truth = sim_tasks.get(clip["task_uuid"])
            if not clip.get("completed_at") or truth is None:
                continue
            done = parse_time(clip["completed_at"])
            completed_at.append(done)
            lags.append(done - sim_finished_at(truth, sim_now))
            if clip.get("cost") is not None and abs(clip["cost"] - truth["cost"]) > 1e-6:
                cost_mismatches += 1

    total = plan.projects * plan.clips
    finished = max(completed_at) if completed_at else seen_done
    wall_s = finished - started
    return ThroughputRun(
        key=key,
        project_ids=project_ids,
        results={
            "projects": plan.projects,
            "clips_per_project": plan.clips,
            "clips": total,
            "post_concurrency": plan.concurrency,
            "simulated_latencies_s": list(plan.latencies_s),
            "posts_s": round(posted - started, 3),
            "wall_s": round(wall_s, 3),
            "seen_by_client_s": round(seen_done - started, 3),
            "clips_per_s": round(total / wall_s, 2) if wall_s > 0 else None,
            "project_statuses": statuses,
            "clips_completed": len(completed_at),
            "cost_mismatches": cost_mismatches,
            "submit_delay": summary_ms(submit_delays),
            "poll_lag": summary_ms(lags),
        },
    )
