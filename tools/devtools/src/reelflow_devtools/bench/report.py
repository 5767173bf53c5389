"""Targets as PASS/FAIL checks, the printed table, the JSON file. No network I/O."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Targets:
    #: at ``--api-concurrency`` clients (20): latency with a queue in front
    post_p95_ms: float = 100
    get_p95_ms: float = 100
    #: one request at a time: the service's own latency
    serial_post_p95_ms: float = 100
    serial_get_p95_ms: float = 50
    fanout_p95_ms: float = 250
    rss_mb: float = 200
    #: the poll lag may exceed the longest rung of the poll ladder by this much
    poll_lag_slack_ms: float = 250
    clips_per_s: float = 10
    #: the slowest answer to a burst of ``--burst`` concurrent POSTs (202 or 503)
    overload_max_ms: float = 5000


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: str
    target: str
    correctness: bool  # a failed correctness check makes the run exit non-zero

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        kind = "correctness" if self.correctness else "performance"
        return f"  {verdict}  {self.name:<44} {self.value:>14}   target {self.target}  ({kind})"


def _ms(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def checks(results: dict[str, Any], targets: Targets) -> list[Check]:
    found: list[Check] = []

    def correct(name: str, value: int, expected: int = 0) -> None:
        found.append(Check(name, value == expected, str(value), f"= {expected}", True))

    def at_most(name: str, value: float, limit: float, unit: str) -> None:
        ok = not math.isnan(value) and value < limit
        found.append(Check(name, ok, f"{value:.1f} {unit}", f"< {limit:g} {unit}", False))

    truth = results["ground_truth"]
    correct("clips lost (not success, or never accepted)", truth["lost"])
    correct("clips billed twice (extra billed tasks)", truth["billed_twice"])
    correct("simulator tasks with no clip", truth["extra_tasks"])
    correct("projects not terminal", truth["projects_not_terminal"])
    correct("dead-lettered messages", truth["dead_letters"])
    throughput = results["throughput"]
    correct("clip cost differs from the simulator's", throughput["cost_mismatches"])
    correct("throughput clips completed", throughput["clips_completed"], throughput["clips"])
    fanout = results["fanout"]
    correct("WebSocket deliveries missing", fanout["missing_deliveries"])
    correct("watchers that saw project.finished", fanout["watchers_finished"], fanout["watchers"])
    api = results["api"]
    for kind in ("create_project", "get_project", "create_project_serial", "get_project_serial"):
        correct(f"{kind} requests that failed", sum(api[kind]["errors"].values()))
    overload = results["overload"]
    correct("burst answers neither 202 nor 503", overload["unexpected"])
    correct(
        "burst 503s without problem+json or Retry-After",
        overload["refused_without_problem_or_retry_after"],
    )
    correct("service processes that died", len(results["dead_processes"]))

    clips_per_s = throughput["clips_per_s"] or 0.0
    found.append(
        Check(
            "throughput",
            clips_per_s >= targets.clips_per_s,
            f"{clips_per_s:.1f} clips/s",
            f">= {targets.clips_per_s:g} clips/s",
            False,
        )
    )
    ladder = results["config"]["poll_ladder_ms"]
    at_most(
        "poll lag p95, idle (sim finish -> stored)",
        _ms(fanout["poll_lag_idle"].get("p95_ms")),
        max(ladder) + targets.poll_lag_slack_ms,
        "ms",
    )
    for kind, label, limit in (
        ("create_project_serial", "POST /v1/projects p95, c=1", targets.serial_post_p95_ms),
        ("get_project_serial", "GET /v1/projects/{id} p95, c=1", targets.serial_get_p95_ms),
        ("create_project", "POST /v1/projects p95, c=", targets.post_p95_ms),
        ("get_project", "GET /v1/projects/{id} p95, c=", targets.get_p95_ms),
    ):
        stats = api[kind]
        if label.endswith("="):
            label += str(stats["concurrency"])
        at_most(label, _ms(stats.get("p95_ms")), limit, "ms")
    at_most(
        f"slowest answer to {overload['burst']} POSTs at once",
        _ms(overload["all"].get("max_ms")),
        targets.overload_max_ms,
        "ms",
    )
    at_most(
        f"fan-out p95, change -> all {fanout['watchers']} watchers",
        _ms(fanout["change_to_all_watchers"].get("p95_ms")),
        targets.fanout_p95_ms,
        "ms",
    )
    for name, memory in results["memory_kib"].items():
        if name not in ("runware-sim", "mongo"):
            at_most(f"RSS of {name}", memory["VmRSS"] / 1024, targets.rss_mb, "MB")
    return found


def _pcts(summary: dict[str, Any]) -> str:
    if not summary.get("count"):
        return "no samples"
    return (
        f"p50 {summary['p50_ms']:.1f}  p95 {summary['p95_ms']:.1f}  "
        f"p99 {summary['p99_ms']:.1f}  max {summary['max_ms']:.1f} ms  (n={summary['count']})"
    )


def table(results: dict[str, Any]) -> str:
    config, throughput, fanout, api = (
        results[name] for name in ("config", "throughput", "fanout", "api")
    )
    truth = results["ground_truth"]
    rows = [
        ("machine", f"{config['cpus']} CPUs, load before run {config['load_before']}"),
        (
            "stack",
            f"sim speedup {config['sim_speedup']:g}, webhooks {config['webhooks']}, "
            f"poll ladder {config['poll_ladder_ms']} ms, log level {config['log_level']}",
        ),
        (
            "throughput",
            f"{throughput['projects']} x {throughput['clips_per_project']} = "
            f"{throughput['clips']} clips in {throughput['wall_s']:.2f} s -> "
            f"{throughput['clips_per_s']} clips/s (POSTs took {throughput['posts_s']:.2f} s)",
        ),
        ("  submit delay", _pcts(throughput["submit_delay"])),
        ("  poll lag", _pcts(throughput["poll_lag"])),
        ("poll lag, idle", _pcts(fanout["poll_lag_idle"])),
        (
            "ground truth",
            f"{truth['clips']} clips, {truth['sim_tasks']} sim tasks, lost {truth['lost']}, "
            f"billed twice {truth['billed_twice']}, resubmits {truth['resubmissions']}, "
            f"polls {truth['polls']}, DLQ {truth['dead_letters']}",
        ),
    ]
    for kind, label in (
        ("get_project_serial", "GET /v1/projects/{id}"),
        ("get_project", "GET /v1/projects/{id}"),
        ("create_project_serial", "POST /v1/projects"),
        ("create_project", "POST /v1/projects"),
    ):
        stats = api[kind]
        rows.append(
            (
                f"{label} c={stats['concurrency']}",
                f"{_pcts(stats)}, {stats['requests_per_s']} req/s",
            )
        )
    overload = results["overload"]
    rows += [
        (
            f"burst of {overload['burst']} POSTs",
            f"answered in {overload['wall_s']:.2f} s: {overload['statuses']}",
        ),
        ("  202", _pcts(overload["accepted"])),
        ("  503", _pcts(overload["refused"])),
        ("  /healthz meanwhile", _pcts(overload["healthz"])),
        (
            "fan-out",
            f"{fanout['watchers']} watchers connected in {fanout['connect_all_s']:.2f} s, "
            f"{fanout['changes_measured']} changes measured",
        ),
        ("  change -> all", _pcts(fanout["change_to_all_watchers"])),
        ("  change -> each", _pcts(fanout["change_to_each_watcher"])),
        ("  first -> last", _pcts(fanout["first_to_last_watcher"])),
    ]
    for name, memory in results["memory_kib"].items():
        rows.append(
            (
                f"RSS {name}",
                f"{memory['VmRSS'] / 1024:.0f} MB (peak {memory['VmHWM'] / 1024:.0f} MB)",
            )
        )
    for phase, spent in results["cpu_s"].items():
        busy = ", ".join(
            f"{name} {seconds:.1f}" for name, seconds in spent.items() if name != "wall_s"
        )
        rows.append((f"CPU s {phase}", f"{busy} (wall {spent['wall_s']:.1f})"))
    rows.append(("duration", f"{results['duration_s']:.0f} s"))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)


def write_json(path: Path, results: dict[str, Any], found: list[Check], targets: Targets) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = results | {
        "targets": asdict(targets),
        "checks": [asdict(check) for check in found],
    }
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
