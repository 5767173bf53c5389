"""Poll schedules side by side, computed exactly on the simulator's latency model.

``python -m reelflow_devtools.bench.polling`` draws completion times from the
Runware simulator's own model for one video model (``google:3@3`` by default: a
log-normal, median 90 s, sigma 0.6, floored at 20 s), trains the learned planner
on one sample the way the poller would (each completion bracketed by two checks,
counts shared every 100 completions), and evaluates every schedule on a second
sample with :mod:`reelflow_common.polling.evaluate`: getResponse calls and HTTP
requests per clip, detection delay (finished at Runware → seen) percentiles.
Production settings (``PollingSettings()``) unless told otherwise. No clock, no
network: the same seed gives the same table.

``--warm-ups N`` instead asks how well a short warm-up trains the planner: N
samples, each a warm-up of ``--warm-up-clips`` (100) learned as above and then
200 measured clips, each sample's target its own Runware-SDK p95 + 2 s
(:func:`warmup_samples`).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reelflow_common.backoff import Backoff
from reelflow_common.polling.book import CompletionBook
from reelflow_common.polling.evaluate import (
    ProgressModel,
    Summary,
    evaluate,
    evaluate_batched,
    evaluate_webhooks,
    linear_progress,
    power_progress,
    staggered_starts,
)
from reelflow_common.polling.histogram import generic_prior
from reelflow_common.polling.learned import LearnedPlanner, PlannerConfig
from reelflow_common.polling.live import OnLadder
from reelflow_common.polling.plan import ClipProfile, FixedLadderPlanner, PollPlanner
from reelflow_common.polling.reference import sdk_planner, seed_planner
from reelflow_common.settings import PollingSettings
from reelflow_runware_sim.models import MODELS

#: batching is evaluated on at least this many times ``in_flight`` clips (a steady state)
_STEADY_ROUNDS = 4
#: reelflow's first ladder: 20 s, x1.5, capped at 120 s
OLD_LADDER = FixedLadderPlanner(Backoff(first_s=20.0, cap_s=120.0, factor=1.5))


@dataclass(frozen=True)
class Setup:
    """What the comparison varies."""

    model: str = "google:3@3"
    clips: int = 2000
    seed: int = 1
    settings: PollingSettings = field(default_factory=PollingSettings)
    #: batching: clips followed at once (staggered submissions), tasks per request
    in_flight: int = 500
    batch_size: int = 50
    #: webhooks: seconds from the finish to Runware's call reaching reelflow
    webhook_delivery_s: float = 0.0
    #: the wait-queue ladder a delay is put on, as the poller does (first, factor); None: exact
    ladder: tuple[float, float] | None = (1.0, 1.35)

    @property
    def profile(self) -> ClipProfile:
        return ClipProfile(self.model, duration=4, width=1280, height=720)


@dataclass(frozen=True)
class Row:
    """One schedule's figures."""

    schedule: str
    progress: str
    summary: Summary
    group: str = "polling"


def draw_latencies(model: str, count: int, seed: int) -> list[float]:
    """Completion times the simulator would draw for ``model`` (``models.Latency``)."""
    latency = MODELS[model].latency
    rng = random.Random(seed)
    return [
        max(latency.floor, latency.median * math.exp(latency.sigma * rng.gauss(0.0, 1.0)))
        for _ in range(count)
    ]


def trained_planner(
    setup: Setup, latencies: Sequence[float], progress: ProgressModel | None
) -> LearnedPlanner:
    """A learned planner after following ``latencies`` as the poller would."""
    book = CompletionBook(prior=generic_prior(setup.settings.poll_prior_median_s))
    planner = LearnedPlanner(book, PlannerConfig.from_settings(setup.settings))
    evaluate(
        planner, setup.profile, latencies, progress=progress, learn=True, commit=book.commit_pending
    )
    return planner


