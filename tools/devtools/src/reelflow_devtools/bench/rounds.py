"""Throughput beside its references, in rounds: reelflow, the task-queue baseline, the raw ceiling.

Why rounds. This machine's speed drifts by more than the differences measured:
on 2026-12-03 the same code ran 500 clips as 10-scene projects at 64 to 107
clips/s within seven minutes (``--scenario throughput``, four runs), and the
baseline's figure had moved as much between earlier runs. A ratio of two runs
made minutes apart measures that drift as much as the two implementations.

So each size is run ``ThroughputPlan.rounds`` times. In a round, the
baseline's run of a size and reelflow's go back to back (the baseline first in
odd rounds, reelflow first in even ones), then the raw ceiling repeats the
work of reelflow's run on reelflow's database server and broker, and then the
baseline's on the baseline's (how near the straightforward implementation
comes to the bare cost of its own work calibrates reelflow's share); each
ratio is taken within its round. The order can move a run (in a 5-round run
on 2026-12-03 at 11:18 UTC, 891f137, the two reelflow-first rounds gave the
two highest multiples at 10 and 50 scenes; in a full run at 13:44 UTC,
b638c82, the three baseline-first rounds gave the three highest at 50
scenes), so rounds are read in pairs, one of each order: a pair's ratio is
the geometric mean of its two rounds', and a size's figure the median pair's
(:func:`median_of_pairs`, :func:`summarize`), every round's beside it.

Both stacks are up for all of it, each idle while the other runs; what the idle
one spent during a run is recorded with the run (``beside_cpu_s_per_clip``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from reelflow_devtools.bench import task_queue_run
from reelflow_devtools.bench.ceiling import CeilingPlan, Work, run_ceiling
from reelflow_devtools.bench.launcher import BenchStack
from reelflow_devtools.bench.span import MeasuredStack
from reelflow_devtools.bench.throughput import SizeRun, ThroughputPlan, run_size, warmup_size

T = TypeVar("T")


@dataclass
class SizeRounds:
    """Every round of one project size."""

    size: int
    #: reelflow's runs, by round
    runs: list[SizeRun] = field(default_factory=list)
    #: the baseline's, by round (none without a baseline)
    baselines: list[dict[str, Any]] = field(default_factory=list)
    #: the raw ceiling of each of reelflow's runs (none without the ceiling)
    ceilings: list[dict[str, Any]] = field(default_factory=list)
    #: the raw ceiling of each of the baseline's runs (none without both)
    baseline_ceilings: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Rounds:
    """The warm-up run (not measured) and every size's rounds."""

    warmup: SizeRun
    sizes: list[SizeRounds]

    @property
    def keys(self) -> list[str]:
        """Every tenant key reelflow's runs used (for the ground truth)."""
        return [self.warmup.key] + [run.key for rounds in self.sizes for run in rounds.runs]

    def run_of(self, size: int) -> SizeRun | None:
        """reelflow's last run of ``size`` scenes, if that size ran."""
        for rounds in self.sizes:
            if rounds.size == size and rounds.runs:
                return rounds.runs[-1]
        return None


async def run_rounds(
    stack: BenchStack,
    plan: ThroughputPlan,
    *,
    baseline: task_queue_run.TaskQueueStack | None,
    ceiling: CeilingPlan | None,
    say: Callable[[str], None],
) -> Rounds:
    """Warm both stacks up, then ``plan.rounds`` rounds of every size."""
    warmup_plan = replace(plan, clips=plan.warmup_clips)
    if baseline is not None:
        await task_queue_run.run_size(baseline, warmup_plan, warmup_size(plan))
    warmup = await run_size(stack, warmup_plan, warmup_size(plan))
    await asyncio.sleep(plan.settle_s)  # the warm-up's completions reach poll_stats
    sizes = [SizeRounds(size) for size in plan.sizes]
    for number in range(1, plan.rounds + 1):
        for rounds in sizes:
            say(f"round {number}/{plan.rounds}: {rounds.size}-scene projects")
            baseline_first = baseline is not None and number % 2 == 1
            if baseline is not None and baseline_first:
                rounds.baselines.append(await _baseline_run(baseline, stack, plan, rounds.size))
            run, idle = await _beside(baseline, run_size(stack, plan, rounds.size))
            run.results.update(
                round=number,
                first="baseline" if baseline_first else "reelflow",
                beside_cpu_s_per_clip=_per_clip(idle, run.results["clips"]),
            )
            rounds.runs.append(run)
            if baseline is not None and not baseline_first:
                rounds.baselines.append(await _baseline_run(baseline, stack, plan, rounds.size))
            if ceiling is not None:
                rounds.ceilings.append(await run_ceiling(stack, Work.of(run.results), ceiling))
                if baseline is not None:
                    work = Work.of_task_queue(rounds.baselines[-1])
                    rounds.baseline_ceilings.append(await run_ceiling(baseline, work, ceiling))
    return Rounds(warmup, sizes)


