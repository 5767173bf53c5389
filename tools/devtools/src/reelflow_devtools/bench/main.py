"""``make bench``: reelflow side by side with its references, in one run.

Scenarios (``--scenario``, comma-separated; default ``all``):

- ``throughput``: about 500 clips as projects of 1, 10 and 50 scenes, a
  zero-latency provider; clips/s and database operations per clip (the server's
  own counters); each size run in ``--rounds`` rounds (default 6), reelflow's
  figures its median round's (``bench.rounds``);
- ``ceiling``: the same inserts, updates, reads and confirmed publishes done bare
  on the same database and broker, at the end of each round of a size, repeating
  reelflow's run of that round (implies ``throughput``);
- ``taskqueue``: the same clips through a straightforward task-queue implementation
  (``bench.task_queue``) on a stack of its own, same database kind, broker and
  simulator settings, up beside the fast stack: in each round its run of a size and
  reelflow's go back to back, who goes first alternating; ``throughput``'s "x task
  queue" is reelflow's clips/s over its, of the median pair of rounds (one of each
  order; alone, without ``throughput``: one run per size);
- ``polling``: a live run on the simulator's own latency distribution at
  ``--polling-speedup`` with production settings compressed by it, and the exact
  evaluation of the reference schedules on the same completion times;
- ``notifier``: 10,000 WebSockets from separate load processes, the notifier's
  memory, change -> the last of 1,000 watchers of one project; on a stack of its
  own in real time (simulator speedup 1, production settings), so the poller checks
  the hot project's clips as often per second as production would;
- ``api``: GET/POST latency under concurrent clients; ``overload``: a burst of POSTs;
- ``fairness``: one tenant floods clips while another sends a few at a time: the
  small tenant's submit delay, with fair share and without (two stacks of its own).

Every stack gets a ground-truth check (every clip against the simulator's tasks)
at its end. ``--quick`` shrinks every scenario (for the tests). Plots go next to
``results.json``, and each stack's logs in ``fast/logs``, ``taskqueue/logs``,
``notifier/logs`` and ``polling/logs`` beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reelflow_common.openfiles import raise_open_files
from reelflow_common.redact import url_location
from reelflow_devtools.bench import fairness
from reelflow_devtools.bench.api_load import ApiPlan, run_api_load
from reelflow_devtools.bench.ceiling import CeilingPlan
from reelflow_devtools.bench.client import BenchError
from reelflow_devtools.bench.ground_truth import check_ground_truth
from reelflow_devtools.bench.launcher import (
    REAL_TIME,
    BenchStack,
    StackConfig,
    broker_answers,
    running_stack,
)
from reelflow_devtools.bench.notifier import NotifierPlan, run_notifier
from reelflow_devtools.bench.overload import OverloadPlan, run_overload
from reelflow_devtools.bench.plots import write_plots
from reelflow_devtools.bench.polling import Setup, compare
from reelflow_devtools.bench.polling import results as polling_results
from reelflow_devtools.bench.polling_live import LivePlan, run_polling_live
from reelflow_devtools.bench.report import (
    Targets,
    checks,
    markdown,
    summary,
    write_json,
)
from reelflow_devtools.bench.rounds import Rounds, run_rounds, summarize
from reelflow_devtools.bench.task_queue_run import (
    TaskQueueStack,
    run_task_queue,
    running_task_queue,
)
from reelflow_devtools.bench.task_queue_run import check_ground_truth as check_task_queue_truth
from reelflow_devtools.bench.throughput import ThroughputPlan, run_size
from reelflow_devtools.processes import StartError
from reelflow_devtools.rabbitmq import ensure_rabbitmq

RUN_DIR = Path(".run/bench")
SCENARIOS = (
    "throughput",
    "ceiling",
    "taskqueue",
    "polling",
    "notifier",
    "api",
    "overload",
    "fairness",
)


@dataclass(frozen=True)
class Plans:
    throughput: ThroughputPlan = field(default_factory=ThroughputPlan)
    ceiling: CeilingPlan = field(default_factory=CeilingPlan)
    live: LivePlan = field(default_factory=LivePlan)
    exact: Setup = field(default_factory=Setup)
    notifier: NotifierPlan = field(default_factory=NotifierPlan)
    api: ApiPlan = field(default_factory=ApiPlan)
    overload: OverloadPlan = field(default_factory=OverloadPlan)
    fairness: fairness.FairnessPlan = field(default_factory=fairness.FairnessPlan)
    speedup: float = 100.0
    polling_speedup: float = 5.0
    #: the notifier's stack: real time. Its changes must come at production's pace
    #: next to a notifier that runs in real seconds: compressed, the poller checked
    #: the 40 hot clips 100 x as often per second as production would, and those
    #: checks (poller and RabbitMQ CPU) held the fan-out's tail.
    notifier_speedup: float = 1.0


#: every scenario small: the whole run in well under a minute on an idle machine
QUICK = Plans(
    throughput=ThroughputPlan(clips=50, rounds=2, warmup_clips=10, settle_s=0.5, deadline_s=60),
    live=LivePlan(clips=20, scenes=10, warmup_clips=10, settle_s=1, deadline_s=60),
    exact=Setup(clips=300),
    notifier=NotifierPlan(
        connections=120,
        hot_watchers=40,
        processes=2,
        idle_projects=2,
        hot_clips=4,
        first_finish_s=3,
        spacing_s=0.5,
        deadline_s=30,
    ),
    api=ApiPlan(get_requests=40, post_requests=20, serial_requests=5),
    overload=OverloadPlan(burst=100, health_probes=3),
    fairness=fairness.FairnessPlan(flood=100, small=3, rounds=2, pause_s=0),
    polling_speedup=100.0,
    notifier_speedup=100.0,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m reelflow_devtools.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--scenario", default="all", help=f"comma-separated: {', '.join(SCENARIOS)}, or all")
    add("--quick", action="store_true", help="every scenario small (for tests)")
    add("--clips", type=int, help="throughput: clips per project size (default 500)")
    add(
        "--rounds",
        type=_positive,
        help="throughput: runs of each size, read in pairs of rounds (default 6)",
    )
    add("--connections", type=int, help="notifier: WebSockets (default 10000)")
    add("--watchers", type=int, help="notifier: watchers of the one project (default 1000)")
    add(
        "--no-deflate",
        action="store_true",
        help="notifier: clients do not offer permessage-deflate (browsers do)",
    )
    add("--polling-clips", type=int, help="polling: clips of the live run (default 200)")
    add("--polling-speedup", type=float, help="polling: simulator speedup (default 5)")
    add("--log-level", default="WARNING", help="the services' log level")
    add("--amqp-url", default=os.environ.get("REELFLOW_AMQP_URL", StackConfig.amqp_url))
    add(
        "--mongo-url",
        default=os.environ.get("REELFLOW_MONGO_URL"),
        help="a real MongoDB (a fresh database is used and dropped); default: embedded SecantusDB",
    )
    add("--out", type=Path, default=RUN_DIR / "results.json")
    add("--strict", action="store_true", help="exit non-zero on a missed performance target too")
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def chosen_scenarios(text: str) -> list[str]:
    wanted = {name.strip() for name in text.split(",") if name.strip()}
    if "all" in wanted:
        return list(SCENARIOS)
    unknown = wanted - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"bench: unknown scenario(s) {sorted(unknown)}; known: {SCENARIOS}")
    if "ceiling" in wanted:
        wanted.add("throughput")
    return [name for name in SCENARIOS if name in wanted]


def plans_from(args: argparse.Namespace) -> Plans:
    plans = QUICK if args.quick else Plans()
    if args.clips:
        plans = replace(plans, throughput=replace(plans.throughput, clips=args.clips))
    if args.rounds:
        plans = replace(plans, throughput=replace(plans.throughput, rounds=args.rounds))
    if args.connections:
        plans = replace(plans, notifier=replace(plans.notifier, connections=args.connections))
    if args.watchers:
        plans = replace(plans, notifier=replace(plans.notifier, hot_watchers=args.watchers))
    if args.no_deflate:
        plans = replace(plans, notifier=replace(plans.notifier, deflate=False))
    if args.polling_clips:
        plans = replace(plans, live=replace(plans.live, clips=args.polling_clips))
    if args.polling_speedup:
        plans = replace(plans, polling_speedup=args.polling_speedup)
    return plans


class CpuMeter:
    """CPU seconds each process spent, and wall seconds, per scenario."""

    def __init__(self, stack: BenchStack, into: dict[str, dict[str, float]]) -> None:
        self._stack = stack
        self.phases = into
        self._mark()

    def _mark(self) -> None:
        self._cpu = self._stack.cpu_seconds() | {"bench": time.process_time()}
        self._wall = time.monotonic()

    def phase_done(self, phase: str) -> None:
        before, wall = self._cpu, self._wall
        self._mark()
        spent = {name: round(self._cpu[name] - before.get(name, 0.0), 2) for name in self._cpu}
        self.phases[phase] = {"wall_s": round(self._wall - wall, 2), **spent}


def fast_stack_scenarios(
    stack: BenchStack,
    scenarios: list[str],
    plans: Plans,
    cpu_s: dict[str, dict[str, float]],
    baseline: tuple[StackConfig, Path] | None,
) -> dict[str, Any]:
    """Everything on the fast stack (zero-latency clips, speedup ``plans.speedup``).

    ``baseline``: the configuration and directory of the task-queue baseline's
    stack, which is up beside this one for the throughput rounds only. The CPU
    phase ``throughput`` (this stack's processes) spans the rounds whole: the
    baseline's start, runs and stop, the ceilings and the baseline's ground truth too.
    """
    cpu = CpuMeter(stack, cpu_s)
    found: dict[str, Any] = {}
    rounds: Rounds | None = None
    if "throughput" in scenarios:
        beside = nullcontext(None) if baseline is None else _started_task_queue(*baseline)
        with beside as baseline_stack:
            throughput, rounds = asyncio.run(
                throughput_scenario(stack, scenarios, plans, baseline_stack)
            )
            found |= throughput
        cpu.phase_done("throughput")
    later = asyncio.run(later_scenarios(stack, scenarios, plans, cpu, rounds))
    truth = found.pop("ground_truth", {}) | later.pop("ground_truth", {})
    return found | later | ({"ground_truth": truth} if truth else {})


async def throughput_scenario(
    stack: BenchStack, scenarios: list[str], plans: Plans, baseline: TaskQueueStack | None
) -> tuple[dict[str, Any], Rounds]:
    """The throughput rounds (with the baseline's runs and the ceilings), summarized by size."""
    plan = plans.throughput
    pairs = "" if baseline is None else ", each run of reelflow's beside one of the baseline's"
    _say(f"throughput: ~{plan.clips} clips per size {plan.sizes}, {plan.rounds} rounds{pairs}")
    ceiling = plans.ceiling if "ceiling" in scenarios else None
    rounds = await run_rounds(stack, plan, baseline=baseline, ceiling=ceiling, say=_say)
    found: dict[str, Any] = {"throughput_warmup": rounds.warmup.results, "throughput": []}
    baselines: list[dict[str, Any]] = []
    for size_rounds in rounds.sizes:
        results, baseline_results = summarize(size_rounds)
        found["throughput"].append(results)
        if baseline_results is not None:
            baselines.append(baseline_results)
    if baseline is not None:
        found["task_queue"] = baselines
        _say("ground truth of the task-queue baseline: every clip against its simulator's tasks")
        found["ground_truth"] = {"taskqueue": await check_task_queue_truth(baseline)}
    return found, rounds


async def later_scenarios(
    stack: BenchStack, scenarios: list[str], plans: Plans, cpu: CpuMeter, rounds: Rounds | None
) -> dict[str, Any]:
    """The fast stack's scenarios after throughput, then its ground truth (throughput's too)."""
    found: dict[str, Any] = {}
    keys: list[str] = rounds.keys if rounds is not None else []
    get_run = rounds.run_of(10) if rounds is not None else None
    if "api" in scenarios:
        if get_run is None:
            get_run = await run_size(stack, replace(plans.throughput, clips=100), 10)
            keys.append(get_run.key)
        _say("API latency: GET then POST")
        api_key, _ids, found["api"] = await run_api_load(
            stack, plans.api, get_key=get_run.key, get_ids=get_run.project_ids
        )
        keys.append(api_key)
        cpu.phase_done("api")
    if "overload" in scenarios:
        _say(f"overload: {plans.overload.burst} POSTs at once")
        overload_keys, found["overload"] = await run_overload(stack, plans.overload)
        keys += overload_keys
        cpu.phase_done("overload")
    if keys:
        _say("ground truth: every clip against the simulator's tasks")
        truth = await check_ground_truth(stack, keys, deadline_s=300)
        found["ground_truth"] = {"fast": truth}
        cpu.phase_done("ground_truth")
    return found


async def polling_scenario(
    stack: BenchStack, plans: Plans, cpu_s: dict[str, dict[str, float]]
) -> dict[str, Any]:
    """The live poller on the simulator's latencies, then the exact rows on the same ones."""
    cpu = CpuMeter(stack, cpu_s)
    _say(f"polling: {plans.live.clips} clips, speedup {plans.polling_speedup:g}")
    live = await run_polling_live(stack, plans.live, plans.polling_speedup)
    cpu.phase_done("polling_live")
    truth = await check_ground_truth(stack, [live.key], deadline_s=60)
    rows = compare(plans.exact, live.latencies_s)
    exact = polling_results(plans.exact, rows)
    exact["test_latencies"] = "the live run's own"
    return {
        "polling": {"live": live.results, "exact": exact, "model": plans.exact.model},
        "ground_truth": {"polling": truth},
    }


async def notifier_scenario(
    stack: BenchStack, plans: Plans, cpu_s: dict[str, dict[str, float]]
) -> dict[str, Any]:
    """The WebSockets on the notifier's own stack, then that stack's ground truth."""
    cpu = CpuMeter(stack, cpu_s)
    plan = plans.notifier
    _say(
        f"notifier: {plan.connections} WebSockets, {plan.hot_watchers} on one project,"
        f" speedup {plans.notifier_speedup:g}"
    )
    key, found = await run_notifier(stack, plan, plans.notifier_speedup)
    cpu.phase_done("notifier")
    truth = await check_ground_truth(stack, [key], deadline_s=300)
    return {"notifier": found, "ground_truth": {"notifier": truth}}


def _say(line: str) -> None:
    print(f"bench: {line}", flush=True)


def _run_stack(
    config: StackConfig,
    run_dir: Path,
    body: Callable[[BenchStack], dict[str, Any]],
    results: dict[str, Any],
    name: str,
) -> None:
    began = time.monotonic()
    with running_stack(config, run_dir) as stack:
        _say(f"{name} stack up in {time.monotonic() - began:.1f} s (logs in {run_dir / 'logs'})")
        found = body(stack)
        truth = results.get("ground_truth", {}) | found.pop("ground_truth", {})
        results |= found | ({"ground_truth": truth} if truth else {})
        results.setdefault("memory_kib", {})[name] = stack.memory_kib()
        results.setdefault("dead_processes", []).extend(
            f"{name}:{child}" for child in stack.dead_children()
        )


@contextmanager
def _started_task_queue(config: StackConfig, run_dir: Path) -> Iterator[TaskQueueStack]:
    """The task-queue baseline's stack, said when it is up; stopped on exit."""
    began = time.monotonic()
    with running_task_queue(config, run_dir) as stack:
        _say(
            f"task-queue baseline up in {time.monotonic() - began:.1f} s"
            f" (logs in {run_dir / 'logs'})"
        )
        yield stack


def _run_task_queue(
    config: StackConfig, run_dir: Path, plans: Plans
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The baseline alone (``--scenario taskqueue`` without ``throughput``): one run per size."""
    with _started_task_queue(config, run_dir) as stack:
        _say(f"task queue: ~{plans.throughput.clips} clips per size {plans.throughput.sizes}")
        return asyncio.run(run_task_queue(stack, plans.throughput))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scenarios = chosen_scenarios(args.scenario)
    plans = plans_from(args)
    base = StackConfig(amqp_url=args.amqp_url, log_level=args.log_level, mongo_url=args.mongo_url)
    try:
        ensure_rabbitmq(base.amqp_url)  # the machine's broker: started if stopped, and guarded
    except StartError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    problem = asyncio.run(broker_answers(base.amqp_url))
    if problem is not None:
        broker = url_location(base.amqp_url)
        print(f"bench: RabbitMQ does not answer at {broker}: {problem}", file=sys.stderr)
        return 1
    open_files = raise_open_files()  # the notifier inherits it: one socket per watcher
    began = time.monotonic()
    fast = replace(base, sim_speedup=plans.speedup, keep=REAL_TIME)
    # Everything compressed: the live poller sees the provider's clock, scaled.
    slow = replace(base, sim_speedup=plans.polling_speedup, keep=frozenset())
    realtime = replace(
        base,
        sim_speedup=plans.notifier_speedup,
        keep=frozenset(),
        extra=(*base.extra, *plans.notifier.settings()),
    )
    results: dict[str, Any] = {
        "config": {
            "command": " ".join(
                ["python -m reelflow_devtools.bench", *(sys.argv[1:] if argv is None else argv)]
            ),
            "scenarios": scenarios,
            "quick": args.quick,
            "cpus": os.cpu_count(),
            "load_before": [round(load, 2) for load in os.getloadavg()],
            "open_files_limit": open_files,
            "sim_speedup": plans.speedup,
            "polling_speedup": plans.polling_speedup,
            "notifier_speedup": plans.notifier_speedup,
            "settings_fast_stack": fast.seconds(),
            "settings_polling_stack": slow.seconds(),
            "settings_notifier_stack": realtime.seconds(),
            "log_level": args.log_level,
            "mongo": "given MongoDB" if args.mongo_url else "embedded SecantusDB",
        },
        "cpu_s": {},
    }
    cpu_s: dict[str, dict[str, float]] = results["cpu_s"]
    try:
        baseline_dir = args.out.parent / "taskqueue"
        if "taskqueue" in scenarios and "throughput" not in scenarios:
            runs, truth = _run_task_queue(fast, baseline_dir, plans)
            results["task_queue"] = runs
            results["ground_truth"] = {"taskqueue": truth}
        if set(scenarios) - {"notifier", "polling", "fairness", "taskqueue"}:
            # With throughput, the baseline runs in its rounds (bench.rounds).
            paired = {"taskqueue", "throughput"} <= set(scenarios)
            baseline = (fast, baseline_dir) if paired else None
            _run_stack(
                fast,
                args.out.parent / "fast",
                lambda stack: fast_stack_scenarios(stack, scenarios, plans, cpu_s, baseline),
                results,
                "fast",
            )
        if "notifier" in scenarios:
            _run_stack(
                realtime,
                args.out.parent / "notifier",
                lambda stack: asyncio.run(notifier_scenario(stack, plans, cpu_s)),
                results,
                "notifier",
            )
        if "polling" in scenarios:
            _run_stack(
                slow,
                args.out.parent / "polling",
                lambda stack: asyncio.run(polling_scenario(stack, plans, cpu_s)),
                results,
                "polling",
            )
        if "fairness" in scenarios:
            _say("fairness: a flooding tenant and a small one, with and without fair share")
            results["fairness"] = fairness.measure(
                plans.fairness, args.out.parent / "fairness", base
            )
    except (BenchError, StartError, TimeoutError) as exc:
        print(f"bench: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    results["duration_s"] = round(time.monotonic() - began, 1)
    results["config"]["load_after"] = [round(load, 2) for load in os.getloadavg()]
    targets = Targets()
    found = checks(results, targets)
    shown = summary(results)
    if "fairness" in results:
        shown += "\n\nfair share\n" + fairness.table(results["fairness"])
    print("\nreelflow benchmark\n" + shown + "\n\nchecks")
    print("\n".join(check.line() for check in found))
    write_json(args.out, results, found, targets)
    report = markdown(results, found)
    if "fairness" in results:
        report += "\n\n## Fair share\n\n" + fairness.table(results["fairness"]) + "\n"
    args.out.with_name("results.md").write_text(report)
    plots = write_plots(results, args.out.parent)
    print(f"\nresults: {args.out}; plots: {', '.join(str(p) for p in plots)}")
    if any(not check.passed for check in found if check.correctness):
        return 1
    if args.strict and any(not check.passed for check in found):
        return 2
    return 0


def run() -> None:
    sys.exit(main())
