"""M WebSocket watchers on one project: how long until every one of them has a change.

A change's moment is the clip's ``completed_at`` (set by the poller just before its
write); each watcher stamps the wall time it received the ``clip.updated``. All
watchers live in this one process, so the figures include its own scheduling.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import websockets

from reelflow_devtools.bench.client import BenchError, api_client, scene
from reelflow_devtools.bench.launcher import BenchStack
from reelflow_devtools.bench.stats import parse_time, sim_finished_at, summary_ms


@dataclass(frozen=True)
class FanoutPlan:
    watchers: int = 200
    clips: int = 20
    #: real seconds until the first clip finishes: time enough for every watcher to connect
    first_finish_s: float = 6.0
    spacing_s: float = 0.25
    connect_concurrency: int = 25
    deadline_s: float = 90


@dataclass
class Watcher:
    snapshot_seq: int = -1
    received: dict[int, float] = field(default_factory=dict)  # seq -> wall time
    changed_at: dict[int, float] = field(default_factory=dict)  # seq -> clip completed_at
    task_of: dict[int, str] = field(default_factory=dict)  # seq -> the clip's task UUID
    finished: bool = False


async def _watch(
    url: str, watcher: Watcher, connected: asyncio.Event, gate: asyncio.Semaphore
) -> None:
    # The gate bounds handshakes in flight, until each watcher has its snapshot.
    await gate.acquire()
    try:
        ws = await websockets.connect(url, max_queue=None, open_timeout=60)
    except BaseException:
        gate.release()
        raise
    async with ws:
        try:
            first = json.loads(await ws.recv())
        finally:
            gate.release()
        if first["type"] != "snapshot":
            raise BenchError(f"the first WebSocket message was {first['type']}, not a snapshot")
        watcher.snapshot_seq = first["seq"]
        connected.set()
        async for raw in ws:
            now = time.time()
            message = json.loads(raw)
            kind = message["type"]
            if kind == "clip.updated":
                watcher.received[message["seq"]] = now
                completed_at = message["clip"].get("completed_at")
                if completed_at:
                    watcher.changed_at[message["seq"]] = parse_time(completed_at)
                    watcher.task_of[message["seq"]] = message["clip"]["task_uuid"]
            elif kind == "project.finished":
                watcher.finished = True
                return
            elif kind == "snapshot":  # a reader too slow for the backlog gets a fresh one
                watcher.snapshot_seq = message["seq"]


async def run_fanout(
    stack: BenchStack, plan: FanoutPlan, speedup: float
) -> tuple[str, dict[str, Any]]:
    """The tenant's key and the figures."""
    key = await stack.issue_key("bench-fanout")
    scenes = [
        scene(f"fan-out scene {j}", (plan.first_finish_s + j * plan.spacing_s) * speedup)
        for j in range(plan.clips)
    ]
    async with api_client(stack.api_url, key) as api:
        answer = await api.post("/v1/projects", json={"title": "fan-out", "scenes": scenes})
    if answer.status_code != 202:
        raise BenchError(f"POST /v1/projects answered {answer.status_code}: {answer.text}")
    project_id = answer.json()["project_id"]
    url = f"{stack.ws_url}/v1/ws/projects/{project_id}?token={key}"

    watchers = [Watcher() for _ in range(plan.watchers)]
    gate = asyncio.Semaphore(plan.connect_concurrency)
    connected = [asyncio.Event() for _ in watchers]
    started = time.monotonic()
    async with asyncio.timeout(plan.deadline_s):
        tasks = [
            asyncio.create_task(_watch(url, w, event, gate))
            for w, event in zip(watchers, connected, strict=True)
        ]
        try:
            await asyncio.gather(*(event.wait() for event in connected))
            connect_s = time.monotonic() - started
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
    results = _summarise(plan, watchers, connect_s, project_id)
    # The system was otherwise idle: the poll lag here is the ladder's, not a backlog's.
    finished_at = {seq: at for w in watchers for seq, at in w.changed_at.items()}
    task_of = {seq: task for w in watchers for seq, task in w.task_of.items()}
    sim_now = time.time()
    truth = {task["task_uuid"]: task for task in await stack.sim_tasks()}
    lags = [
        finished_at[seq] - sim_finished_at(truth[task], sim_now)
        for seq, task in task_of.items()
        if task in truth
    ]
    results["poll_lag_idle"] = summary_ms(lags)
    return key, results


def _summarise(
    plan: FanoutPlan, watchers: list[Watcher], connect_s: float, project_id: str
) -> dict[str, Any]:
    changed_at: dict[int, float] = {}
    for watcher in watchers:
        changed_at |= watcher.changed_at
    # Only changes every watcher could see live: later than the latest snapshot.
    latest_snapshot = max(w.snapshot_seq for w in watchers)
    seqs = sorted(seq for seq in changed_at if seq > latest_snapshot)
    to_all: list[float] = []
    spread: list[float] = []
    deliveries: list[float] = []
    missing = 0
    for seq in seqs:
        times = [w.received[seq] for w in watchers if seq in w.received]
        missing += len(watchers) - len(times)
        if not times:
            continue
        deliveries += [t - changed_at[seq] for t in times]
        to_all.append(max(times) - changed_at[seq])
        spread.append(max(times) - min(times))
    return {
        "project_id": project_id,
        "watchers": plan.watchers,
        "clips": plan.clips,
        "connect_all_s": round(connect_s, 3),
        "changes_measured": len(seqs),
        "changes_missed_live": plan.clips - len(seqs),
        "missing_deliveries": missing,
        "watchers_finished": sum(w.finished for w in watchers),
        "change_to_all_watchers": summary_ms(to_all),
        "change_to_each_watcher": summary_ms(deliveries),
        "first_to_last_watcher": summary_ms(spread),
    }
