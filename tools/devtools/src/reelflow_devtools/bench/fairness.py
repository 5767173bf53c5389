"""Fair share: one tenant floods, another sends a few clips at a time; the small one's delay.

The flooder POSTs ``flood`` clips as projects of up to 50 scenes. Then the small
tenant sends ``rounds`` projects of ``small`` scenes, one after the other (each
once the previous one's clips were all submitted, then a pause). A round's
*submit delay* is from its project's ``created_at`` to the last of its clips'
``submitted_at``: reelflow's own writes, on this machine's clock. Each round
also records the flooder's backlog when it started (flood clips the simulator
had not yet seen), so rounds that ran after the flood are told apart.

Every clip finishes at the simulator at once (``[sim:latency=0]``): the flood
is limited by reelflow, not by generation. The same run is made twice: with
fair share (the submitter's default lanes) and with ``tenant_submit_concurrency``
above the whole flood, which makes the submitter a FIFO again.

``python -m reelflow_devtools.bench.fairness [--flood 2000 --small 5 --rounds 20]``
prints a table and writes ``.run/bench/fairness.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from reelflow_devtools.bench.client import (
    ApiClient,
    BenchError,
    api_client,
    create_project,
    get_json,
    get_projects,
    scene,
    wait_all_terminal,
)
from reelflow_devtools.bench.launcher import BenchStack, StackConfig, running_stack
from reelflow_devtools.bench.stats import parse_time, summary_ms
from reelflow_devtools.launcher import StackConfig as LaunchConfig
from reelflow_devtools.waiting import poll_until_async

RUN_DIR = Path(".run/bench")
MAX_SCENES = 50
#: RabbitMQ's prefetch count is a 16-bit number
MAX_PREFETCH = 65_535
WAIT_INTERVAL_S = 0.05


@dataclass(frozen=True)
class FairnessPlan:
    flood: int = 2000
    small: int = 5
    rounds: int = 20
    #: real seconds between the small tenant's rounds, so they sample the whole flood
    pause_s: float = 2.0
    post_concurrency: int = 8
    round_deadline_s: float = 600
    deadline_s: float = 900
    #: also run without fair share, for comparison
    compare: bool = True


@dataclass(frozen=True)
class FairnessStack(StackConfig):
    """The benchmark's stack, with the submitter's per-tenant limit set (None: default)."""

    tenant_submit_concurrency: int | None = None

    def launch_config(self, run_dir: Path, prefix: str) -> LaunchConfig:
        launch = super().launch_config(run_dir, prefix)
        if self.tenant_submit_concurrency is None:
            return launch
        limit = {"REELFLOW_TENANT_SUBMIT_CONCURRENCY": str(self.tenant_submit_concurrency)}
        return replace(launch, settings={**launch.settings, **limit})


def flood_sizes(flood: int) -> list[int]:
    """The flood as project sizes: full projects of 50 scenes, and the rest."""
    full, rest = divmod(flood, MAX_SCENES)
    return [MAX_SCENES] * full + ([rest] if rest else [])


async def post_project(api: ApiClient, title: str, scenes: int) -> str:
    body = {"title": title, "scenes": [scene(f"{title} scene {j}", 0) for j in range(scenes)]}
    return await create_project(api, body)


async def wait_submitted(api: ApiClient, project_id: str, deadline_s: float) -> Any:
    """GET the project until every clip has a ``submitted_at``; the project then."""

    async def submitted() -> Any:
        project = await get_json(api, f"/v1/projects/{project_id}")
        return project if all(clip.get("submitted_at") for clip in project["results"]) else None

    return await poll_until_async(
        submitted,
        what=f"every clip of project {project_id} to be submitted",
        deadline_s=deadline_s,
        pause_s=WAIT_INTERVAL_S,
        error=BenchError,
    )


def submit_delays(project: Any) -> list[float]:
    """Seconds from the project's creation to each clip's submit."""
    created = parse_time(project["created_at"])
    return [parse_time(clip["submitted_at"]) - created for clip in project["results"]]


async def run_fairness(stack: BenchStack, plan: FairnessPlan) -> dict[str, Any]:
    """The flood, the small tenant's rounds during it, and the figures of both tenants."""
    flood_key = await stack.issue_key("bench-flood")
    small_key = await stack.issue_key("bench-small")
    gate = asyncio.Semaphore(plan.post_concurrency)
    async with (
        api_client(stack.api_url, flood_key, connections=plan.post_concurrency) as flood_api,
        api_client(stack.api_url, small_key, connections=2) as small_api,
    ):

        async def post_flood(index: int, scenes: int) -> str:
            async with gate:
                return await post_project(flood_api, f"flood {index}", scenes)

        started = time.time()
        sizes = flood_sizes(plan.flood)
        flood_ids = list(await asyncio.gather(*(post_flood(i, n) for i, n in enumerate(sizes))))
        posted = time.time()

        rounds: list[dict[str, Any]] = []
        for index in range(plan.rounds):
            seen = len(await stack.sim_tasks())
            backlog = max(0, plan.flood + index * plan.small - seen)
            project_id = await post_project(small_api, f"small {index}", plan.small)
            project = await wait_submitted(small_api, project_id, plan.round_deadline_s)
            delays = submit_delays(project)
            rounds.append(
                {
                    "round": index,
                    "flood_backlog": backlog,
                    "delay_ms": round(max(delays) * 1000, 1),
                    "clip_delays_ms": [round(d * 1000, 1) for d in delays],
                }
            )
            await asyncio.sleep(plan.pause_s)  # spreads the rounds over the flood

        await wait_all_terminal(flood_api, deadline_s=plan.deadline_s)
        flood_projects = await get_projects(flood_api, flood_ids, plan.post_concurrency)

    flood_delays = [d for project in flood_projects for d in submit_delays(project)]
    submitted = [parse_time(clip["submitted_at"]) for p in flood_projects for clip in p["results"]]
    completed = [
        parse_time(clip["completed_at"])
        for p in flood_projects
        for clip in p["results"]
        if clip.get("completed_at")
    ]
    under_flood = [r for r in rounds if r["flood_backlog"] > 0]
    submit_s = max(submitted) - started
    done_s = (max(completed) if completed else time.time()) - started
    return {
        "small": {
            "rounds": len(rounds),
            "rounds_under_flood": len(under_flood),
            "delay_under_flood": summary_ms([r["delay_ms"] / 1000 for r in under_flood]),
            "delay_all_rounds": summary_ms([r["delay_ms"] / 1000 for r in rounds]),
            "per_round": rounds,
        },
        "flood": {
            "clips": plan.flood,
            "posts_s": round(posted - started, 3),
            "all_submitted_s": round(submit_s, 3),
            "submits_per_s": round(plan.flood / submit_s, 2) if submit_s > 0 else None,
            "all_completed_s": round(done_s, 3),
            "clips_completed": len(completed),
            "submit_delay": summary_ms(flood_delays),
        },
    }