async def _baseline_run(
    baseline: task_queue_run.TaskQueueStack, stack: BenchStack, plan: ThroughputPlan, size: int
) -> dict[str, Any]:
    results, idle = await _beside(stack, task_queue_run.run_size(baseline, plan, size))
    return results | {"beside_cpu_s_per_clip": _per_clip(idle, results["clips"])}


async def _beside(other: MeasuredStack | None, run: Awaitable[T]) -> tuple[T, dict[str, float]]:
    """``run``'s result, and the CPU seconds the idle ``other`` stack's processes spent."""
    before = other.cpu_seconds() if other is not None else {}
    result = await run
    after = other.cpu_seconds() if other is not None else {}
    return result, {name: used - before.get(name, 0.0) for name, used in after.items()}


def _per_clip(cpu_s: dict[str, float], clips: int) -> dict[str, float]:
    return {name: round(spent / clips, 4) for name, spent in cpu_s.items()}


def _idle_ms(run: dict[str, Any]) -> float:
    """What the idle stack beside ``run`` spent, in ms of CPU per clip of the run."""
    spent: dict[str, float] = run.get("beside_cpu_s_per_clip", {})
    return round(sum(spent.values()) * 1000, 2)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``; None when either was not measured (a run of no time)."""
    if not numerator or not denominator:
        return None
    return numerator / denominator


def _median(values: list[float | None]) -> int | None:
    """The index of the median of the measured ``values`` (the lower middle one of an even
    count); None when none was measured."""
    measured = sorted((value, index) for index, value in enumerate(values) if value is not None)
    return measured[(len(measured) - 1) // 2][1] if measured else None


def _geometric_mean(values: list[float | None]) -> float | None:
    measured = [value for value in values if value is not None]
    return math.prod(measured) ** (1 / len(measured)) if measured else None


def median_of_pairs(
    ratios: list[float | None], round_numbers: list[int]
) -> tuple[float, list[int]] | None:
    """The median pair's ratio, and the pair's rounds; None when no pair measured one.

    ``ratios`` are by round, ``round_numbers`` name the rounds. Rounds pair up
    by number, (1, 2), (3, 4), ...: one of each order (:func:`run_rounds`
    alternates who goes first), so a pair's ratio, the geometric mean of its
    two, is free of whatever going first or second does to a run. A pair
    counts only when both its rounds measured a ratio; a round whose partner
    did not run (the last of an odd count) stands alone. The median pair is the
    middle one by ratio (of an even count, the lower middle one).
    """
    pairs: dict[int, list[int]] = {}
    for index, number in enumerate(round_numbers):
        pairs.setdefault((number - 1) // 2, []).append(index)
    grouped = list(pairs.values())
    by_pair = [
        None
        if any(ratios[index] is None for index in pair)
        else _geometric_mean([ratios[index] for index in pair])
        for pair in grouped
    ]
    middle = _median(by_pair)
    if middle is None:
        return None
    value = by_pair[middle]
    assert value is not None
    return value, [round_numbers[index] for index in grouped[middle]]


def _pair_of(lines: list[dict[str, Any]], numbers: list[int], name: str) -> float | None:
    """The geometric mean of the rounds ``numbers``' ``name`` figures."""
    chosen = [line[name] for line in lines if line["round"] in numbers]
    value = _geometric_mean(chosen)
    return None if value is None else round(value, 2)


