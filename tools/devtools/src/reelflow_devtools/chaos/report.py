"""The run's figures (a JSON-ready dict) and their table."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from typing import Any

from reelflow_devtools.chaos.monkey import MonkeyLog
from reelflow_devtools.chaos.plan import ChaosPlan
from reelflow_devtools.chaos.truth import Verdict
from reelflow_devtools.chaos.workload import WorkloadLog


def figures(
    plan: ChaosPlan,
    verdict: Verdict,
    work: WorkloadLog,
    monkey: MonkeyLog,
    tasks: list[dict[str, Any]],
    sim_stats: dict[str, Any],
    converge_s: float | None,
) -> dict[str, Any]:
    buckets = verdict.buckets
    attempted = plan.clips
    not_created = attempted - verdict.created
    violations = [v for watcher in work.watchers for v in watcher.violations]
    failures = {
        "lost": buckets["lost"],
        "stuck": buckets["stuck"],
        "billed_twice": verdict.billed_twice,
        "forged_accepted": buckets["forged_accepted"],
        "not_created": not_created,
        "dlq_not_exactly_poison": 0 if verdict.dlq_matches_poison else 1,
        "stops_overran": len(monkey.overran()),
        "watcher_violations": len(violations),
        "watchers_missed_the_end": len(work.watchers) - sum(w.finished for w in work.watchers),
        "did_not_converge": 1 if converge_s is None else 0,
        "workload_error": 0 if work.error is None else 1,
    }
    plans = [task.get("webhook_plan") for task in tasks]
    return {
        "plan": dataclasses.asdict(plan),
        "passed": not any(failures.values()),
        "failures": failures,
        "clips": {
            "attempted": attempted,
            "created": verdict.created,
            "succeeded": buckets["succeeded"],
            "failed_as_injected": buckets["failed_as_injected"],
            "failed_as_injected_by_cause": dict(verdict.injected),
            "late_video_kept": buckets["late_video_kept"],
            "lost": buckets["lost"],
            "stuck": buckets["stuck"],
            "forged_accepted": buckets["forged_accepted"],
            "billed_twice": verdict.billed_twice,
            "duplicate_projects": verdict.duplicate_projects,
            "videos_copied": verdict.copies_stored,
            "videos_not_copied": verdict.copies_missing,
        },
        "time_to_converge_s": converge_s,
        "dead_letters": {
            "poison_published": len(work.poison),
            "found": {queue: len(bodies) for queue, bodies in verdict.dead_letters.items()},
            "exactly_the_poison": verdict.dlq_matches_poison,
            "contents": {q: bodies[:10] for q, bodies in verdict.dead_letters.items()},
            "unexpected": verdict.unexpected_dead_letters[:10],
            "missing": verdict.missing_poison,
        },
        "injected": {
            "kills": monkey.counts(),
            "kill_log": [dataclasses.asdict(kill) for kill in monkey.kills],
            "died_on_their_own": monkey.died_on_their_own,
            "graceful_stops": len(monkey.stops()),
            "graceful_stops_during_outages": sum(k.during is not None for k in monkey.stops()),
            "slowest_stop_s": max((round(k.stop_s or 0, 1) for k in monkey.stops()), default=None),
            "stops_overran": [dataclasses.asdict(kill) for kill in monkey.overran()],
            "sim_http_status": sim_stats.get("http_status"),
            "sim_task_states": sim_stats.get("task_states"),
            "dropped_submit_answers": sum(task.get("dropped_answers", 0) for task in tasks),
            "resubmissions": sum(task.get("submissions", 1) - 1 for task in tasks),
            "webhooks_dropped": plans.count("drop"),
            "webhooks_duplicated": plans.count("duplicate"),
            "forged_webhooks": len(work.forgeries),
            "forged_webhooks_answered": dict(Counter(str(f.status) for f in work.forgeries)),
            "forged_on_running_or_hung_tasks": sum(
                forgery.sim_state in ("processing", "hang") for forgery in work.forgeries
            ),
            "post_answers": dict(work.post_answers),
        },
        "watchers": {
            "projects": len(work.watchers),
            "connections": sum(watcher.connections for watcher in work.watchers),
            "messages": sum(watcher.messages for watcher in work.watchers),
            "snapshots": sum(watcher.snapshots for watcher in work.watchers),
            "finished": sum(watcher.finished for watcher in work.watchers),
            "violations": violations[:20],
        },
        "examples": verdict.examples,
        "workload_error": work.error,
        "sim_billed_cost": sim_stats.get("billed_cost"),
    }


def report(results: dict[str, Any]) -> str:
    """The figures as a table for a terminal, and the verdict on the last line."""
    clips, dlq, injected = results["clips"], results["dead_letters"], results["injected"]
    watchers = results["watchers"]
    rows = [
        ("attempted", f"{clips['attempted']} clips ({clips['created']} created)"),
        ("succeeded", clips["succeeded"]),
        (
            "failed as injected",
            f"{clips['failed_as_injected']}  {clips['failed_as_injected_by_cause']}",
        ),
        ("failed, late video kept", clips.get("late_video_kept", 0)),
        ("lost", clips["lost"]),
        (
            "videos copied",
            f"{clips['videos_copied']} to reelflow's storage, {clips['videos_not_copied']} not",
        ),
        ("stuck", clips["stuck"]),
        (
            "billed twice",
            f"{clips['billed_twice']}  (projects made twice: {clips['duplicate_projects']})",
        ),
        (
            "forged accepted",
            f"{clips['forged_accepted']}  (of {injected['forged_webhooks']} forged webhooks,"
            f" {injected['forged_on_running_or_hung_tasks']} on running or hung tasks)",
        ),
        (
            "DLQ",
            f"{dlq['found']}; exactly the {dlq['poison_published']} poison messages:"
            f" {dlq['exactly_the_poison']}",
        ),
        ("DLQ contents", dlq["contents"]),
        ("time to converge", f"{results['time_to_converge_s']} s after the chaos window"),
        ("kills", injected["kills"]),
        ("died on their own", injected["died_on_their_own"] or "none"),
        (
            "SIGTERM stops",
            f"{injected['graceful_stops']} ({injected['graceful_stops_during_outages']} during"
            f" an outage), slowest {injected['slowest_stop_s']} s,"
            f" overran {len(injected['stops_overran'])}",
        ),
        ("Runware HTTP", injected["sim_http_status"]),
        ("Runware tasks", injected["sim_task_states"]),
        (
            "other faults",
            f"dropped submit answers {injected['dropped_submit_answers']},"
            f" webhooks dropped {injected['webhooks_dropped']},"
            f" duplicated {injected['webhooks_duplicated']}",
        ),
        (
            "watchers",
            f"{watchers['projects']} projects, {watchers['connections']} connections,"
            f" {watchers['messages']} messages, {watchers['finished']} saw the end",
        ),
        ("watcher violations", watchers["violations"] or "none"),
        ("POST answers", injected["post_answers"]),
        ("whole run", f"{results['duration_s']} s"),
    ]
    lines = ["reelflow chaos run"] + [f"  {name:<20} {value}" for name, value in rows]
    examples = {k: v for k, v in results["examples"].items() if k != "failed_as_injected"}
    if examples:
        lines.append(f"  examples             {json.dumps(examples, indent=2)}")
    if results["workload_error"]:
        lines.append(f"  workload error       {results['workload_error']}")
    failed = [name for name, count in results["failures"].items() if count]
    lines.append("PASSED" if results["passed"] else f"FAILED: {', '.join(failed)}")
    return "\n".join(lines)