def modes(plan: FairnessPlan) -> dict[str, int | None]:
    """Each run's ``tenant_submit_concurrency``: the default, and one above the flood."""
    found: dict[str, int | None] = {"fair_share": None}
    if plan.compare:
        found["no_fair_share"] = min(MAX_PREFETCH, plan.flood + plan.small * plan.rounds)
    return found


def measure(plan: FairnessPlan, run_dir: Path, base: StackConfig | None = None) -> dict[str, Any]:
    """Start a stack per mode (from ``base``'s broker, database and log level), run the
    scenario on it, stop it; the figures by mode."""
    results: dict[str, Any] = {"plan": asdict(plan)}
    given = (
        {}
        if base is None
        else {k: getattr(base, k) for k in ("amqp_url", "mongo_url", "log_level")}
    )
    for mode, limit in modes(plan).items():
        config = FairnessStack(tenant_submit_concurrency=limit, **given)
        with running_stack(config, run_dir / mode) as stack:
            figures = asyncio.run(run_fairness(stack, plan))
        results[mode] = {"tenant_submit_concurrency": limit or "default", **figures}
    return results


def table(results: dict[str, Any]) -> str:
    """The figures as a markdown table, one row per mode."""
    lines = [
        "| mode | small tenant's submit delay, rounds under flood: p50 / p95 / max | rounds"
        " under flood | flood: submits/s | flood: all completed |",
        "|---|---|---|---|---|",
    ]
    for mode in ("fair_share", "no_fair_share"):
        if mode not in results:
            continue
        small, flood = results[mode]["small"], results[mode]["flood"]
        delay = small["delay_under_flood"]
        shown = (
            f"{delay['p50_ms']:.0f} / {delay['p95_ms']:.0f} / {delay['max_ms']:.0f} ms"
            if delay["count"]
            else "n/a"
        )
        lines.append(
            f"| {mode} (tenant_submit_concurrency "
            f"{results[mode]['tenant_submit_concurrency']}) | {shown} | "
            f"{small['rounds_under_flood']} of {small['rounds']} | {flood['submits_per_s']} | "
            f"{flood['all_completed_s']:.1f} s |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m reelflow_devtools.bench.fairness")
    default = FairnessPlan()
    parser.add_argument("--flood", type=int, default=default.flood, help="the flooder's clips")
    parser.add_argument("--small", type=int, default=default.small, help="clips per small round")
    parser.add_argument("--rounds", type=int, default=default.rounds, help="small tenant's rounds")
    parser.add_argument("--pause", type=float, default=default.pause_s, help="s between rounds")
    parser.add_argument("--no-compare", action="store_true", help="skip the run without it")
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR / "fairness")
    parser.add_argument("--out", type=Path, default=RUN_DIR / "fairness.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = FairnessPlan(
        flood=args.flood,
        small=args.small,
        rounds=args.rounds,
        pause_s=args.pause,
        compare=not args.no_compare,
    )
    try:
        results = measure(plan, args.run_dir)
    except BenchError as exc:
        print(f"bench fairness: {exc}", flush=True)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"bench fairness: figures in {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
