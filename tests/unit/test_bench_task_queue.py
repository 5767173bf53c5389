"""The task-queue baseline's schedule, and reelflow's throughput compared with it in one run."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from reelflow_common.polling.reference import sdk_schedule
from reelflow_devtools.bench import rounds as rounds_module
from reelflow_devtools.bench import task_queue_run
from reelflow_devtools.bench.ceiling import CeilingPlan, Work
from reelflow_devtools.bench.ground_truth import check_stored_projects
from reelflow_devtools.bench.main import chosen_scenarios
from reelflow_devtools.bench.report import Targets, _rounds_table, checks, markdown, summary
from reelflow_devtools.bench.rounds import SizeRounds, median_of_pairs, summarize
from reelflow_devtools.bench.task_queue.topology import poll_delays_ms
from reelflow_devtools.bench.task_queue_run import WORKERS, prefetches
from reelflow_devtools.bench.throughput import SizeRun, ThroughputPlan
from reelflow_poller.settings import Settings as PollerSettings
from reelflow_runware_sim.responses import video_url
from reelflow_submitter.settings import Settings as SubmitterSettings


def test_the_baseline_polls_on_the_runware_sdks_schedule() -> None:
    delays_s = [ms / 1000 for ms in poll_delays_ms(1)]
    plan = sdk_schedule()

    assert list(itertools.accumulate(delays_s[:-1])) == pytest.approx(list(plan.checks), abs=1e-3)
    assert delays_s[-1] == plan.tail_interval_s
    assert poll_delays_ms(100)[:3] == [10, 5, 8]  # divided by the simulator's speedup


def _run(size: int, clips_per_s: float) -> dict[str, Any]:
    return {
        "scenes_per_project": size,
        "projects": 500 // size,
        "clips": 500,
        "clips_succeeded": 500,
        "wall_s": 500 / clips_per_s,
        "clips_per_s": clips_per_s,
        "db_ops_per_clip": 2.2,
        "db_ops_by_kind": {"insert": 500 // size},
        "publishes_per_clip": 5.1,
        "cpu_s_per_clip": {"api": 0.002, "mongo": 0.004},
        "broker_cpu_s_per_clip": 0.004,
    }


def _baseline(size: int, clips_per_s: float) -> dict[str, Any]:
    return _run(size, clips_per_s) | {"provider_requests_per_clip": 2.0, "provider_tasks": 500}


def _rounds(
    size: int, reelflow: list[float], baseline: list[float], ceiling: list[float]
) -> SizeRounds:
    """One size's rounds, reelflow's run of round n at ``reelflow[n]`` clips/s, and so on."""
    rounds = SizeRounds(size)
    for number, (ours, theirs, bare) in enumerate(zip(reelflow, baseline, ceiling, strict=True)):
        first = "reelflow" if number % 2 else "baseline"
        results = _run(size, ours) | {"round": number + 1, "first": first}
        # what the idle stack beside spent: the baseline's during reelflow's run, and back
        results["beside_cpu_s_per_clip"] = {"api": 0.0001, "mongo": 0.0001 * number}
        rounds.runs.append(SizeRun(key=f"k{number}", project_ids=[], results=results))
        beside = {"beside_cpu_s_per_clip": {"poller": 0.00015}}
        rounds.baselines.append(_baseline(size, theirs) | beside)
        rounds.ceilings.append({"clips": 500, "clips_per_s": bare, "cpu_s_per_clip": {}})
    return rounds


def test_ratios_are_taken_within_rounds_and_the_median_pair_of_rounds_is_reported() -> None:
    # six rounds, three pairs (one round of each order); x task queue by round:
    # 1, 1 | 2, 8 | 1.5, 6, so by pair 1.0 | 4.0 | 3.0: the median pair is rounds 5 and 6
    rounds = _rounds(
        10,
        [100.0, 100.0, 200.0, 200.0, 150.0, 300.0],
        [100.0, 100.0, 100.0, 25.0, 100.0, 50.0],
        [400.0, 1000.0, 400.0, 400.0, 1000.0, 1000.0],
    )

    reelflow, baseline = summarize(rounds)

    assert (reelflow["task_queue_multiple"], reelflow["task_queue_rounds"]) == (3.0, [5, 6])
    assert reelflow["task_queue_clips_per_s"] == 70.71  # the pair's geometric mean
    # shares 0.25, 0.1 | 0.5, 0.5 | 0.15, 0.3: by pair 0.158 | 0.5 | 0.212
    assert (reelflow["ceiling_fraction"], reelflow["ceiling_rounds"]) == (0.212, [5, 6])
    assert reelflow["ceiling"]["clips_per_s"] == 1000.0
    # reelflow's own figures: its median round by clips/s (150, round 5); the baseline's its
    assert (reelflow["clips_per_s"], reelflow["round"]) == (150.0, 5)
    assert baseline is not None
    assert (baseline["clips_per_s"], baseline["round"]) == (100.0, 1)
    assert baseline["rounds_clips_per_s"] == [100.0, 100.0, 100.0, 25.0, 100.0, 50.0]
    assert [line["task_queue_multiple"] for line in reelflow["rounds"]] == [1, 1, 2, 8, 1.5, 6]
    # the median of the rounds alone (1.5, round 5) would have mixed the two orders


def test_one_pair_of_rounds_is_the_geometric_mean_of_its_two() -> None:
    reelflow, _ = summarize(_rounds(50, [30.0, 60.0], [20.0, 20.0], [100.0, 100.0]))

    assert reelflow["task_queue_multiple"] == pytest.approx(math.sqrt(1.5 * 3.0), abs=1e-3)
    assert reelflow["ceiling_fraction"] == pytest.approx(math.sqrt(0.3 * 0.6), abs=1e-3)
    assert reelflow["task_queue_rounds"] == [1, 2]
    assert reelflow["clips_per_s"] == 30.0  # of an even count, the lower middle round


def test_the_baselines_share_of_its_own_ceiling_is_read_in_pairs_as_reelflows() -> None:
    rounds = _rounds(10, [90.0] * 4, [100.0, 120.0, 100.0, 100.0], [300.0] * 4)
    # the ceiling of the baseline's own work, round by round: shares 0.5, 0.6 | 0.2, 0.8
    for bare in (200.0, 200.0, 500.0, 125.0):
        rounds.baseline_ceilings.append({"clips": 500, "clips_per_s": bare, "cpu_s_per_clip": {}})

    reelflow, baseline = summarize(rounds)

    assert baseline is not None
    # by pair sqrt(0.5 * 0.6) = 0.548 | sqrt(0.2 * 0.8) = 0.4: the lower middle pair
    assert (baseline["ceiling_fraction"], baseline["ceiling_rounds"]) == (0.4, [3, 4])
    assert baseline["ceiling"]["clips_per_s"] == 250.0  # sqrt(500 * 125)
    shares = [line["task_queue_ceiling_fraction"] for line in reelflow["rounds"]]
    assert shares == [0.5, 0.6, 0.2, 0.8]
    # reelflow's share stays that of its own ceiling: 90 / 300
    assert reelflow["ceiling_fraction"] == 0.3
    results = {
        "config": {"cpus": 2, "load_before": [0.0], "mongo": "-", "command": "bench"},
        "throughput": [reelflow],
        "task_queue": [baseline],
    }
    report = markdown(results, checks(results, Targets()))
    assert "| 250.0 (r3+r4) | 0.4 (r3+r4) |" in report  # the baseline's own table
    assert "| 10 | 2 | reelflow | 90.0 | 120.0 | 0.75 | 300.0 | 0.3 | 0.6 |" in report
    assert "its own ceiling 250.0 clips/s (x0.4)" in summary(results)
    assert "ceilings of reelflow's work and of the baseline's after them" in report


def test_the_baselines_publishes_are_counted_from_the_requests_they_lead_to() -> None:
    run = _baseline(10, 100.0) | {
        "provider_requests": 1012,  # 500 submits, 512 polls
        "db_ops_by_kind": {
            "insert": 50,
            "update": 550,
            "commands": 500,
            "queries": 2,
            "getmore": 1,
        },
    }

    work = Work.of_task_queue(run)

    # a task before every request, and one project.finished for each of the 50 projects
    assert work == Work(clips=500, inserts=50, updates=1050, reads=3, publishes=1062)


def _results(*, with_baseline: bool) -> dict[str, Any]:
    config = {"cpus": 2, "load_before": [0.0], "mongo": "-", "command": "bench"}
    results: dict[str, Any] = {"config": config, "throughput": [], "task_queue": []}
    for size, reelflow, baseline in ((10, 90.0, 40.0), (50, 30.0, 20.0)):
        rounds = _rounds(size, [reelflow], [baseline], [reelflow * 3])
        if not with_baseline:
            rounds.baselines = []
        ours, theirs = summarize(rounds)
        results["throughput"].append(ours)
        if theirs is not None:
            results["task_queue"].append(theirs)
    if not with_baseline:
        del results["task_queue"]
    return results


def test_reelflow_is_compared_with_the_baseline_measured_in_the_same_run() -> None:
    results = _results(with_baseline=True)
    found = {check.name: check for check in checks(results, Targets())}

    ten, fifty = results["throughput"]
    assert (ten["task_queue_multiple"], fifty["task_queue_multiple"]) == (2.25, 1.5)
    assert found["10-scene projects: x task queue"].passed
    assert not found["50-scene projects: x task queue"].passed
    # the name stays the same run after run; the baseline's figure is beside the target
    assert found["50-scene projects: x task queue"].target == ">= 2 x (task queue 20.0 clips/s)"
    assert found["task-queue baseline, 50-scene projects: clips not succeeded"].passed
    report = markdown(results, list(found.values()))
    assert "| 2.25 |" in report
    assert "| 50 | 10 | 500 | 25.0 | **20.0** |" in report  # the baseline's own table


def test_the_report_lists_every_round_when_there_were_several() -> None:
    results = _results(with_baseline=True)
    results["throughput"] = [
        summarize(_rounds(10, [90.0, 180.0, 150.0], [40.0, 90.0, 50.0], [300.0, 540.0, 600.0]))[0]
    ]

    report = markdown(results, checks(results, Targets()))

    assert "| 10 | 2 | reelflow | 180.0 | 90.0 | 2.0 | 540.0 | 0.333 |" in report
    lines = results["throughput"][0]["rounds"]
    assert [line["idle_stack_cpu_ms_per_clip"] for line in lines] == [0.15, 0.2, 0.3]
    assert "idle beside a run spent at most 0.30 ms of CPU per clip" in report
    # each figure names its round or pair of rounds: clips/s round 3; shares by pair
    # sqrt(0.3 * 0.333) = 0.316 | 0.25 (round 3 alone), multiples sqrt(2.25 * 2.0) | 3.0
    assert "| 10 | 50 | 500 | 3.3 | **150.0 (r3)** | **2.2** |" in report
    assert "| 600.0 (r3) | 0 (DB 0) | 0.25 (r3) | 2.121 (r1+r2) |" in report
    assert "rounds: 90.0 / 180.0 / 150.0 clips/s; x task queue 2.25 / 2.0 / 3.0" in summary(results)


def test_several_rounds_without_the_baseline_or_the_ceiling_are_reported_as_they_ran() -> None:
    rounds = _rounds(10, [90.0, 180.0, 150.0], [40.0, 90.0, 50.0], [300.0, 540.0, 600.0])
    rounds.baselines, rounds.ceilings = [], []
    for run in rounds.runs:
        run.results["first"] = "reelflow"  # as run_rounds marks every round without a baseline
    reelflow, baseline = summarize(rounds)
    results = {"config": _results(with_baseline=False)["config"], "throughput": [reelflow]}

    report = markdown(results, checks(results, Targets()))

    assert baseline is None
    assert "Each size ran in rounds; reelflow's clips/s" in report
    assert "the baseline's run" not in report
    assert "the raw ceiling" not in report
    assert "| 10 | 3 | reelflow | 150.0 | - | - | - | - |" in report
    assert "rounds: 90.0 / 180.0 / 150.0 clips/s\n" in summary(results) + "\n"


def test_a_clip_lost_in_any_round_fails_the_check_whichever_round_is_reported() -> None:
    rounds = _rounds(10, [90.0, 180.0, 150.0], [40.0, 90.0, 50.0], [300.0, 540.0, 600.0])
    rounds.runs[0].results["clips_succeeded"] = 499  # round 1: not the median round
    rounds.baselines[1]["provider_tasks"] = 501  # round 2: nor is this one the baseline's
    rounds.baselines[2]["provider_tasks"] = 499  # a task short in round 3 does not cancel it
    reelflow, baseline = summarize(rounds)
    assert baseline is not None
    results = {"throughput": [reelflow], "task_queue": [baseline]}

    found = {check.name: check for check in checks(results, Targets())}

    assert found["10-scene projects: clips not succeeded"].value == "1"
    extra = "task-queue baseline, 10-scene projects: provider tasks beyond one per clip"
    assert found[extra].value == "2"


def test_without_the_baseline_there_is_no_multiple_and_no_check() -> None:
    results = _results(with_baseline=False)
    found = checks(results, Targets())

    assert not any("task queue" in check.name for check in found)
    assert all("task_queue_multiple" not in run for run in results["throughput"])
    assert markdown(results, found).splitlines()[4].endswith("| - |")
    # and without the ceiling either
    for run in results["throughput"]:
        for name in ("ceiling", "ceiling_fraction", "ceiling_rounds"):
            del run[name]
    assert (
        markdown(results, checks(results, Targets())).splitlines()[4].endswith("| - | - | - | - |")
    )


def test_a_pair_counts_only_when_both_its_rounds_measured_the_ratio() -> None:
    ceilings = [450.0, 450.0, 900.0, 300.0, 300.0, 300.0, 180.0, 180.0]
    rounds = _rounds(10, [90.0] * 8, [45.0] * 8, ceilings)
    rounds.ceilings[3]["clips_per_s"] = None  # a ceiling run of no time

    reelflow, _ = summarize(rounds)

    # shares 0.2, 0.2 | 0.1, - | 0.3, 0.3 | 0.5, 0.5: the pairs 0.2, 0.3 and 0.5 count,
    # median 0.3; with the pair 3+4 as round 3 alone (0.1), or as 0, it would be 0.2
    assert (reelflow["ceiling_fraction"], reelflow["ceiling_rounds"]) == (0.3, [5, 6])
    assert reelflow["rounds"][3]["ceiling_fraction"] is None
    assert "| 10 | 4 | reelflow | 90.0 | 45.0 | 2.0 | - | - |" in _rounds_table([reelflow])


def test_rounds_pair_by_their_numbers_and_a_round_without_its_partner_stands_alone() -> None:
    # rounds 1, 2, 3, 5, 6 (round 4 missing): pairs 1+2 and 5+6, round 3 alone
    assert median_of_pairs([1.0, 4.0, 3.0, 1.0, 16.0], [1, 2, 3, 5, 6]) == (3.0, [3])
    assert median_of_pairs([1.0, 4.0, 9.0], [1, 2, 3]) == (2.0, [1, 2])  # the lower middle
    assert median_of_pairs([None, 4.0], [1, 2]) is None
    assert median_of_pairs([], []) is None


def test_50_against_1_scene_and_the_database_operations_are_read_across_the_rounds() -> None:
    one = summarize(_rounds(1, [100.0, 100.0, 50.0, 50.0], [50.0] * 4, [300.0] * 4))[0]
    fifty = summarize(_rounds(50, [50.0, 200.0, 100.0, 200.0], [50.0] * 4, [300.0] * 4))[0]
    fifty["rounds"][2]["db_ops_per_clip"] = 6.0  # one round over the target, not the median
    results = {"throughput": [one, fifty]}

    found = {check.name: check for check in checks(results, Targets())}

    # by round 0.5, 2.0 | 2.0, 4.0: pairs 1.0 and 2.83, the lower middle 1.0; the median
    # rounds alone (50 and 100 clips/s) would have made it 2.0
    assert found["throughput at 50 scenes / at 1 scene"].value == "1.00 x"
    assert not found["50-scene projects: DB operations per clip"].passed


class _Stack:
    """A stack whose one process has spent ``step`` more CPU seconds at each reading."""

    def __init__(self, name: str, step: float) -> None:
        self.name, self.step, self.used = name, step, 0.0

    def cpu_seconds(self) -> dict[str, float]:
        self.used += self.step
        return {self.name: self.used}


async def test_each_round_runs_the_pair_back_to_back_then_the_ceiling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    async def reelflow_run(stack: object, plan: ThroughputPlan, size: int) -> SizeRun:
        calls.append(f"R{size}")
        clips_per_s = 100.0 * len(calls)  # every call faster than the one before: drift
        results = _run(size, clips_per_s) | {"confirmed_publishes": 2000}
        results["db_ops_by_kind"] = dict.fromkeys(
            ("insert", "update", "commands", "queries", "getmore"), 0
        )
        return SizeRun(key=f"k{len(calls)}", project_ids=[], results=results)

    async def baseline_run(stack: object, plan: ThroughputPlan, size: int) -> dict[str, Any]:
        calls.append(f"B{size}")
        return _baseline(size, 100.0 * len(calls)) | {
            "clips": plan.clips,
            # publishes counted for its ceiling: this call's number
            "provider_requests": len(calls),
            "projects": 0,
            "db_ops_by_kind": dict.fromkeys(
                ("insert", "update", "commands", "queries", "getmore"), 0
            ),
        }

    async def ceiling_run(site: object, work: Work, plan: CeilingPlan) -> dict[str, Any]:
        # reelflow's work at reelflow's stack; the baseline's, named by the run it repeats,
        # at the baseline's
        if site is reelflow:
            assert work.publishes == 2000
            calls.append("C")
        else:
            assert site is baseline
            calls.append(f"Cb{work.publishes}")
        return {"clips": work.clips, "clips_per_s": 1000.0 * len(calls), "cpu_s_per_clip": {}}

    monkeypatch.setattr(rounds_module, "run_size", reelflow_run)
    monkeypatch.setattr(task_queue_run, "run_size", baseline_run)
    monkeypatch.setattr(rounds_module, "run_ceiling", ceiling_run)
    plan = ThroughputPlan(sizes=(1, 10), clips=500, rounds=2, warmup_clips=10, settle_s=0)
    reelflow, baseline = _Stack("submitter", 1.0), _Stack("worker-0", 0.5)

    done = await rounds_module.run_rounds(
        reelflow,  # type: ignore[arg-type]
        plan,
        baseline=baseline,  # type: ignore[arg-type]
        ceiling=CeilingPlan(),
        say=lambda _line: None,
    )

    # warm-ups, then round 1 with the baseline first, round 2 with reelflow first
    warmups = ["B10", "R10"]
    first = ["B1", "R1", "C", "Cb3", "B10", "R10", "C", "Cb7"]
    second = ["R1", "B1", "C", "Cb12", "R10", "B10", "C", "Cb16"]
    assert calls == [*warmups, *first, *second]
    ten = done.sizes[1]
    # each round's runs and ceilings are paired: the 8th call's run with the 7th's baseline
    assert [run.results["clips_per_s"] for run in ten.runs] == [800.0, 1500.0]
    assert [other["clips_per_s"] for other in ten.baselines] == [700.0, 1600.0]
    assert [ceiling["clips_per_s"] for ceiling in ten.ceilings] == [9000.0, 17000.0]
    assert [ceiling["clips_per_s"] for ceiling in ten.baseline_ceilings] == [10000.0, 18000.0]
    assert [run.results["first"] for run in ten.runs] == ["baseline", "reelflow"]
    # what the idle stack spent during each run: one step between two readings, per clip
    assert ten.runs[0].results["beside_cpu_s_per_clip"] == {"worker-0": 0.001}
    assert ten.baselines[0]["beside_cpu_s_per_clip"] == {"submitter": 0.002}
    assert done.keys == ["k2", "k4", "k11", "k8", "k15"]  # the warm-up's, then by size
    assert done.run_of(10) is ten.runs[-1]


def test_the_taskqueue_scenario_is_in_the_default_set_and_selectable() -> None:
    assert "taskqueue" in chosen_scenarios("all")
    assert chosen_scenarios("taskqueue") == ["taskqueue"]


def test_the_baselines_workers_have_as_many_submits_and_polls_in_flight_as_reelflow() -> None:
    submits, polls = prefetches()

    # one tenant per size: reelflow's submitter takes that many of its clips at once
    assert submits * WORKERS == SubmitterSettings().tenant_submit_concurrency
    assert polls * WORKERS == PollerSettings().poll_concurrency


SIM = "http://sim"


def _task(task_uuid: str, *, submissions: int = 1, state: str = "success") -> dict[str, Any]:
    return {
        "task_uuid": task_uuid,
        "submissions": submissions,
        "state": state,
        "billed": True,
        "cost": 0.4,
        "video_uuids": [f"v-{task_uuid}"],
        "polls": 1,
    }


def _clip(task_uuid: str, **fields: Any) -> dict[str, Any]:
    clip = {
        "task_uuid": task_uuid,
        "status": "success",
        "video_url": video_url(SIM, f"v-{task_uuid}"),
        "cost": 0.4,
    }
    return clip | fields


def test_the_baselines_ground_truth_checks_each_clips_result_against_the_simulator() -> None:
    clips = [
        _clip("a"),
        _clip("b", video_url=video_url(SIM, "v-other")),
        _clip("c", cost=0.5),
        _clip("d"),
        _clip("e", status="failed", video_url=None, cost=None),
    ]
    tasks = {task["task_uuid"]: task for task in map(_task, "abce")}
    tasks["d"] = _task("d", submissions=2)
    tasks["x"] = _task("x")  # paid for, no clip
    projects: list[dict[str, Any]] = [
        {"status": "partial", "clips": clips},
        {"status": "generating", "clips": []},
    ]

    truth = check_stored_projects(projects, tasks, {"requests": 9}, sim_url=SIM)

    assert truth["wrong_result"] == 2  # b's URL, c's cost
    assert truth["examples"]["wrong_result"] == ["b", "c"]
    assert truth["submitted_more_than_once"] == 1
    assert (truth["lost"], truth["extra_tasks"], truth["projects_not_terminal"]) == (1, 1, 1)
    assert truth["dead_letters"] is None
    found = {check.name: check for check in checks({"ground_truth": {"tq": truth}}, Targets())}
    assert not found["tq stack: clips whose video URL or cost is not the simulator's"].passed
    assert not found["tq stack: tasks submitted more than once"].passed
    assert "tq stack: dead-lettered messages" not in found
