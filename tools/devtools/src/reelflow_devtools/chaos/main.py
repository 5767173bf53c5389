"""``make chaos``: start reelflow as killable processes, run the workload under chaos, judge.

1. its own RabbitMQ node, the embedded MongoDB, the simulator at Runware's
   fault rates, and the four services, each a process of its own;
2. for the window (``--duration``): projects created at a steady pace, forged
   webhooks, poison messages and reconnecting WebSocket watchers, while the
   monkey SIGKILLs a service, the broker or the database at random moments and
   starts it again;
3. then everything runs, and every clip must end within ``--converge-deadline``;
4. every clip is compared with the simulator's ground truth, the DLQs with the
   poison messages. Exit status 1 on any loss, double billing, stuck clip,
   forged result accepted, DLQ other than the poison, or a watcher that saw a
   gap or a clip go backwards.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import httpx

from reelflow_common.topology import Topology
from reelflow_devtools.chaos.monkey import MonkeyLog, supervise, unleash
from reelflow_devtools.chaos.plan import QUICK, ChaosPlan
from reelflow_devtools.chaos.report import figures, report
from reelflow_devtools.chaos.stack import WEBHOOK_SECRET, ChaosStack
from reelflow_devtools.chaos.truth import compare_dead_letters, judge, read_dead_letters
from reelflow_devtools.chaos.workload import Target, Workload
from reelflow_devtools.processes import StartError

RUN_DIR = Path(".run/chaos")
#: after convergence, how long the last successes' video copies may take
COPIES_DEADLINE_S = 120.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m reelflow_devtools.chaos", description=__doc__)
    add = parser.add_argument
    add("--quick", action="store_true", help="a small run (tens of clips, about a minute)")
    add("--clips", type=int, help=f"clips in all (default {ChaosPlan.clips})")
    add("--scenes", type=int, help=f"clips per project (default {ChaosPlan.scenes_per_project})")
    add("--duration", type=float, help=f"seconds of chaos (default {ChaosPlan.duration_s:g})")
    add("--seed", type=int, help=f"fixes every draw (default {ChaosPlan.seed})")
    add(
        "--speedup",
        type=float,
        help=f"simulated seconds per second (default {ChaosPlan.speedup:g})",
    )
    add("--converge-deadline", type=float, help="seconds after the window for every clip to end")
    add("--run-dir", type=Path, default=RUN_DIR, help="logs, the broker's and the database's data")
    add("--out", type=Path, help="results as JSON (default RUN_DIR/results.json)")
    return parser.parse_args(argv)


def plan_of(args: argparse.Namespace) -> ChaosPlan:
    plan = QUICK if args.quick else ChaosPlan()
    given = {
        "clips": args.clips,
        "scenes_per_project": args.scenes,
        "duration_s": args.duration,
        "seed": args.seed,
        "speedup": args.speedup,
        "converge_deadline_s": args.converge_deadline,
    }
    return dataclasses.replace(plan, **{k: v for k, v in given.items() if v is not None})


def say(line: str) -> None:
    print(f"chaos: {line}", flush=True)


def wait_converged(stack: ChaosStack, key: str, deadline_s: float, log: MonkeyLog) -> float | None:
    """Seconds until no project is generating, or None past the deadline (restarting the dead)."""
    began = time.monotonic()
    url = f"{stack.services.api_url}/v1/projects"
    while time.monotonic() - began < deadline_s:
        try:
            answer = httpx.get(
                url,
                params={"status": "generating", "limit": 1},
                headers={"Authorization": f"Bearer {key}"},
                timeout=10,
            )
            if answer.status_code == 200 and not answer.json()["items"]:
                return time.monotonic() - began
        except httpx.HTTPError:
            pass
        supervise(1.0, stack, log, began)
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = plan_of(args)
    run_dir: Path = args.run_dir
    shutil.rmtree(run_dir, ignore_errors=True)
    say(
        f"{plan.clips} clips in {plan.projects} projects over {plan.duration_s:g} s,"
        f" seed {plan.seed}, speedup {plan.speedup:g} (logs in {run_dir / 'logs'})"
    )
    stack = ChaosStack(plan, run_dir)
    began = time.monotonic()
    try:
        stack.start()
    except StartError as exc:
        print(f"chaos: could not start: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        up_s = time.monotonic() - began
        say(f"stack up in {up_s:.1f} s; RabbitMQ node {stack.rabbitmq.node_name}")
        results = run(stack, plan)
    except Exception:  # the harness failed: say where, and fail the run
        traceback.print_exc()
        print("chaos: FAILED: the harness itself stopped (above)", file=sys.stderr, flush=True)
        return 1
    finally:
        stack.stop()
    results["duration_s"] = round(time.monotonic() - began, 1)
    out = args.out or run_dir / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print("\n" + report(results) + f"\n\nresults: {out}", flush=True)
    return 0 if results["passed"] else 1


def run(stack: ChaosStack, plan: ChaosPlan) -> dict[str, Any]:
    services = stack.services
    key = asyncio.run(services.issue_key("chaos"))
    topology = Topology.from_settings(services.topology_settings())
    target = Target(
        api_url=services.api_url,
        ws_url=services.ws_url,
        sim_url=services.sim_url,
        amqp_url=stack.rabbitmq.url,
        topology=topology,
        webhook_secret=WEBHOOK_SECRET,
        key=key,
    )
    workload = Workload(target, plan, deadline_s=plan.duration_s + plan.converge_deadline_s)
    thread = workload.start()
    monkey = MonkeyLog()
    unleash(stack, plan, random.Random(f"{plan.seed}:monkey"), monkey)
    say("window over: everything runs again; waiting for every clip to end")
    window_over = time.monotonic()
    workload.log.creations_done.wait(timeout=plan.converge_deadline_s)
    left = plan.converge_deadline_s - (time.monotonic() - window_over)
    converged = wait_converged(stack, key, max(0.0, left), monkey)
    converge_s = None if converged is None else round(time.monotonic() - window_over, 1)
    say("did NOT converge" if converge_s is None else f"converged {converge_s} s after the window")
    thread.join(timeout=60)  # the watchers end with their projects
    tasks = asyncio.run(services.sim_tasks())
    verdict = asyncio.run(judge(target, workload.log, tasks))
    # Copies of the last videos may still be on their way: give them a while.
    copies_by = time.monotonic() + COPIES_DEADLINE_S
    while verdict.copies_missing and time.monotonic() < copies_by:
        supervise(3.0, stack, monkey, window_over)
        verdict = asyncio.run(judge(target, workload.log, tasks))
    compare_dead_letters(
        verdict, asyncio.run(read_dead_letters(target.amqp_url, topology)), workload.log.poison
    )
    sim_stats = asyncio.run(services.sim_get("/__sim/stats"))
    return figures(plan, verdict, workload.log, monkey, tasks, sim_stats, converge_s)


def run_cli() -> None:
    sys.exit(main())
