"""Throughput by project size: about N clips as projects of 1, 10 and 50 scenes, one size's run.

:mod:`reelflow_devtools.bench.rounds` runs each size several times, beside the
task-queue baseline and the raw ceiling.

Every clip finishes at the provider at once (``[sim:latency=0]``): the figures are
reelflow's own cost, not the provider's. A size's run lasts from its first POST to
the latest ``completed_at`` reelflow stored (the write that made its last project
terminal). The database operations are the server's own counters (``top``) over
the same span, and the confirmed publishes the services' own ``/metrics``: the
raw ceiling (:mod:`reelflow_devtools.bench.ceiling`) repeats exactly that work.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from reelflow_devtools.bench.client import (
    ApiClient,
    api_client,
    create_project,
    get_projects,
    scene,
)
from reelflow_devtools.bench.launcher import BenchStack
from reelflow_devtools.bench.span import Span
from reelflow_devtools.bench.stats import parse_time, summary_ms


@dataclass(frozen=True)
class ThroughputPlan:
    sizes: tuple[int, ...] = (1, 10, 50)
    #: clips per size, rounded up to whole projects
    clips: int = 500
    #: runs of each size, read in pairs of rounds (:mod:`reelflow_devtools.bench.rounds`)
    rounds: int = 6
    #: POSTs in flight
    concurrency: int = 20
    #: clips followed first, not measured: the poller learns the provider's (zero)
    #: latency, as a production poller has from ``poll_stats``
    warmup_clips: int = 50
    #: real seconds for the warm-up's completions to reach ``poll_stats``
    settle_s: float = 2
    deadline_s: float = 300


@dataclass(frozen=True)
class SizeRun:
    """One project size's figures, and the tenant's key for the ground truth."""

    key: str
    project_ids: list[str]
    results: dict[str, Any]


async def _create(api: ApiClient, gate: asyncio.Semaphore, size: int, index: int) -> str:
    body = {
        "title": f"bench {size}-scene project {index}",
        "scenes": [scene(f"bench {size}x{index} scene {j}", 0) for j in range(size)],
    }
    async with gate:
        return await create_project(api, body)


async def run_size(stack: BenchStack, plan: ThroughputPlan, size: int) -> SizeRun:
    """Create ``plan.clips`` clips as projects of ``size`` scenes, wait, count."""
    key = await stack.issue_key(f"bench-throughput-{size}")
    projects_count = -(-plan.clips // size)
    gate = asyncio.Semaphore(plan.concurrency)
    async with (
        api_client(stack.api_url, key, connections=plan.concurrency) as api,
        stack.finished_projects() as finished,
    ):
        # A tenant that sends its first project has no lane yet: the submitter sorts it
        # and announces the lane, and only then does the api publish past the sorter.
        # One finished project first, outside the counters, so the run measures a
        # tenant in its steady state, as nearly every project in production is.
        first = await create_project(
            api, {"title": f"bench {size}-scene lane", "scenes": [scene("lane", 0)]}
        )
        await finished.wait([first], deadline_s=plan.deadline_s)
        published_before = await stack.confirmed_publishes()
        sim_before = await stack.sim_get("/__sim/stats")
        span = await Span.start(stack)
        ids = await asyncio.gather(*(_create(api, gate, size, i) for i in range(projects_count)))
        posted = time.time()
        seen_done = await finished.wait_or_fail(
            ids, deadline_s=plan.deadline_s, what=f"{size}-scene projects"
        )
        await span.stop()
        published_after = await stack.confirmed_publishes()
        sim_after = await stack.sim_get("/__sim/stats")
        projects = await get_projects(api, list(ids), plan.concurrency)

    statuses: dict[str, int] = {}
    completed_at: list[float] = []
    submit_delays: list[float] = []
    for project in projects:
        statuses[project["status"]] = statuses.get(project["status"], 0) + 1
        created = parse_time(project["created_at"])
        for clip in project["results"]:
            if clip.get("submitted_at"):
                submit_delays.append(parse_time(clip["submitted_at"]) - created)
            if clip.get("completed_at") and clip.get("status") == "success":
                completed_at.append(parse_time(clip["completed_at"]))
    clips = projects_count * size
    published_by = {
        name: count - published_before.get(name, 0) for name, count in published_after.items()
    }
    published = sum(published_by.values())
    # The key and the GETs are the benchmark's, not the pipeline's: outside the span above.
    return SizeRun(
        key=key,
        project_ids=list(ids),
        results={
            "scenes_per_project": size,
            "projects": projects_count,
            "clips": clips,
            "clips_succeeded": len(completed_at),
            "project_statuses": statuses,
            "posts_s": round(posted - span.started, 3),
            **span.results(clips, max(completed_at) if completed_at else seen_done),
            "db_ops_by_collection": {name: counts["total"] for name, counts in span.ops.items()},
            "confirmed_publishes": published,
            "publishes_per_clip": round(published / clips, 2),
            # by publisher: the submitter's one less for a clip the api put on its lane itself
            "publishes_per_clip_by_service": {
                name: round(count / clips, 2) for name, count in published_by.items()
            },
            # HTTP requests to Runware (submits share them: reelflow_common.runware.batching)
            "provider_requests_per_clip": round(
                (sim_after["requests"] - sim_before["requests"]) / clips, 2
            ),
            "submit_delay": summary_ms(submit_delays),
        },
    )


def warmup_size(plan: ThroughputPlan) -> int:
    """Scenes per project of the warm-up run (its ``warmup_clips`` as one project, or as few)."""
    return min(plan.warmup_clips, max(plan.sizes))
