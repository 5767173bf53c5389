"""Throughput beside its references, in rounds: reelflow, the task-queue baseline, the raw ceiling.

Why rounds. This machine's speed drifts by more than the differences measured:
on 2026-12-03 the same code ran 500 clips as 10-scene projects at 64 to 107
clips/s within seven minutes (``--scenario throughput``, four runs), and the
baseline's figure had moved as much between earlier runs. A ratio of two runs
made minutes apart measures that drift as much as the two implementations.

So each size is run ``ThroughputPlan.rounds`` times. In a round, the
baseline's run and reelflow's run of a size go back to back (which one goes
first alternates from round to round) and the raw ceiling of reelflow's run
follows at once; each ratio is taken within its round. A size's figure is the
median of its rounds' (:func:`summarize`), every round's beside it.

Both stacks are up for all of it, each idle while the other runs; what the idle
one spent during a run is recorded with the run (``beside_cpu_s_per_clip``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from reelflow_devtools.bench import task_queue_run
from reelflow_devtools.bench.ceiling import CeilingPlan, Work, run_ceiling
from reelflow_devtools.bench.launcher import BenchStack
from reelflow_devtools.bench.span import MeasuredStack
from reelflow_devtools.bench.task_queue_run import TaskQueueStack
from reelflow_devtools.bench.throughput import SizeRun, ThroughputPlan, run_size

T = TypeVar("T")

#: who ran first in a round, by the round's parity
_ORDER = ("baseline", "reelflow")


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


@dataclass
class Rounds:
    """The warm-up runs (not measured) and every size's rounds."""

    warmup: SizeRun
    sizes: list[SizeRounds]

    @property
    def keys(self) -> list[str]:
        """Every tenant key reelflow's runs used (for the ground truth)."""
        return [self.warmup.key] + [run.key for size in self.sizes for run in size.runs]


async def run_rounds(
    stack: BenchStack,
    plan: ThroughputPlan,
    *,
    baseline: TaskQueueStack | None,
    ceiling: CeilingPlan | None,
    say: Callable[[str], None],
) -> Rounds:
    """Warm both stacks up, then ``plan.rounds`` rounds of every size."""
    warmup_size = min(plan.warmup_clips, max(plan.sizes))
    warmup_plan = replace(plan, clips=plan.warmup_clips)
    if baseline is not None:
        await task_queue_run.run_size(baseline, warmup_plan, warmup_size)
    warmup = await run_size(stack, warmup_plan, warmup_size)
    await asyncio.sleep(plan.settle_s)  # the warm-up's completions reach poll_stats
    sizes = [SizeRounds(size) for size in plan.sizes]
    for round_number in range(plan.rounds):
        for rounds in sizes:
            size = rounds.size
            say(f"round {round_number + 1}/{plan.rounds}: {size}-scene projects")
            reelflow_first = baseline is None or round_number % 2 == 1
            if baseline is not None and not reelflow_first:
                rounds.baselines.append(await _baseline_run(baseline, stack, plan, size))
            run, idle = await _beside(baseline, run_size(stack, plan, size))
            run.results["round"] = round_number + 1
            run.results["first"] = "reelflow" if reelflow_first else "baseline"
            run.results["beside_cpu_s_per_clip"] = _per_clip(idle, run.results["clips"])
            rounds.runs.append(run)
            if ceiling is not None:
                rounds.ceilings.append(await run_ceiling(stack, Work.of(run.results), ceiling))
            if baseline is not None and reelflow_first:
                rounds.baselines.append(await _baseline_run(baseline, stack, plan, size))
    return Rounds(warmup, sizes)


async def _baseline_run(
    baseline: TaskQueueStack, stack: BenchStack, plan: ThroughputPlan, size: int
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


def _median_index(values: list[float]) -> int:
    """The index of the median of ``values`` (the lower one of an even count)."""
    ranked = sorted(range(len(values)), key=lambda index: values[index])
    return ranked[(len(ranked) - 1) // 2]


def _idle_ms(run: dict[str, Any]) -> float:
    """What the idle stack beside ``run`` spent, in ms of CPU per clip of the run."""
    spent: dict[str, float] = run.get("beside_cpu_s_per_clip", {})
    return round(sum(spent.values()) * 1000, 2)


def summarize(rounds: SizeRounds) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One size's figures: reelflow's, and the baseline's (None without it).

    A median is the middle round's figure (of an even count, the lower middle
    one's), so every figure is one a round measured. reelflow's figures are
    those of its median round by clips/s (its database operations, CPU and
    publishes with them); ``ceiling_fraction`` and ``task_queue_multiple`` are
    the medians of the rounds' own ratios, each with the figure of the round it
    came from (``ceiling``, ``task_queue_clips_per_s``). The baseline's figures
    are those of its median round by clips/s. ``rounds`` lists every round's,
    with the most the idle stack spent during either run of the round.
    """
    runs = [run.results for run in rounds.runs]
    results = dict(runs[_median_index([run["clips_per_s"] for run in runs])])
    by_round: list[dict[str, Any]] = [
        {
            "round": run["round"],
            "first": run["first"],
            "clips_per_s": run["clips_per_s"],
            "idle_stack_cpu_ms_per_clip": _idle_ms(run),
        }
        for run in runs
    ]
    if rounds.ceilings:
        fractions = [
            run["clips_per_s"] / ceiling["clips_per_s"]
            for run, ceiling in zip(runs, rounds.ceilings, strict=True)
        ]
        for line, ceiling, fraction in zip(by_round, rounds.ceilings, fractions, strict=True):
            line["ceiling_clips_per_s"] = ceiling["clips_per_s"]
            line["ceiling_fraction"] = round(fraction, 3)
        middle = _median_index(fractions)
        results["ceiling"] = rounds.ceilings[middle] | {"round": runs[middle]["round"]}
        results["ceiling_fraction"] = round(fractions[middle], 3)
    baseline: dict[str, Any] | None = None
    if rounds.baselines:
        multiples = [
            run["clips_per_s"] / other["clips_per_s"]
            for run, other in zip(runs, rounds.baselines, strict=True)
        ]
        for line, other, multiple in zip(by_round, rounds.baselines, multiples, strict=True):
            line["task_queue_clips_per_s"] = other["clips_per_s"]
            line["task_queue_multiple"] = round(multiple, 3)
            line["idle_stack_cpu_ms_per_clip"] = max(
                line["idle_stack_cpu_ms_per_clip"], _idle_ms(other)
            )
        middle = _median_index(multiples)
        results["task_queue_clips_per_s"] = rounds.baselines[middle]["clips_per_s"]
        results["task_queue_multiple"] = round(multiples[middle], 3)
        baseline = dict(
            rounds.baselines[_median_index([other["clips_per_s"] for other in rounds.baselines])]
        )
        baseline["rounds_clips_per_s"] = [other["clips_per_s"] for other in rounds.baselines]
    results["rounds"] = by_round
    return results, baseline
