"""The polling comparison driver: the simulator's latencies, every schedule, the targets."""

from __future__ import annotations

import statistics

from reelflow_devtools.bench.polling import Setup, compare, draw_latencies, main, render, targets


def test_latencies_follow_the_simulators_model() -> None:
    latencies = draw_latencies("google:3@3", 2000, seed=5)

    assert min(latencies) >= 20.0  # the model's floor
    assert 80.0 < statistics.median(latencies) < 100.0  # its median is 90 s
    assert draw_latencies("google:3@3", 10, seed=5) == latencies[:10]


def test_every_schedule_is_compared_on_the_same_sample() -> None:
    rows = compare(Setup(clips=300, in_flight=100))

    names = [row.schedule for row in rows]
    assert names[0].startswith("Runware SDK")
    assert any(name.startswith("seed") for name in names)
    assert any("old ladder" in name for name in names)
    assert {row.group for row in rows} == {"polling", "batching", "webhooks"}
    assert all(row.summary.unseen == 0 for row in rows)
    assert all(row.summary.clips == 300 for row in rows if row.group != "batching")
    # Batching: the sample cycled until 100 clips in flight is a steady state.
    assert all(row.summary.clips == 400 for row in rows if row.group == "batching")
    table = render(rows)
    assert table.count("\n") == len(rows) + 1
    assert len(targets(rows)) == 7


def test_the_command_prints_the_table_and_the_targets() -> None:
    printed: list[str] = []

    main(["--clips", "200", "--in-flight", "50"], out=printed.append)

    text = "\n".join(printed)
    assert "| Runware SDK" in text
    assert "getResponse/clip <= 1.5" in text
