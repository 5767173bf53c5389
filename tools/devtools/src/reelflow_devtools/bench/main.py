"""``make bench``: start reelflow as processes, run the phases in order, report and check.

1. throughput and poll lag (K projects x N clips, created at once);
2. WebSocket fan-out (M watchers on one project, the system otherwise idle);
3. API latency (GET, then POST, under C concurrent clients);
4. overload: a burst of B concurrent POSTs, each a 202 or an immediate 503;
5. ground truth: every clip of every phase against the simulator's tasks;
6. memory of every process after all of it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from reelflow_devtools.bench.api_load import ApiPlan, run_api_load
from reelflow_devtools.bench.client import BenchError
from reelflow_devtools.bench.fanout import FanoutPlan, run_fanout
from reelflow_devtools.bench.ground_truth import check_ground_truth
from reelflow_devtools.bench.launcher import (
    BenchStack,
    StackConfig,
    broker_answers,
    running_stack,
)
from reelflow_devtools.bench.overload import OverloadPlan, run_overload
from reelflow_devtools.bench.report import Targets, checks, table, write_json
from reelflow_devtools.bench.throughput import ThroughputPlan, run_throughput
from reelflow_devtools.processes import StartError

RUN_DIR = Path(".run/bench")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m reelflow_devtools.bench", description=__doc__)
    add = parser.add_argument
    add("--projects", type=int, default=40, help="throughput: projects created at once")
    add("--clips", type=int, default=10, help="throughput: clips (scenes) per project")
    add("--post-concurrency", type=int, default=20, help="throughput: POSTs in flight")
    add("--speedup", type=float, default=100, help="simulated seconds per real second")
    add("--watchers", type=int, default=200, help="fan-out: WebSockets on one project")
    add("--get-requests", type=int, default=1500, help="API latency: GET /v1/projects/{id}")
    add("--post-requests", type=int, default=500, help="API latency: POST /v1/projects")
    add("--api-concurrency", type=int, default=20, help="API latency: clients in flight")
    add("--burst", type=int, default=1000, help="overload: POSTs sent at once")
    add("--webhooks", action="store_true", help="let the simulator call back (default: poll only)")
    add("--log-level", default="INFO", help="the services' log level")
    add("--amqp-url", default=os.environ.get("REELFLOW_AMQP_URL", StackConfig.amqp_url))
    add(
        "--mongo-url",
        default=os.environ.get("REELFLOW_MONGO_URL"),
        help="a real MongoDB (a fresh database is used and dropped); default: embedded SecantusDB",
    )
    add("--out", type=Path, default=RUN_DIR / "results.json")
    add("--strict", action="store_true", help="exit non-zero on a missed performance target too")
    return parser.parse_args(argv)


class CpuMeter:
    """CPU seconds each process spent, and wall seconds, per phase."""

    def __init__(self, stack: BenchStack) -> None:
        self._stack = stack
        self.phases: dict[str, dict[str, float]] = {}
        self._mark()

    def _mark(self) -> None:
        self._cpu = self._stack.cpu_seconds() | {"bench": time.process_time()}
        self._wall = time.monotonic()

    def phase_done(self, phase: str) -> None:
        before, wall = self._cpu, self._wall
        self._mark()
        spent = {name: round(self._cpu[name] - before.get(name, 0.0), 2) for name in self._cpu}
        self.phases[phase] = {"wall_s": round(self._wall - wall, 2), **spent}


async def run_phases(stack: BenchStack, args: argparse.Namespace) -> dict[str, Any]:
    cpu = CpuMeter(stack)
    _say(f"throughput: {args.projects} projects x {args.clips} clips")
    throughput = await run_throughput(
        stack,
        ThroughputPlan(projects=args.projects, clips=args.clips, concurrency=args.post_concurrency),
    )
    cpu.phase_done("throughput")
    _say(f"fan-out: {args.watchers} watchers on one project")
    fanout_key, fanout = await run_fanout(stack, FanoutPlan(watchers=args.watchers), args.speedup)
    cpu.phase_done("fanout")
    _say(
        f"API latency: {args.get_requests} GET then {args.post_requests} POST"
        f" at concurrency {args.api_concurrency}"
    )
    api_key, _ids, api = await run_api_load(
        stack,
        ApiPlan(
            concurrency=args.api_concurrency,
            get_requests=args.get_requests,
            post_requests=args.post_requests,
        ),
        get_key=throughput.key,
        get_ids=throughput.project_ids,
    )
    cpu.phase_done("api")
    _say(f"overload: {args.burst} POSTs at once")
    overload_key, overload = await run_overload(stack, OverloadPlan(burst=args.burst))
    cpu.phase_done("overload")
    _say("ground truth: every clip against the simulator's tasks")
    keys = [throughput.key, api_key, fanout_key, overload_key]
    truth = await check_ground_truth(stack, keys, deadline_s=120)
    cpu.phase_done("drain_and_check")
    return {
        "throughput": throughput.results,
        "fanout": fanout,
        "api": api,
        "overload": overload,
        "ground_truth": truth,
        "cpu_s": cpu.phases,
    }


def _say(line: str) -> None:
    print(f"bench: {line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = StackConfig(
        amqp_url=args.amqp_url,
        sim_speedup=args.speedup,
        webhooks=args.webhooks,
        log_level=args.log_level,
        mongo_url=args.mongo_url,
    )
    problem = asyncio.run(broker_answers(config.amqp_url))
    if problem is not None:
        print(f"bench: RabbitMQ does not answer at {config.amqp_url}: {problem}", file=sys.stderr)
        return 1
    shutil.rmtree(RUN_DIR / "mongo-data", ignore_errors=True)
    shutil.rmtree(RUN_DIR / "logs", ignore_errors=True)
    began = time.monotonic()
    results: dict[str, Any] = {
        "config": {
            "cpus": os.cpu_count(),
            "load_before": [round(load, 2) for load in os.getloadavg()],
            "sim_speedup": config.sim_speedup,
            "webhooks": config.webhooks,
            "log_level": config.log_level,
            "poll_initial_delay_s": config.poll_initial_delay_s,
            "poll_backoff": config.poll_backoff,
            "poll_max_delay_s": config.poll_max_delay_s,
            "poll_ladder_ms": list(config.poll_ladder_ms()),
            "mongo": "given MongoDB" if config.mongo_url else "embedded SecantusDB",
        }
    }
    try:
        with running_stack(config, RUN_DIR) as stack:
            _say(f"stack up in {time.monotonic() - began:.1f} s (logs in {RUN_DIR / 'logs'})")
            results |= asyncio.run(run_phases(stack, args))
            results["memory_kib"] = stack.memory_kib()
            results["dead_processes"] = stack.dead_children()
    except (BenchError, StartError, TimeoutError) as exc:
        print(f"bench: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    results["duration_s"] = round(time.monotonic() - began, 1)
    targets = Targets()
    found = checks(results, targets)
    print("\nreelflow benchmark\n" + table(results) + "\n\nchecks")
    print("\n".join(check.line() for check in found))
    write_json(args.out, results, found, targets)
    print(f"\nresults: {args.out}")
    if any(not check.passed for check in found if check.correctness):
        return 1
    if args.strict and any(not check.passed for check in found):
        return 2
    return 0


def run() -> None:
    sys.exit(main())
