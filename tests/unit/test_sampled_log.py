"""A key or tenant answered 429 is logged, by its key's id, once per period however many are."""

from __future__ import annotations

from structlog.testing import capture_logs

from reelflow_api.middleware import SHED_LOG_EVERY_S, _ShedLog

SCOPE = {"type": "http", "method": "POST", "path": "/v1/projects"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_of_sheds_is_one_line_per_period_counting_those_left_out() -> None:
    clock = Clock()
    sheds = _ShedLog(clock=clock)

    with capture_logs() as lines:
        for _ in range(50):
            sheds.shed("key:k1", SCOPE, limit="per_key", key_id="k1")
        sheds.shed("tenant:t1", SCOPE, limit="per_tenant", tenant_id="t1")
        clock.now += SHED_LOG_EVERY_S
        sheds.shed("key:k1", SCOPE, limit="per_key", key_id="k1")

    assert [(line["event"], line["limit"], line["not_logged"]) for line in lines] == [
        ("request_shed", "per_key", 0),
        ("request_shed", "per_tenant", 0),
        ("request_shed", "per_key", 49),
    ]
    assert (lines[0]["log_level"], lines[0]["method"], lines[0]["path"]) == (
        "info",
        "POST",
        "/v1/projects",
    )


def test_the_names_remembered_are_bounded() -> None:
    clock = Clock()
    sheds = _ShedLog(clock=clock)

    with capture_logs() as lines:
        for n in range(5000):
            sheds.shed(f"key:{n}", SCOPE, limit="per_key", key_id=str(n))

    assert len(lines) == 5000  # each a name of its own: each logged
    assert len(sheds._last) <= 1024
