"""Polling, live: whatever the poller runs, on the simulator's own latency distribution.

Clips name no latency, so the simulator draws each from its model (``google:3@3``
by default: median 90 s, a long tail) at its speedup, and the services run with
production settings compressed by the same factor (``bench.launcher.compressed``).
Per clip: the getResponse calls the simulator counted for its task, and the
detection delay, reelflow's ``completed_at`` minus the moment the simulator
finished it, in simulated seconds (real times the speedup), split into finished → the
first getResponse that answered it ended (the simulator's ``first_seen_ended_seconds``)
and that call → ``completed_at`` (real seconds: a recording lag the speedup multiplies
in the delay, which production pays once). The same completion times then
feed the exact evaluation of the reference schedules (:mod:`.polling`), so every
row is on the same latencies. A warm-up batch goes first, so the measured one
meets a poller that has learned the model, as in production; its own figures
(the poller learning from its priors) are reported beside.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from reelflow_devtools.bench.client import (
    ApiClient,
    BenchError,
    api_client,
    create_project,
    get_projects,
)
from reelflow_devtools.bench.launcher import BenchStack, FinishedProjects
from reelflow_devtools.bench.stats import parse_time, percentile, sim_finished_at


@dataclass(frozen=True)
class LivePlan:
    clips: int = 200
    scenes: int = 10
    #: clips followed first, unmeasured but reported: what the poller learns from
    #: (production pollers share days of completions through ``poll_stats``)
    warmup_clips: int = 100
    #: real seconds the warm-up's completions get to reach ``poll_stats`` and every replica
    settle_s: float = 10
    #: real seconds per batch; the simulator's tail at speedup 5 is ~2 minutes
    deadline_s: float = 600


@dataclass(frozen=True)
class LiveRun:
    key: str
    #: simulated completion times of every measured clip, for the exact rows
    latencies_s: list[float]
    results: dict[str, Any]


async def _batch(
    stack: BenchStack,
    api: ApiClient,
    finished: FinishedProjects,
    plan: LivePlan,
    clips: int,
    tag: str,
) -> list[Any]:
    """``clips`` clips in projects of ``plan.scenes``, followed to the end; the projects."""
    ids: list[str] = []
    for p in range(-(-clips // plan.scenes)):
        body = {
            "title": f"polling {tag} {p}",
            "scenes": [{"prompt": f"polling {tag} {p} scene {j}"} for j in range(plan.scenes)],
        }
        ids.append(await create_project(api, body))
    try:
        await finished.wait(ids, deadline_s=plan.deadline_s)
    except TimeoutError:
        raise BenchError(f"polling {tag}: not finished after {plan.deadline_s:g} s") from None
    return await get_projects(api, ids, 10)


def _figures(
    documents: list[Any], tasks: dict[str, Any], sim_now: float, speedup: float
) -> tuple[list[float], dict[str, Any]]:
    delays: list[float] = []
    calls: list[int] = []
    latencies: list[float] = []
    #: finished → the first getResponse that answered so (simulated s): the schedule's part
    seen: list[float] = []
    #: that getResponse → ``completed_at`` stored (real s): the poller's and database's part
    lags: list[float] = []
    #: submit → the task's first getResponse (simulated s): where the learned plan starts
    firsts: list[float] = []
    #: the delays of the clips that had finished before that first check (simulated s)
    before_first: list[float] = []
    for project in documents:
        for clip in project["results"]:
            task = tasks.get(clip["task_uuid"])
            if task is None or not clip.get("completed_at"):
                continue
            finished_at = sim_finished_at(task, sim_now)
            completed_at = parse_time(clip["completed_at"])
            delays.append((completed_at - finished_at) * speedup)
            calls.append(task["polls"])
            latency = max(task["latency_seconds"])
            latencies.append(latency * speedup)
            if task.get("first_seen_ended_seconds") is not None:
                seen_at = finished_at - latency + task["first_seen_ended_seconds"]
                seen.append((seen_at - finished_at) * speedup)
                lags.append(completed_at - seen_at)
            if task.get("first_polled_seconds") is not None:
                firsts.append(task["first_polled_seconds"] * speedup)
                if task["first_polled_seconds"] >= latency:
                    before_first.append(delays[-1])
    if not delays:
        raise BenchError("polling: no clip finished")
    figures: dict[str, Any] = {
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
    }
    if seen:
        figures["seen"] = {
            "what": "finished -> first getResponse answering so, simulated s",
            "p50_s": round(percentile(seen, 50), 2),
            "p95_s": round(percentile(seen, 95), 2),
            "p99_s": round(percentile(seen, 99), 2),
        }
        figures["recording_lag"] = {
            "what": (
                "that getResponse -> completed_at, real s (counted x speedup in the delay;"
                " production pays it once)"
            ),
            "p50_s": round(percentile(lags, 50), 3),
            "p95_s": round(percentile(lags, 95), 3),
            "max_s": round(max(lags), 3),
        }
    if firsts:
        figures["first_check"] = {
            "what": (
                "submit -> the task's first getResponse, simulated s; the clips that had"
                " finished before it, and their largest delay"
            ),
            "p50_s": round(percentile(firsts, 50), 1),
            "min_s": round(min(firsts), 1),
            "max_s": round(max(firsts), 1),
            "finished_before": len(before_first),
            "finished_before_max_delay_s": round(max(before_first, default=0.0), 2),
        }
    return latencies, figures


async def run_polling_live(stack: BenchStack, plan: LivePlan, speedup: float) -> LiveRun:
    """The warm-up batch (reported as ``warmup``), then the measured one."""
    key = await stack.issue_key("bench-polling")
    async with api_client(stack.api_url, key) as api, stack.finished_projects() as finished:
        warmup: list[Any] = []
        if plan.warmup_clips:
            warmup = await _batch(stack, api, finished, plan, plan.warmup_clips, "warm-up")
            await asyncio.sleep(plan.settle_s)  # the stats interval, compressed, and more
        measured = await _batch(stack, api, finished, plan, plan.clips, "measured")
    sim_now = time.time()
    tasks = {task["task_uuid"]: task for task in await stack.sim_tasks()}
    latencies, results = _figures(measured, tasks, sim_now, speedup)
    if warmup:
        results["warmup"] = _figures(warmup, tasks, sim_now, speedup)[1]
    return LiveRun(key=key, latencies_s=latencies, results=results)
