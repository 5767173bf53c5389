"""Targets as met/missed checks, the printed summary, the JSON file. No network I/O.

Each check belongs to the scenario that measured it; a scenario not run has none.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reelflow_devtools.bench.rounds import median_of_pairs


@dataclass(frozen=True)
class Targets:
    """Issue 8's targets, and the API's own."""

    db_ops_per_clip: float = 5
    #: reelflow's throughput as a share of the raw ceiling's
    ceiling_fraction: float = 0.5
    #: reelflow's throughput as a multiple of the task-queue baseline's, same rounds
    task_queue_multiple: float = 2
    #: the learned schedule against the SDK's, on the same latencies
    p95_over_sdk_s: float = 2
    calls_share_of_sdk: float = 1 / 3
    batched_requests_share_of_sdk: float = 1 / 20
    webhook_p99_s: float = 1
    webhook_requests_per_clip: float = 1.5
    #: 1 GB = 10^9 bytes (about 954 MiB): the stricter reading of "1 GB"
    notifier_rss_mb: float = 1000
    notifier_p99_ms: float = 200
    #: the API at ``--api-concurrency`` clients, and one request at a time
    post_p95_ms: float = 100
    get_p95_ms: float = 100
    serial_post_p95_ms: float = 100
    serial_get_p95_ms: float = 50
    overload_max_ms: float = 5000


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: str
    target: str
    correctness: bool  # a failed correctness check makes the run exit non-zero

    def line(self) -> str:
        verdict = ("ok  " if self.correctness else "met ") if self.passed else "FAIL"
        if not self.passed and not self.correctness:
            verdict = "MISS"
        kind = "correctness" if self.correctness else "target"
        return f"  {verdict}  {self.name:<58} {self.value:>16}   {self.target}  ({kind})"


class _Found(list[Check]):
    def correct(self, name: str, value: int, expected: int = 0) -> None:
        self.append(Check(name, value == expected, str(value), f"= {expected}", True))

    def target(
        self, name: str, value: float, limit: float, unit: str, *, at_least: bool, of: str = ""
    ) -> None:
        """``of``: what the value was measured against, shown beside the target."""
        ok = not math.isnan(value) and (value >= limit if at_least else value <= limit)
        sign = ">=" if at_least else "<="
        wanted = f"{sign} {limit:.4g} {unit}" + (f" ({of})" if of else "")
        self.append(Check(name, ok, f"{value:.2f} {unit}", wanted, False))


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _load_gc(passes: dict[str, Any] | None) -> str:
    """The load processes' collector passes while the changes flowed (``-``: not recorded)."""
    if passes is None:
        return "-"
    return (
        f"{passes['passes']} in all, the longest {passes['longest_ms']} ms"
        f" ({passes['longest_cpu_ms']} ms of CPU; their sockets frozen)"
    )


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def checks(results: dict[str, Any], targets: Targets) -> list[Check]:
    found = _Found()
    for scenario, check in _CHECKS.items():
        if results.get(scenario):
            check(results[scenario], targets, found)
    if "dead_processes" in results:
        found.correct("service processes that died", len(results["dead_processes"]))
    return found


def _throughput(runs: list[dict[str, Any]], targets: Targets, found: _Found) -> None:
    for run in runs:
        size = run["scenes_per_project"]
        found.correct(
            f"{size}-scene projects: clips not succeeded",
            run.get("clips_not_succeeded_all_rounds", run["clips"] - run["clips_succeeded"]),
        )
        found.target(
            f"{size}-scene projects: DB operations per clip",
            max(
                (line["db_ops_per_clip"] for line in run.get("rounds", [])),
                default=run["db_ops_per_clip"],
            ),
            targets.db_ops_per_clip,
            "ops",
            at_least=False,
        )
        if run.get("ceiling"):
            found.target(
                f"{size}-scene projects: share of the raw ceiling",
                _num(run["ceiling_fraction"]),
                targets.ceiling_fraction,
                "x",
                at_least=True,
            )
        if run.get("task_queue_multiple") is not None:
            found.target(
                f"{size}-scene projects: x task queue",
                _num(run["task_queue_multiple"]),
                targets.task_queue_multiple,
                "x",
                at_least=True,
                of=f"task queue {run['task_queue_clips_per_s']} clips/s"
                + (f", {_tag(run['task_queue_rounds'])}" if len(run.get("rounds", [])) > 1 else ""),
            )
    by_size = {run["scenes_per_project"]: run for run in runs}
    if 1 in by_size and 50 in by_size:
        found.target(
            "throughput at 50 scenes / at 1 scene",
            _fifty_over_one(by_size[1], by_size[50]),
            1.0,
            "x",
            at_least=True,
        )