@dataclass(frozen=True)
class WarmupSample:
    """One warm-up's planner on its measured clips, and the SDK's p95 on the same clips."""

    p95_delay_s: float
    sdk_p95_delay_s: float
    first_check_s: float
    calls_per_clip: float

    @property
    def met(self) -> bool:
        """The p95 target: the SDK's p95 on the same clips + 2 s."""
        return self.p95_delay_s <= self.sdk_p95_delay_s + 2.0


@dataclass(frozen=True)
class WarmupRow:
    """One progress model over every warm-up sample."""

    progress: str
    samples: tuple[WarmupSample, ...]

    @property
    def missing(self) -> int:
        return sum(not s.met for s in self.samples)

    @property
    def p95_delay_s(self) -> tuple[float, float, float]:
        return _min_median_max([s.p95_delay_s for s in self.samples])

    @property
    def first_check_s(self) -> tuple[float, float, float]:
        return _min_median_max([s.first_check_s for s in self.samples])

    @property
    def calls_per_clip(self) -> float:
        return statistics.fmean(s.calls_per_clip for s in self.samples)


def _min_median_max(values: Sequence[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def warmup_samples(
    setup: Setup, *, samples: int, warmup_clips: int = 100, measured_clips: int = 200
) -> list[WarmupRow]:
    """How well a short warm-up trains the planner, progress ignored and linear.

    Warm-up ``i`` (from 0) learns ``warmup_clips`` drawn with seed ``1000 + i`` as the
    poller would (:func:`trained_planner`), then is measured on ``measured_clips``
    drawn with seed ``5000 + i``, as is the Runware SDK's schedule.
    """
    models: dict[str, ProgressModel | None] = {"ignored": None, "linear": linear_progress}
    found: dict[str, list[WarmupSample]] = {name: [] for name in models}
    for i in range(samples):
        warmup = draw_latencies(setup.model, warmup_clips, 1000 + i)
        measured = draw_latencies(setup.model, measured_clips, 5000 + i)
        sdk = evaluate(sdk_planner(), setup.profile, measured)
        for name, progress in models.items():
            planner = trained_planner(setup, warmup, progress)
            summary = evaluate(planner, setup.profile, measured, progress=progress)
            found[name].append(
                WarmupSample(
                    p95_delay_s=summary.p95_delay_s,
                    sdk_p95_delay_s=sdk.p95_delay_s,
                    first_check_s=planner.first_check_s(setup.profile),
                    calls_per_clip=summary.calls_per_clip,
                )
            )
    return [WarmupRow(name, tuple(rows)) for name, rows in found.items()]


def render_warmups(rows: Sequence[WarmupRow]) -> str:
    """A Markdown table of :func:`warmup_samples`' rows."""

    def three(values: tuple[float, float, float]) -> str:
        return " / ".join(f"{v:.1f}" for v in values)

    lines = [
        "| progress | samples missing the p95 | p95 min / median / max"
        " | first check min / median / max | calls/clip |",
        "|---|---:|---|---|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.progress} | {row.missing} of {len(row.samples)}"
            f" | {three(row.p95_delay_s)} | {three(row.first_check_s)}"
            f" | {row.calls_per_clip:.2f} |"
        )
    return "\n".join(lines)


def compare(setup: Setup, test: Sequence[float] | None = None) -> list[Row]:
    """Every schedule on the same test sample (see the module docstring): ``test``, the
    simulated completion times of a live run, or a sample drawn from the model."""
    train = draw_latencies(setup.model, setup.clips, setup.seed)
    if test is None:
        test = draw_latencies(setup.model, setup.clips, setup.seed + 1)
    profile, config = setup.profile, PlannerConfig.from_settings(setup.settings)
    progress_models: dict[str, ProgressModel | None] = {
        "ignored": None,
        "linear": linear_progress,
        "ahead (sqrt)": power_progress(0.5),
        "behind (square)": power_progress(2.0),
    }

    def run(planner: PollPlanner, progress: str) -> Summary:
        return evaluate(planner, profile, test, progress=progress_models[progress])

    rows = [
        Row("Runware SDK: 1 s, +0.5 s, x1.5, cap 10 s", "-", run(sdk_planner(), "ignored")),
        Row(
            "seed: SDK every 2 s to 120 s, browser every 15 s", "-", run(seed_planner(), "ignored")
        ),
        Row("reelflow's old ladder: 20 s, x1.5, cap 120 s", "-", run(OLD_LADDER, "ignored")),
    ]
    cold = LearnedPlanner(
        CompletionBook(prior=generic_prior(setup.settings.poll_prior_median_s)), config
    )
    rows += [Row("learned, cold (priors only)", p, run(cold, p)) for p in ("ignored", "linear")]
    trained = {
        name: trained_planner(setup, train, model) for name, model in progress_models.items()
    }
    rows += [Row("learned, trained", name, run(trained[name], name)) for name in progress_models]
    if setup.ladder is not None:
        first, factor = setup.ladder
        top = max(config.max_interval_s, config.webhook_interval_s)
        ladder = Backoff(first_s=first, cap_s=top, factor=factor)
        rungs = ladder.rungs_ms()
        for name in ("ignored", "linear"):
            on_ladder = OnLadder(trained[name], ladder, bound_s=config.max_interval_s)
            label = (
                f"learned, trained, delays on a {first:g} s x{factor:g} ladder"
                f" ({len(rungs)} queues)"
            )
            rows.append(Row(label, name, run(on_ladder, name)))

    # Batching shares requests among the clips in flight: about ``in_flight`` of them is
    # a steady state, which a sample smaller than a few times that never reaches (a
    # live run's 200 clips peak below 200 at once, their ramp up and tail dominate).
    # So the sample is cycled up to ``_STEADY_ROUNDS`` x in_flight clips.
    steady = max(len(test), _STEADY_ROUNDS * setup.in_flight)
    batched = [test[i % len(test)] for i in range(steady)]
    starts = staggered_starts(len(batched), setup.in_flight, sum(batched) / len(batched))
    for name in ("ignored", "linear"):
        summary = evaluate_batched(
            trained[name],
            profile,
            batched,
            starts,
            window_s=setup.settings.poll_batch_window_s,
            batch_size=setup.batch_size,
            progress=progress_models[name],
        )
        label = (
            f"learned + batching ({setup.in_flight} in flight, <= {setup.batch_size} per request,"
            f" {setup.settings.poll_batch_window_s:g} s window)"
        )
        rows.append(Row(label, name, summary, group="batching"))

    hooked = ClipProfile(profile.model, profile.duration, profile.width, profile.height, True)
    safety = trained["ignored"]
    rows.append(
        Row(
            f"learned + webhooks (delivered {setup.webhook_delivery_s:g} s after the finish)",
            "-",
            evaluate_webhooks(safety, hooked, test, delivery_s=setup.webhook_delivery_s),
            group="webhooks",
        )
    )
    rows.append(
        Row(
            "learned + webhooks, every webhook lost (the safety net alone)",
            "-",
            evaluate_webhooks(safety, hooked, test, delivered=lambda _: False),
            group="webhooks",
        )
    )
    return rows


def render(rows: Sequence[Row]) -> str:
    """A Markdown table, with each schedule's calls and requests as a share of the SDK's."""
    sdk = rows[0].summary
    lines = [
        "| schedule | progress | calls/clip | vs SDK | HTTP requests/clip | vs SDK"
        " | p50 delay s | p95 | p99 | max |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        s = row.summary
        lines.append(
            f"| {row.schedule} | {row.progress} | {s.calls_per_clip:.2f}"
            f" | {s.calls_per_clip / sdk.calls_per_clip:.2f}"
            f" | {s.requests_per_clip:.2f} | {s.requests_per_clip / sdk.requests_per_clip:.3f}"
            f" | {s.p50_delay_s:.1f} | {s.p95_delay_s:.1f} | {s.p99_delay_s:.1f}"
            f" | {s.max_delay_s:.1f} |"
        )
    return "\n".join(lines)


def targets(rows: Sequence[Row]) -> list[tuple[str, bool]]:
    """Issue 8's polling targets, each with whether this run meets it."""
    sdk = rows[0].summary
    found: list[tuple[str, bool]] = []
    for row in rows:
        s = row.summary
        if row.schedule == "learned, trained" and row.progress in ("ignored", "linear"):
            found.append(
                (
                    f"progress {row.progress}: p95 {s.p95_delay_s:.1f} s <= SDK"
                    f" {sdk.p95_delay_s:.1f} s + 2 s",
                    s.p95_delay_s <= sdk.p95_delay_s + 2.0,
                )
            )
            found.append(
                (
                    f"progress {row.progress}: {s.calls_per_clip:.2f} calls/clip <= SDK"
                    f" {sdk.calls_per_clip:.2f} / 3",
                    s.calls_per_clip <= sdk.calls_per_clip / 3,
                )
            )
        if row.group == "batching":
            found.append(
                (
                    f"batching, progress {row.progress}: {s.requests_per_clip:.2f} requests/clip"
                    f" <= SDK {sdk.requests_per_clip:.2f} / 20",
                    s.requests_per_clip <= sdk.requests_per_clip / 20,
                )
            )
        if row.group == "webhooks" and "lost" not in row.schedule:
            found.append(
                (
                    f"webhooks: {s.calls_per_clip:.3f} getResponse/clip <= 1.5",
                    s.calls_per_clip <= 1.5,
                )
            )
    return found


def results(setup: Setup, rows: Sequence[Row]) -> dict[str, Any]:
    """The figures as JSON-ready data, for a benchmark's ``results.json``."""
    return {
        "model": setup.model,
        "clips": setup.clips,
        "seed": setup.seed,
        "in_flight": setup.in_flight,
        "batch_size": setup.batch_size,
        "settings": setup.settings.model_dump(),
        "rows": [
            {"schedule": r.schedule, "progress": r.progress, "group": r.group} | r.summary.as_dict()
            for r in rows
        ],
        "targets": [{"target": text, "met": met} for text, met in targets(rows)],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m reelflow_devtools.bench.polling", description=__doc__
    )
    add = parser.add_argument
    add("--model", default=Setup.model, choices=sorted(MODELS), help="the simulator's model")
    add("--clips", type=int, default=Setup.clips, help="latencies per sample (train and test)")
    add("--seed", type=int, default=Setup.seed, help="the training sample's seed (test: +1)")
    add("--in-flight", type=int, default=Setup.in_flight, help="batching: clips at once")
    add("--batch-size", type=int, default=Setup.batch_size, help="batching: tasks per request")
    add("--json", type=Path, default=None, help="also write the figures here")
    add(
        "--warm-ups",
        type=int,
        default=None,
        metavar="N",
        help="instead: N short warm-ups, each measured on 200 clips (see above)",
    )
    add("--warm-up-clips", type=int, default=100, help="with --warm-ups: clips per warm-up")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, *, out: Callable[[str], object] = print) -> None:
    args = parse_args(argv)
    setup = Setup(
        model=args.model,
        clips=args.clips,
        seed=args.seed,
        in_flight=args.in_flight,
        batch_size=args.batch_size,
    )
    if args.warm_ups is not None:
        if args.json is not None:
            raise SystemExit("bench.polling: --json writes the comparison, not --warm-ups")
        warmups = warmup_samples(setup, samples=args.warm_ups, warmup_clips=args.warm_up_clips)
        out(
            f"{setup.model}: {args.warm_ups} warm-ups of {args.warm_up_clips} clips,"
            " each measured on 200 clips (target: the SDK's p95 on them + 2 s)\n"
        )
        out(render_warmups(warmups))
        return
    rows = compare(setup)
    out(f"{setup.model}: {setup.clips} latencies to train on, {setup.clips} to test on\n")
    out(render(rows))
    out("")
    for text, met in targets(rows):
        out(f"{'met   ' if met else 'MISSED'}  {text}")
    if args.json is not None:
        args.json.write_text(json.dumps(results(setup, rows), indent=2))
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