def _against_ceilings(
    runs: list[dict[str, Any]],
    ceilings: list[dict[str, Any]],
    by_round: list[dict[str, Any]],
    numbers: list[int],
    *,
    prefix: str,
) -> dict[str, Any]:
    """Each run's share of the ceiling of its own work, the runs and ceilings by round.

    Every round's goes into its line of ``by_round`` (``<prefix>ceiling_clips_per_s``,
    ``<prefix>ceiling_fraction``); what is returned is the median pair's share
    (``ceiling_fraction``, ``ceiling_rounds``) and the pair's ceiling (``ceiling``: the
    geometric mean of its clips/s, the mean of its CPU per clip), or nothing when no
    pair measured a share.
    """
    shares = [
        _ratio(run["clips_per_s"], ceiling["clips_per_s"])
        for run, ceiling in zip(runs, ceilings, strict=True)
    ]
    for line, ceiling, share in zip(by_round, ceilings, shares, strict=True):
        line[f"{prefix}ceiling_clips_per_s"] = ceiling["clips_per_s"]
        line[f"{prefix}ceiling_fraction"] = None if share is None else round(share, 3)
    paired = median_of_pairs(shares, numbers)
    if paired is None:
        return {}
    share, pair = paired
    chosen = [ceiling for ceiling, number in zip(ceilings, numbers, strict=True) if number in pair]
    return {
        "ceiling_fraction": round(share, 3),
        "ceiling_rounds": pair,
        "ceiling": {
            "clips_per_s": _pair_of(by_round, pair, f"{prefix}ceiling_clips_per_s"),
            "cpu_s_per_clip": {
                name: round(sum(one["cpu_s_per_clip"][name] for one in chosen) / len(chosen), 4)
                for name in chosen[0]["cpu_s_per_clip"]
            },
        },
    }


def summarize(rounds: SizeRounds) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One size's figures: reelflow's, and the baseline's (None without it).

    reelflow's own figures are those of its median round by clips/s (the lower
    middle one of an even count; its database operations, CPU and publishes
    with them; ``round`` names it). ``ceiling_fraction`` and
    ``task_queue_multiple`` are ratios of the median pair of rounds
    (:func:`median_of_pairs`; ``ceiling_rounds``, ``task_queue_rounds`` name
    it), with the pair's geometric means of the ceiling's and the baseline's
    clips/s beside them (``ceiling``, ``task_queue_clips_per_s``). The
    baseline's own figures are those of its median round by clips/s
    (``round``), and its share of the ceiling of its own work that of the median
    pair (``ceiling_fraction``, ``ceiling_rounds``, ``ceiling``, as reelflow's).
    ``rounds`` lists every round's, with the most the idle stack spent during
    either run of the round; the ``*_all_rounds`` counts add every round's up
    for the correctness checks.
    """
    runs = [run.results for run in rounds.runs]
    numbers = [run["round"] for run in runs]
    middle = _median([run["clips_per_s"] for run in runs])
    results = dict(runs[0 if middle is None else middle])
    results["clips_not_succeeded_all_rounds"] = sum(
        run["clips"] - run["clips_succeeded"] for run in runs
    )
    by_round: list[dict[str, Any]] = [
        {
            "round": run["round"],
            "first": run["first"],
            "clips_per_s": run["clips_per_s"],
            "db_ops_per_clip": run["db_ops_per_clip"],
            "idle_stack_cpu_ms_per_clip": _idle_ms(run),
        }
        for run in runs
    ]
    if rounds.ceilings:
        results |= _against_ceilings(runs, rounds.ceilings, by_round, numbers, prefix="")
    baseline: dict[str, Any] | None = None
    if rounds.baselines:
        multiples = [
            _ratio(run["clips_per_s"], other["clips_per_s"])
            for run, other in zip(runs, rounds.baselines, strict=True)
        ]
        for line, other, multiple in zip(by_round, rounds.baselines, multiples, strict=True):
            line["task_queue_clips_per_s"] = other["clips_per_s"]
            line["task_queue_multiple"] = None if multiple is None else round(multiple, 3)
            line["idle_stack_cpu_ms_per_clip"] = max(
                line["idle_stack_cpu_ms_per_clip"], _idle_ms(other)
            )
        paired = median_of_pairs(multiples, numbers)
        if paired is not None:
            multiple, pair = paired
            results["task_queue_multiple"] = round(multiple, 3)
            results["task_queue_rounds"] = pair
            results["task_queue_clips_per_s"] = _pair_of(by_round, pair, "task_queue_clips_per_s")
        middle = _median([other["clips_per_s"] for other in rounds.baselines])
        baseline = dict(rounds.baselines[0 if middle is None else middle])
        if rounds.baseline_ceilings:
            baseline |= _against_ceilings(
                rounds.baselines, rounds.baseline_ceilings, by_round, numbers, prefix="task_queue_"
            )
        baseline |= {
            "round": numbers[0 if middle is None else middle],
            "rounds_clips_per_s": [other["clips_per_s"] for other in rounds.baselines],
            "clips_not_succeeded_all_rounds": sum(
                other["clips"] - other["clips_succeeded"] for other in rounds.baselines
            ),
            "provider_tasks_beyond_one_all_rounds": sum(
                abs(other["provider_tasks"] - other["clips"]) for other in rounds.baselines
            ),
        }
    results["rounds"] = by_round
    return results, baseline