def _fifty_over_one(one: dict[str, Any], fifty: dict[str, Any]) -> float:
    """50-scene clips/s over 1-scene clips/s: of the median pair of the rounds both sizes ran
    (:func:`~reelflow_devtools.bench.rounds.median_of_pairs`), else of their figures."""
    ones = {line["round"]: line["clips_per_s"] for line in one.get("rounds", [])}
    fifties = {line["round"]: line["clips_per_s"] for line in fifty.get("rounds", [])}
    numbers = sorted(ones.keys() & fifties.keys())
    paired = median_of_pairs([_ratio(fifties[number], ones[number]) for number in numbers], numbers)
    if paired is None:
        return _num(fifty["clips_per_s"]) / _num(one["clips_per_s"])
    return paired[0]


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator and denominator else None


def _tag(rounds: int | list[int]) -> str:
    """The round (r3) or the pair of rounds (r3+r4) a figure is from."""
    numbers = rounds if isinstance(rounds, list) else [rounds]
    return "+".join(f"r{number}" for number in numbers)


def _task_queue(runs: list[dict[str, Any]], _targets: Targets, found: _Found) -> None:
    for run in runs:
        name = f"task-queue baseline, {run['scenes_per_project']}-scene projects"
        found.correct(
            f"{name}: clips not succeeded",
            run.get("clips_not_succeeded_all_rounds", run["clips"] - run["clips_succeeded"]),
        )
        found.correct(
            f"{name}: provider tasks beyond one per clip",
            run.get(
                "provider_tasks_beyond_one_all_rounds", abs(run["provider_tasks"] - run["clips"])
            ),
        )


def _polling(polling: dict[str, Any], targets: Targets, found: _Found) -> None:
    rows = polling["exact"]["rows"]
    sdk = rows[0]
    live = polling.get("live")
    if live:
        found.target(
            f"live poller p95 delay (SDK {sdk['p95_delay_s']:.1f} s + 2 s)",
            live["p95_delay_s"],
            sdk["p95_delay_s"] + targets.p95_over_sdk_s,
            "s",
            at_least=False,
        )
        found.target(
            f"live poller calls/clip (SDK {sdk['calls_per_clip']:.2f} / 3)",
            live["calls_per_clip"],
            sdk["calls_per_clip"] * targets.calls_share_of_sdk,
            "calls",
            at_least=False,
        )
    for row in rows:
        if row["group"] == "batching":
            found.target(
                f"batching ({row['progress']}): HTTP requests/clip (SDK / 20)",
                row["requests_per_clip"],
                sdk["requests_per_clip"] * targets.batched_requests_share_of_sdk,
                "req",
                at_least=False,
            )
        if row["group"] == "webhooks" and "lost" not in row["schedule"]:
            found.target(
                "webhooks: p99 detection delay",
                row["p99_delay_s"],
                targets.webhook_p99_s,
                "s",
                at_least=False,
            )
            found.target(
                "webhooks: provider requests/clip",
                row["requests_per_clip"],
                targets.webhook_requests_per_clip,
                "req",
                at_least=False,
            )


