"""A line a flood repeats (a key or tenant answered 429, a socket refused) is logged once per
period per name, the next line counting those it left out."""

from __future__ import annotations

from structlog.testing import capture_logs

from reelflow_common.sampledlog import EVERY_S, MAX_NAMES, SampledLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_is_one_line_per_period_and_name_counting_those_left_out() -> None:
    clock = Clock()
    sheds = SampledLog("request_shed", clock=clock)

    with capture_logs() as lines:
        for _ in range(50):
            sheds.emit("key:k1", limit="per_key", key_id="k1", path="/v1/projects")
        sheds.emit("tenant:t1", limit="per_tenant", tenant_id="t1")
        clock.now += EVERY_S
        sheds.emit("key:k1", limit="per_key", key_id="k1")

    assert [(line["event"], line["limit"], line["not_logged"]) for line in lines] == [
        ("request_shed", "per_key", 0),
        ("request_shed", "per_tenant", 0),
        ("request_shed", "per_key", 49),
    ]
    assert (lines[0]["log_level"], lines[0]["path"]) == ("info", "/v1/projects")


def test_a_warning_stays_a_warning() -> None:
    full = SampledLog("ws_connections_full", level="warning", clock=Clock())

    with capture_logs() as lines:
        full.emit("replica", cap=2)
        full.emit("replica", cap=2)

    assert [(line["event"], line["log_level"], line["cap"]) for line in lines] == [
        ("ws_connections_full", "warning", 2)
    ]


def test_the_names_remembered_are_bounded() -> None:
    sheds = SampledLog("request_shed", clock=Clock())

    with capture_logs() as lines:
        for n in range(5000):
            sheds.emit(f"key:{n}", limit="per_key", key_id=str(n))

    assert len(lines) == 5000  # each a name of its own: each logged
    assert len(sheds._last) <= MAX_NAMES
