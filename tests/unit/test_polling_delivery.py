"""A check's delay delivered as planned: the longest rung not above it, then hops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reelflow_common.messages import CheckClip, Message
from reelflow_common.polling.delivery import hop_s, not_yet_due_s, send_check
from reelflow_common.settings import TopologySettings
from reelflow_common.topology import CHECK_CLIP, Topology

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TOPOLOGY = Topology.from_settings(TopologySettings.model_construct())  # 1 s x1.35 to 300 s
LADDER = TOPOLOGY.backoffs[CHECK_CLIP]
RUNGS_S = [ms / 1000 for ms in LADDER.rungs_ms()]


class Wire:
    """A publisher that keeps what it was asked to send."""

    topology = TOPOLOGY

    def __init__(self) -> None:
        self.sent: list[tuple[str, Message, float | None]] = []

    async def send(
        self, work_queue: str, message: Message, *, delay_s: float | None = None
    ) -> None:
        self.sent.append((work_queue, message, delay_s))


def check() -> CheckClip:
    return CheckClip(
        project_id="p",
        scene_index=0,
        task_uuid="t",
        token="k",
        lease_until=T0 + timedelta(seconds=600),
        submitted_at=T0,
        watched_since=T0,
        model="google:3@3",
    )


async def deliver(delay_s: float) -> tuple[float, int]:
    """Follow one check through its hops, each taken exactly at its TTL: (arrival, hops)."""
    wire, now = Wire(), T0
    await send_check(wire, check(), delay_s=delay_s, now=now)  # type: ignore[arg-type]
    hops = 0
    while True:
        _, message, ttl = wire.sent.pop()
        assert isinstance(message, CheckClip)
        assert ttl is None or ttl in RUNGS_S
        now += timedelta(seconds=ttl or 0.0)
        wait_s = not_yet_due_s(wire, message, now)  # type: ignore[arg-type]
        if wait_s is None:
            return (now - T0).total_seconds(), hops
        hops += 1
        await send_check(wire, message, delay_s=wait_s, now=now)  # type: ignore[arg-type]


@pytest.mark.parametrize("delay_s", [0.3, 0.8, 1.0, 2.0, 7.7, 44.2, 60.0, 299.0, 1000.0])
async def test_a_check_comes_within_half_the_shortest_rung_of_its_delay(delay_s: float) -> None:
    arrived_s, hops = await deliver(delay_s)

    assert abs(arrived_s - min(delay_s, LADDER.cap_s)) <= LADDER.first_s / 2 + 1e-6
    assert hops <= 4


async def test_a_delay_on_a_rung_goes_straight_through_it() -> None:
    wire = Wire()
    await send_check(wire, check(), delay_s=RUNGS_S[10], now=T0)  # type: ignore[arg-type]

    [(queue, message, ttl)] = wire.sent
    assert (queue, ttl) == (CHECK_CLIP, RUNGS_S[10])
    assert isinstance(message, CheckClip)
    assert message.due_at is None


async def test_a_delay_between_rungs_never_waits_past_it_and_says_when_it_is_due() -> None:
    wire = Wire()
    await send_check(wire, check(), delay_s=44.2, now=T0)  # type: ignore[arg-type]

    [(_, message, ttl)] = wire.sent
    assert ttl == max(r for r in RUNGS_S if r <= 44.2)
    assert isinstance(message, CheckClip)
    assert message.due_at == T0 + timedelta(seconds=44.2)


def test_a_check_without_a_due_time_is_made_when_it_comes() -> None:
    assert not_yet_due_s(Wire(), check(), T0) is None  # type: ignore[arg-type]


def test_no_hop_for_less_than_half_the_shortest_rung() -> None:
    assert hop_s(LADDER, LADDER.first_s / 2) is None
    assert hop_s(LADDER, LADDER.first_s * 0.6) == LADDER.first_s