def _notifier(notifier: dict[str, Any], targets: Targets, found: _Found) -> None:
    found.correct(
        "WebSockets that failed to connect",
        notifier["idle_connected"]["failed"] + notifier["hot_connected"]["failed"],
    )
    found.correct("WebSocket deliveries missing", notifier["missing_deliveries"])
    found.correct(
        "WebSocket events out of seq order (gaps, duplicates)",
        notifier.get("sequence_gaps", 0) + notifier.get("duplicates", 0),
    )
    found.correct(
        "watchers that saw project.finished",
        notifier["watchers_finished"],
        notifier["hot_watchers"],
    )
    found.target(
        f"notifier peak RSS with {notifier['connections']} WebSockets",
        notifier["notifier_peak_rss_mib"] * 2**20 / 1e6,
        targets.notifier_rss_mb,
        "MB",
        at_least=False,
    )
    found.target(
        f"change -> last of {notifier['hot_watchers']} watchers p99",
        _num(notifier["change_to_last_watcher"].get("p99_ms")),
        targets.notifier_p99_ms,
        "ms",
        at_least=False,
    )


def _api(api: dict[str, Any], targets: Targets, found: _Found) -> None:
    for kind, label, limit in (
        ("create_project_serial", "POST /v1/projects p95, c=1", targets.serial_post_p95_ms),
        ("get_project_serial", "GET /v1/projects/{id} p95, c=1", targets.serial_get_p95_ms),
        ("create_project", "POST /v1/projects p95, c=", targets.post_p95_ms),
        ("get_project", "GET /v1/projects/{id} p95, c=", targets.get_p95_ms),
    ):
        stats = api[kind]
        found.correct(f"{kind} requests that failed", sum(stats["errors"].values()))
        name = label + (str(stats["concurrency"]) if label.endswith("=") else "")
        found.target(name, _num(stats.get("p95_ms")), limit, "ms", at_least=False)


def _overload(overload: dict[str, Any], targets: Targets, found: _Found) -> None:
    found.correct("burst answers neither 202 nor 503", overload["unexpected"])
    found.correct(
        "burst 503s without problem+json or Retry-After",
        overload["refused_without_problem_or_retry_after"],
    )
    found.target(
        f"slowest answer of {overload['burst']} POSTs at once",
        _num(overload["all"].get("max_ms")),
        targets.overload_max_ms,
        "ms",
        at_least=False,
    )


def _ground_truth(by_stack: dict[str, Any], _targets: Targets, found: _Found) -> None:
    for stack, truth in by_stack.items():
        found.correct(f"{stack} stack: clips lost (not success, or never accepted)", truth["lost"])
        found.correct(f"{stack} stack: clips billed twice", truth["billed_twice"])
        found.correct(f"{stack} stack: simulator tasks with no clip", truth["extra_tasks"])
        found.correct(f"{stack} stack: projects not terminal", truth["projects_not_terminal"])
        if truth["dead_letters"] is not None:  # the task-queue baseline has no DLQ
            found.correct(f"{stack} stack: dead-lettered messages", truth["dead_letters"])
        if "wrong_result" in truth:
            found.correct(
                f"{stack} stack: clips whose video URL or cost is not the simulator's",
                truth["wrong_result"],
            )
            found.correct(
                f"{stack} stack: tasks submitted more than once", truth["submitted_more_than_once"]
            )


_CHECKS: dict[str, Callable[[Any, Targets, _Found], None]] = {
    "throughput": _throughput,
    "task_queue": _task_queue,
    "polling": _polling,
    "notifier": _notifier,
    "api": _api,
    "overload": _overload,
    "ground_truth": _ground_truth,
}


