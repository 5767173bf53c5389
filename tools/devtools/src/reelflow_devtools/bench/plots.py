"""The benchmark's plots, as PNG files next to ``results.json``. No network I/O.

- ``polling.png``: p95 (and p50) detection delay against getResponse calls per clip,
  one point per schedule, the live run among them;
- ``throughput.png``: clips per second against project size, reelflow beside the
  raw ceiling and the task-queue baseline measured in the same rounds (each line
  through its own median round of each size, a bar over the range of the rounds;
  the reported share and multiple are of pairs of rounds, in the report).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in a test

import matplotlib.pyplot as plt

#: a delay of 0 (a webhook on time) on a log axis
FLOOR_S = 0.05


def plot_polling(polling: dict[str, Any], path: Path) -> Path:
    """Detection delay against calls per clip (HTTP requests for batching), one per schedule."""
    figure, axes = plt.subplots(figsize=(12, 6))
    points: list[tuple[str, float, float, float]] = []
    for row in polling["exact"]["rows"]:
        if "lost" in row["schedule"]:
            continue  # the safety net alone: far off the scale, in the table
        label = row["schedule"]
        if row["progress"] not in ("-", "ignored"):
            label += f" [progress {row['progress']}]"
        calls = row["calls_per_clip"]
        if row["group"] == "batching":
            label, calls = label + ": HTTP requests", row["requests_per_clip"]
        points.append((label, calls, row["p50_delay_s"], row["p95_delay_s"]))
    colours = [plt.get_cmap("tab20")(i) for i in range(20)]
    for index, (label, calls, p50, p95) in enumerate(points):
        colour = colours[index % len(colours)]
        axes.scatter([calls], [max(p95, FLOOR_S)], color=colour, marker="o", label=label)
        axes.scatter([calls], [max(p50, FLOOR_S)], color=colour, marker="x")
        axes.plot([calls, calls], [max(p50, FLOOR_S), max(p95, FLOOR_S)], color=colour, lw=0.8)
    live = polling.get("live")
    if live:
        axes.scatter(
            [live["calls_per_clip"]],
            [max(live["p95_delay_s"], FLOOR_S)],
            color="black",
            marker="*",
            s=160,
            label="reelflow live: the poller as it runs",
            zorder=3,
        )
        axes.scatter(
            [live["calls_per_clip"]],
            [max(live["p50_delay_s"], FLOOR_S)],
            color="black",
            marker="x",
            zorder=3,
        )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("getResponse calls per clip (batching: HTTP requests per clip)")
    axes.set_ylabel(f"detection delay, simulated s (o / * p95, x p50; 0 drawn at {FLOOR_S})")
    axes.set_title(f"Polling schedules on the same completion times ({polling['model']})")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")  # the legend sits outside
    plt.close(figure)
    return path


def plot_throughput(
    throughput: list[dict[str, Any]], task_queue: list[dict[str, Any]], path: Path
) -> Path:
    """Clips per second against scenes per project: each median round, the rounds' range."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    sizes = [run["scenes_per_project"] for run in throughput]
    reelflow = [
        (run["scenes_per_project"], run["clips_per_s"] or 0, _rounds(run, "clips_per_s"))
        for run in throughput
    ]
    _series(axes, reelflow, "o-", "reelflow")
    ceilings = [
        (run["scenes_per_project"], _middle(rounds), rounds)
        for run in throughput
        if (rounds := _rounds(run, "ceiling_clips_per_s") or _ceiling(run))
    ]
    _series(axes, ceilings, "s--", "raw ceiling (same DB and broker)")
    baseline = [
        (
            run["scenes_per_project"],
            run["clips_per_s"] or 0,
            [value for value in run.get("rounds_clips_per_s", []) if value is not None],
        )
        for run in task_queue
    ]
    _series(axes, baseline, "^:", "task-queue baseline (same rounds)")
    axes.set_xscale("log")
    axes.set_xticks(sizes, [str(size) for size in sizes])
    axes.set_xlabel("scenes per project")
    axes.set_ylabel("clips per second (zero-latency provider)")
    axes.set_title(
        "each line through its own median rounds; bars: the range of the rounds", fontsize=9
    )
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")  # the legend sits outside
    plt.close(figure)
    return path


def _ceiling(run: dict[str, Any]) -> list[float]:
    """The ceiling's clips/s of a run measured once; [] without a ceiling."""
    value = (run.get("ceiling") or {}).get("clips_per_s")
    return [] if value is None else [value]


def _middle(values: list[float]) -> float:
    """The median of ``values`` (of an even count, the lower middle one)."""
    return sorted(values)[(len(values) - 1) // 2]


def _rounds(run: dict[str, Any], name: str) -> list[float]:
    """One figure of every round of a size (``bench.rounds``); [] for a single run."""
    return [line[name] for line in run.get("rounds", []) if line.get(name) is not None]


def _series(
    axes: Any, points: list[tuple[int, float, list[float]]], style: str, label: str
) -> None:
    """A line through the median rounds, and a bar from each size's slowest round to its fastest."""
    if not points:
        return
    line = axes.plot([size for size, _, _ in points], [value for _, value, _ in points], style)[0]
    line.set_label(label)
    for size, _value, rounds in points:
        if len(rounds) > 1:
            axes.vlines(size, min(rounds), max(rounds), color=line.get_color(), lw=2, alpha=0.5)


def write_plots(results: dict[str, Any], folder: Path) -> list[Path]:
    """Every plot the results have data for; the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    if results.get("polling"):
        written.append(plot_polling(results["polling"], folder / "polling.png"))
    if results.get("throughput"):
        written.append(
            plot_throughput(
                results["throughput"], results.get("task_queue", []), folder / "throughput.png"
            )
        )
    return written
