"""Polling, live: whatever the poller runs, on the simulator's own latency distribution.

Clips name no latency, so the simulator draws each from its model (``google:3@3``
by default: median 90 s, a long tail) at its speedup, and the services run with
production settings compressed by the same factor (``bench.launcher.compressed``).
Per clip: the getResponse calls the simulator counted for its task, and the
detection delay, reelflow's ``completed_at`` minus the moment the simulator
finished it, in simulated seconds (real times the speedup). The same completion times then
feed the exact evaluation of the reference schedules (:mod:`.polling`), so every
row is on the same latencies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from reelflow_devtools.bench.client import BenchError, api_client, get_projects
from reelflow_devtools.bench.launcher import BenchStack
from reelflow_devtools.bench.stats import parse_time, percentile, sim_finished_at


@dataclass(frozen=True)
class LivePlan:
    clips: int = 200
    scenes: int = 10
    #: real seconds; the simulator's tail at speedup 5 is ~2 minutes
    deadline_s: float = 600


@dataclass(frozen=True)
class LiveRun:
    key: str
    #: simulated completion times of every clip, for the exact rows
    latencies_s: list[float]
    results: dict[str, Any]


async def run_polling_live(stack: BenchStack, plan: LivePlan, speedup: float) -> LiveRun:
    key = await stack.issue_key("bench-polling")
    projects = -(-plan.clips // plan.scenes)
    async with api_client(stack.api_url, key) as api, stack.finished_projects() as finished:
        ids: list[str] = []
        for p in range(projects):
            body = {
                "title": f"polling {p}",
                "scenes": [{"prompt": f"polling {p} scene {j}"} for j in range(plan.scenes)],
            }
            answer = await api.post("/v1/projects", json=body)
            if answer.status_code != 202:
                raise BenchError(f"POST /v1/projects answered {answer.status_code}: {answer.text}")
            ids.append(answer.json()["project_id"])
        try:
            await finished.wait(ids, deadline_s=plan.deadline_s)
        except TimeoutError:
            raise BenchError(f"polling: not finished after {plan.deadline_s:g} s") from None
        documents = await get_projects(api, ids, 10)
    sim_now = time.time()
    tasks = {task["task_uuid"]: task for task in await stack.sim_tasks()}

    delays: list[float] = []
    calls: list[int] = []
    latencies: list[float] = []
    for project in documents:
        for clip in project["results"]:
            task = tasks.get(clip["task_uuid"])
            if task is None or not clip.get("completed_at"):
                continue
            finished_at = sim_finished_at(task, sim_now)
            delays.append((parse_time(clip["completed_at"]) - finished_at) * speedup)
            calls.append(task["polls"])
            latencies.append(max(task["latency_seconds"]) * speedup)
    if not delays:
        raise BenchError("polling: no clip finished")
    return LiveRun(
        key=key,
        latencies_s=latencies,
        results={
            "clips": len(delays),
            "speedup": speedup,
            "calls_per_clip": round(sum(calls) / len(calls), 2),
            "p50_delay_s": round(percentile(delays, 50), 2),
            "p95_delay_s": round(percentile(delays, 95), 2),
            "p99_delay_s": round(percentile(delays, 99), 2),
            "max_delay_s": round(max(delays), 2),
            "latency_p50_s": round(percentile(latencies, 50), 1),
            "latency_p95_s": round(percentile(latencies, 95), 1),
            "latency_max_s": round(max(latencies), 1),
        },
    )