def _load_processes(notifier: dict[str, Any]) -> str:
    """``4 load processes``, and how they yielded the CPU, e.g. ``(nice 10, SCHED_BATCH)``.

    Nothing on how for results from before they yielded (or where the platform let
    them do neither).
    """
    text = f"{notifier['load_processes']} load processes"
    priority = notifier.get("load_priority")
    if priority is None:
        return text
    if not isinstance(priority, dict):  # a list: the processes differed
        return f"{text} (priorities differ)"
    how = [f"nice {priority['nice']}"] if priority.get("nice") is not None else []
    how += [priority["policy"]] if priority.get("policy") else []
    return f"{text} ({', '.join(how)})" if how else text


def _pcts(summary: dict[str, Any]) -> str:
    if not summary.get("count"):
        return "no samples"
    return (
        f"p50 {summary['p50_ms']:.1f}  p95 {summary['p95_ms']:.1f}  "
        f"p99 {summary['p99_ms']:.1f}  max {summary['max_ms']:.1f} ms  (n={summary['count']})"
    )


def summary(results: dict[str, Any]) -> str:
    """What was measured, a line or a few per scenario."""
    config = results["config"]
    rows: list[tuple[str, str]] = [
        ("machine", f"{config['cpus']} CPUs, load before the run {config['load_before']}"),
        ("database", config["mongo"]),
    ]
    for run in results.get("throughput", []):
        line = (
            f"{run['projects']} x {run['scenes_per_project']} = {run['clips']} clips in "
            f"{run['wall_s']:.1f} s -> {run['clips_per_s']} clips/s, "
            f"{run['db_ops_per_clip']} DB ops/clip, {run['publishes_per_clip']} publishes/clip, "
            f"{run.get('provider_requests_per_clip', '-')} provider requests/clip"
        )
        if run.get("ceiling"):
            line += (
                f"; ceiling {run['ceiling']['clips_per_s']} clips/s (x{run['ceiling_fraction']})"
            )
        if run.get("task_queue_multiple") is not None:
            line += f"; x{run['task_queue_multiple']} the task queue"
        line += f"; CPU ms/clip {_cpu_ms(run)}, broker {_broker_cpu_ms(run)}"
        if len(run.get("rounds", [])) > 1:
            line += f"\n    {_rounds_text(run['rounds'])}"
        rows.append((f"throughput {run['scenes_per_project']}-scene", line))
    for run in results.get("task_queue", []):
        line = (
            f"{run['projects']} x {run['scenes_per_project']} = {run['clips']} clips in "
            f"{run['wall_s']:.1f} s -> {run['clips_per_s']} clips/s, "
            f"{run['db_ops_per_clip']} DB ops/clip, {run['provider_requests_per_clip']}"
            f" provider requests/clip"
        )
        if run.get("ceiling"):
            line += (
                f"; its own ceiling {run['ceiling']['clips_per_s']} clips/s"
                f" (x{run['ceiling_fraction']})"
            )
        line += f"; CPU ms/clip {_cpu_ms(run)}, broker {_broker_cpu_ms(run)}"
        rows.append((f"task queue {run['scenes_per_project']}-scene", line))
    polling = results.get("polling")
    if polling:
        live = polling.get("live")
        if live:
            rows.append(
                (
                    "polling live",
                    f"{live['clips']} clips at speedup {live['speedup']:g}: "
                    f"{live['calls_per_clip']} calls/clip, delay p50 {live['p50_delay_s']} "
                    f"p95 {live['p95_delay_s']} max {live['max_delay_s']} s (simulated)",
                )
            )
            seen, lag = live.get("seen"), live.get("recording_lag")
            if seen and lag:
                rows.append(
                    (
                        "  of which",
                        f"finished -> seen by getResponse p50 {seen['p50_s']} p95 {seen['p95_s']}"
                        f" s (simulated); seen -> stored p50 {lag['p50_s']} p95 {lag['p95_s']}"
                        f" max {lag['max_s']} s real (x{live['speedup']:g} in the delay)",
                    )
                )
            first = live.get("first_check")
            if first:
                rows.append(("  first check", _first_check_text(first)))
            warmup = live.get("warmup")
            if warmup:
                rows.append(
                    (
                        "  its warm-up",
                        f"{warmup['clips']} clips: {warmup['calls_per_clip']} calls/clip, delay"
                        f" p50 {warmup['p50_delay_s']} p95 {warmup['p95_delay_s']} s",
                    )
                )
        for row in polling["exact"]["rows"]:
            progress = "" if row["progress"] == "-" else f" [{row['progress']}]"
            rows.append(
                (
                    "  exact",
                    f"{row['schedule']}{progress}: {row['calls_per_clip']:.2f} calls, "
                    f"{row['requests_per_clip']:.2f} req/clip, p50 {row['p50_delay_s']:.1f} "
                    f"p95 {row['p95_delay_s']:.1f} p99 {row['p99_delay_s']:.1f} s",
                )
            )
    notifier = results.get("notifier")
    if notifier:
        rows += [
            (
                "notifier",
                f"{notifier['idle_connected']['ok'] + notifier['hot_connected']['ok']} WebSockets "
                f"from {_load_processes(notifier)}; notifier RSS "
                f"{notifier['notifier_rss_mib_connected']} MiB (peak "
                f"{notifier['notifier_peak_rss_mib']} MiB)",
            ),
            (
                f"  change -> last of {notifier['hot_watchers']}",
                _pcts(notifier["change_to_last_watcher"]),
            ),
            ("    change -> out of broker", _pcts(notifier.get("change_to_broker", {}))),
            ("    out of broker -> last", _pcts(notifier.get("broker_to_last_watcher", {}))),
            (
                "  CPU per change",
                ", ".join(
                    f"{name} {ms} ms" for name, ms in notifier.get("cpu_ms_per_change", {}).items()
                ),
            ),
            (
                "  notifier GC passes",
                ", ".join(
                    f"gen{generation} {gc['passes']} ({gc['seconds']} s, {gc['over_50ms']} > 50 ms)"
                    for generation, gc in notifier.get("notifier_gc_passes", {}).items()
                ),
            ),
            (
                "  load GC passes",
                _load_gc(notifier.get("load_gc_passes")),
            ),
            (
                "  quiet again after",
                f"{_or_dash(notifier.get('notifier_quiet_after_s'))} s (every socket closed,"
                " the notifier idle; then the stack's ground truth)",
            ),
        ]
    api = results.get("api")
    if api:
        for kind in (
            "get_project_serial",
            "get_project",
            "create_project_serial",
            "create_project",
        ):
            stats = api[kind]
            rows.append(
                (
                    f"{kind} c={stats['concurrency']}",
                    f"{_pcts(stats)}, {stats['requests_per_s']} req/s",
                )
            )
            cpu = stats.get("cpu_ms_per_request", {})
            if cpu:
                rows.append(
                    ("  CPU per request", ", ".join(f"{name} {ms} ms" for name, ms in cpu.items()))
                )
    overload = results.get("overload")
    if overload:
        rows.append(
            (
                f"burst of {overload['burst']} POSTs",
                f"answered in {overload['wall_s']:.2f} s: {overload['statuses']}",
            )
        )
    for stack, truth in results.get("ground_truth", {}).items():
        rows.append(
            (
                f"ground truth, {stack} stack",
                f"{truth['clips']} clips, {truth['sim_tasks']} sim tasks, lost {truth['lost']}, "
                f"billed twice {truth['billed_twice']}, DLQ {_or_dash(truth['dead_letters'])}",
            )
        )
    rows.append(("duration", f"{results.get('duration_s', 0):.0f} s"))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)


def write_json(path: Path, results: dict[str, Any], found: list[Check], targets: Targets) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = results | {
        "targets": asdict(targets),
        "checks": [asdict(check) for check in found],
    }
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def _cpu_ms(run: dict[str, Any]) -> str:
    """CPU milliseconds per clip, all measured processes, and the database's among them."""
    cpu = run.get("cpu_s_per_clip", {})
    return f"{sum(cpu.values()) * 1000:.0f} (DB {cpu.get('mongo', 0) * 1000:.0f})"


def _broker_cpu_ms(run: dict[str, Any]) -> str:
    """RabbitMQ's CPU milliseconds per clip; "-" when the broker was not on this machine."""
    seconds = run.get("broker_cpu_s_per_clip")
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def _polling_line(schedule: str, progress: str, row: dict[str, Any]) -> str:
    requests = row["requests_per_clip"]
    return (
        f"| {schedule} | {progress} | {row['calls_per_clip']:.2f}"
        f" | {'-' if requests is None else f'{requests:.2f}'} | {row['p50_delay_s']:.1f}"
        f" | {row['p95_delay_s']:.1f} | {row['p99_delay_s']:.1f} | {row['max_delay_s']:.1f} |"
    )


def markdown(results: dict[str, Any], found: list[Check]) -> str:
    """The figures as Markdown tables, for docs/BENCHMARKS.md (written as results.md)."""
    config = results["config"]
    parts = [
        f"Command: `{config['command']}`; {config['cpus']} CPUs, load "
        f"{config['load_before']} before and {config.get('load_after')} after the run; "
        f"{config['mongo']}; whole run {results.get('duration_s', 0):.0f} s.",
    ]
    runs = results.get("throughput")
    if runs:
        lines = [
            "| scenes/project | projects | clips | wall s | clips/s | DB ops/clip | by kind"
            " | publishes/clip | provider requests/clip | CPU ms/clip | broker CPU ms/clip"
            " | raw ceiling clips/s | its CPU ms/clip | share of ceiling | x task queue |",
            "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        several = any(len(run.get("rounds", [])) > 1 for run in runs)
        for run in runs:
            kinds = ", ".join(f"{k} {v}" for k, v in run["db_ops_by_kind"].items() if v)
            ceiling = run.get("ceiling") or {}
            multiple = run.get("task_queue_multiple")

            def of(value: Any, rounds_key: str, run: dict[str, Any] = run) -> str:
                return _from(value, run.get(rounds_key), several)

            lines.append(
                f"| {run['scenes_per_project']} | {run['projects']} | {run['clips']}"
                f" | {run['wall_s']:.1f} | **{of(run['clips_per_s'], 'round')}**"
                f" | **{run['db_ops_per_clip']}**"
                f" | {kinds} | {run['publishes_per_clip']}"
                f" | {run.get('provider_requests_per_clip', '-')} | {_cpu_ms(run)}"
                f" | {_broker_cpu_ms(run)}"
                f" | {of(ceiling.get('clips_per_s'), 'ceiling_rounds')}"
                f" | {_cpu_ms(ceiling) if ceiling else '-'}"
                f" | {of(run.get('ceiling_fraction'), 'ceiling_rounds')}"
                f" | {of(multiple, 'task_queue_rounds')} |"
            )
        if several:
            lines.append("\n" + _rounds_note(runs) + "\n")
            lines.append(_rounds_table(runs))
        parts.append("\n".join(lines))
    baseline = results.get("task_queue")
    if baseline:
        parts.append(_task_queue_table(baseline))
    polling = results.get("polling")
    if polling:
        lines = [
            "| schedule | progress | getResponse calls/clip | HTTP requests/clip"
            " | p50 delay s | p95 | p99 | max |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        live = polling.get("live") or {}
        for name, row in (
            ("**reelflow live**", live),
            ("reelflow live, its warm-up", live.get("warmup")),
        ):
            if row:
                label = f"{name} ({row['clips']} clips, speedup {row['speedup']:g})"
                lines.append(_polling_line(label, "as it runs", row | {"requests_per_clip": None}))
        for row in polling["exact"]["rows"]:
            lines.append(_polling_line(row["schedule"], row["progress"], row))
        seen, lag = live.get("seen"), live.get("recording_lag")
        if seen and lag:
            lines.append(
                f"\nreelflow live's delay, split: finished -> the first getResponse that saw"
                f" it p50 {seen['p50_s']} s, p95 {seen['p95_s']} s (simulated); that call ->"
                f" `completed_at` stored p50 {lag['p50_s']} s, p95 {lag['p95_s']} s, max"
                f" {lag['max_s']} s real, counted x{live['speedup']:g} in the delay above."
            )
        first = live.get("first_check")
        if first:
            lines.append(f"\nreelflow live's first check: {_first_check_text(first)}.")
        parts.append("\n".join(lines))
    notifier = results.get("notifier")
    if notifier:
        last = notifier["change_to_last_watcher"]
        spread = notifier["first_to_last_watcher"]
        broker = notifier.get("change_to_broker", {})
        fanout = notifier.get("broker_to_last_watcher", {})
        cpu = notifier.get("cpu_ms_per_change", {})
        parts.append(
            "| | figure |\n|---|---|\n"
            f"| WebSockets | {notifier['idle_connected']['ok'] + notifier['hot_connected']['ok']}"
            f" of {notifier['connections']} from {_load_processes(notifier)},"
            f" idle ones connected in {notifier['idle_connected']['seconds']} s |\n"
            f"| notifier RSS | {notifier['notifier_rss_mib_connected']} MiB connected,"
            f" peak **{notifier['notifier_peak_rss_mib']} MiB** |\n"
            f"| change -> last of {notifier['hot_watchers']} watchers"
            f" | p50 {last.get('p50_ms')} ms, **p99 {last.get('p99_ms')} ms**,"
            f" max {last.get('max_ms')} ms ({notifier['changes_measured']} changes) |\n"
            f"| first -> last watcher | p50 {spread.get('p50_ms')} ms,"
            f" p99 {spread.get('p99_ms')} ms |\n"
            f"| change -> event out of RabbitMQ (poller, database, publish) | p50"
            f" {broker.get('p50_ms')} ms, p99 {broker.get('p99_ms')} ms |\n"
            f"| event out of RabbitMQ -> last watcher (the notifier) | p50"
            f" {fanout.get('p50_ms')} ms, p99 {fanout.get('p99_ms')} ms |\n"
            f"| CPU per change while they flowed | "
            + ", ".join(f"{name} {ms} ms" for name, ms in cpu.items())
            + " |"
        )
    targets = [check for check in found if not check.correctness]
    failed = [check for check in found if check.correctness and not check.passed]
    lines = ["| target | measured | wanted | |", "|---|---:|---|---|"]
    for check in targets:
        verdict = "met" if check.passed else "**missed**"
        lines.append(f"| {check.name} | {check.value} | {check.target} | {verdict} |")
    correct = len(found) - len(targets) - len(failed)
    lines.append(
        f"\nCorrectness checks: {correct} passed, {len(failed)} failed"
        + (": " + "; ".join(f"{c.name} = {c.value}" for c in failed) if failed else ".")
    )
    parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _task_queue_table(runs: list[dict[str, Any]]) -> str:
    """The task-queue baseline's runs, as the throughput table shows reelflow's."""
    lines = [
        "| task-queue baseline: scenes/project | projects | clips | wall s | clips/s"
        " | DB ops/clip | by kind | provider requests/clip | CPU ms/clip | broker CPU ms/clip"
        " | its own raw ceiling clips/s | share of its ceiling |",
        "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        kinds = ", ".join(f"{k} {v}" for k, v in run["db_ops_by_kind"].items() if v)
        several = len(run.get("rounds_clips_per_s", [])) > 1
        tag = f" ({_tag(run['round'])})" if several else ""
        pair = run.get("ceiling_rounds")
        lines.append(
            f"| {run['scenes_per_project']} | {run['projects']} | {run['clips']}"
            f" | {run['wall_s']:.1f} | **{run['clips_per_s']}**{tag} | {run['db_ops_per_clip']}"
            f" | {kinds} | {run['provider_requests_per_clip']} | {_cpu_ms(run)}"
            f" | {_broker_cpu_ms(run)}"
            f" | {_from((run.get('ceiling') or {}).get('clips_per_s'), pair, several)}"
            f" | {_from(run.get('ceiling_fraction'), pair, several)} |"
        )
    return "\n".join(lines)


def _from(value: Any, rounds: int | list[int] | None, several: bool) -> str:
    """A figure, and the round or pair of rounds it is from when there were several."""
    if value is None:
        return "-"
    return f"{value} ({_tag(rounds)})" if several and rounds is not None else str(value)


def _rounds_note(runs: list[dict[str, Any]]) -> str:
    """How the rounds were run and read, for what they ran (the baseline, the ceiling)."""
    lines = [line for run in runs for line in run.get("rounds", [])]
    baseline = any("task_queue_multiple" in line for line in lines)
    ceiling = any("ceiling_fraction" in line for line in lines)
    text = "Each size ran in rounds"
    if baseline:
        text += " (the baseline's run and reelflow's back to back, who went first alternating"
        if any("task_queue_ceiling_fraction" in line for line in lines):
            text += ", the raw ceilings of reelflow's work and of the baseline's after them)"
        else:
            text += ", the raw ceiling after them)" if ceiling else ")"
    elif ceiling:
        text += " (the raw ceiling after each of reelflow's runs)"
    text += (
        "; reelflow's clips/s and the figures in its row are its median round's by clips/s,"
        " the round named beside it (r1, r2, ...)"
    )
    if ceiling or baseline:
        text += (
            ", a share or a multiple the median pair's (rounds 1+2, 3+4, ...: one of each order;"
            " a pair's ratio the geometric mean of its two rounds' ratios, the ceiling's and the"
            " baseline's clips/s beside it likewise)"
        )
    if baseline:
        idle = max(line["idle_stack_cpu_ms_per_clip"] for line in lines)
        text += f". The stack idle beside a run spent at most {idle:.2f} ms of CPU per clip of it"
    return text + ":"


def _rounds_text(rounds: list[dict[str, Any]]) -> str:
    """Every round's figures of one size, on one line."""

    def figures(name: str) -> str:
        return " / ".join(_or_dash(line[name]) for line in rounds)

    parts = [f"rounds: {figures('clips_per_s')} clips/s"]
    if all("task_queue_multiple" in line for line in rounds):
        parts.append(f"x task queue {figures('task_queue_multiple')}")
    if all("ceiling_fraction" in line for line in rounds):
        parts.append(f"share of ceiling {figures('ceiling_fraction')}")
    return "; ".join(parts)


def _rounds_table(runs: list[dict[str, Any]]) -> str:
    """Every round of every size: clips/s, the baseline's and the ceiling's beside them."""
    lines = [
        "| scenes/project | round | first | clips/s | task queue clips/s | x task queue"
        " | raw ceiling clips/s | share of ceiling | task queue's share of its ceiling |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        for line in run.get("rounds", []):
            lines.append(
                f"| {run['scenes_per_project']} | {line['round']} | {line['first']}"
                f" | {_or_dash(line['clips_per_s'])}"
                f" | {_or_dash(line.get('task_queue_clips_per_s'))}"
                f" | {_or_dash(line.get('task_queue_multiple'))}"
                f" | {_or_dash(line.get('ceiling_clips_per_s'))}"
                f" | {_or_dash(line.get('ceiling_fraction'))}"
                f" | {_or_dash(line.get('task_queue_ceiling_fraction'))} |"
            )
    return "\n".join(lines)


def _first_check_text(first: dict[str, Any]) -> str:
    """Where the learned plan started the measured clips, and what it cost the early ones."""
    return (
        f"submit -> first getResponse p50 {first['p50_s']} s (min {first['min_s']}, max"
        f" {first['max_s']}; simulated); {first['finished_before']} clips had finished before"
        f" it, largest delay {first['finished_before_max_delay_s']} s"
    )
