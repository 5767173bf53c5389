"""A check's delay delivered as planned: the longest rung not above it, then hops; checks
made together travel in one message."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from reelflow_common.broker import PublishError
from reelflow_common.messages import CheckClip, CheckClips, Message
from reelflow_common.polling.delivery import CheckBundles, hop_s, not_yet_due_s, send_check
from reelflow_common.settings import TopologySettings
from reelflow_common.topology import CHECK_CLIP, Topology

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TOPOLOGY = Topology.from_settings(TopologySettings.model_construct())  # 1 s x1.35 to 300 s
LADDER = TOPOLOGY.backoffs[CHECK_CLIP]
RUNGS_S = [ms / 1000 for ms in LADDER.rungs_ms()]


class Wire:
    """A publisher that keeps what it was asked to send."""

    topology = TOPOLOGY

    def __init__(self, *, refuse: bool = False) -> None:
        self.sent: list[tuple[str, Message, float | None]] = []
        self._refuse = refuse

    async def send(
        self, work_queue: str, message: Message, *, delay_s: float | None = None
    ) -> None:
        await asyncio.sleep(0)  # a confirm takes a while: the broker answers later
        if self._refuse:
            raise PublishError("refused")
        self.sent.append((work_queue, message, delay_s))


def check(task_uuid: str = "t") -> CheckClip:
    return CheckClip(
        project_id="p",
        scene_index=0,
        task_uuid=task_uuid,
        token="k",
        lease_until=T0 + timedelta(seconds=600),
        submitted_at=T0,
        watched_since=T0,
        model="google:3@3",
    )


def checks_in(message: Message) -> list[CheckClip]:
    """The checks one message carries."""
    if isinstance(message, CheckClips):
        return message.checks
    assert isinstance(message, CheckClip)
    return [message]


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


async def test_a_late_follows_check_waits_past_the_top_rung_through_hops() -> None:
    """No check waits longer than the ladder's top rung, but a late follow's (a task followed
    on after its clip timed out), whose checks are up to half an hour apart."""
    wire, now = Wire(), T0
    late = check().model_copy(update={"follow_until": T0 + timedelta(days=1)})
    await send_check(wire, late, delay_s=1800.0, now=now)  # type: ignore[arg-type]
    hops = 0
    while True:
        _, message, ttl = wire.sent.pop()
        assert isinstance(message, CheckClip)
        assert ttl == LADDER.cap_s
        now += timedelta(seconds=ttl)
        wait_s = not_yet_due_s(wire, message, now)  # type: ignore[arg-type]
        if wait_s is None:
            break
        hops += 1
        await send_check(wire, message, delay_s=wait_s, now=now)  # type: ignore[arg-type]

    assert ((now - T0).total_seconds(), hops) == (1800.0, 5)


def test_a_check_without_a_due_time_is_made_when_it_comes() -> None:
    assert not_yet_due_s(Wire(), check(), T0) is None  # type: ignore[arg-type]


def test_no_hop_for_less_than_half_the_shortest_rung() -> None:
    assert hop_s(LADDER, LADDER.first_s / 2) is None
    assert hop_s(LADDER, LADDER.first_s * 0.6) == LADDER.first_s


async def test_checks_sent_together_to_one_wait_queue_go_in_one_message() -> None:
    wire = Wire()
    bundles = CheckBundles(wire)  # type: ignore[arg-type]

    await asyncio.gather(
        *(bundles.send(check(f"t{i}"), delay_s=RUNGS_S[3], now=T0) for i in range(5)),
        bundles.send(check("later"), delay_s=RUNGS_S[6], now=T0),
    )

    by_ttl: dict[float | None, list[list[str]]] = {}
    for queue, message, ttl in wire.sent:
        assert queue == CHECK_CLIP
        checks = checks_in(message)
        assert all(c.due_at is None for c in checks)
        by_ttl.setdefault(ttl, []).append([c.task_uuid for c in checks])
    assert by_ttl == {RUNGS_S[3]: [["t0", "t1", "t2", "t3", "t4"]], RUNGS_S[6]: [["later"]]}


async def test_a_late_follows_check_goes_alone_beside_a_bundle_for_its_wait_queue() -> None:
    """A poller of the release before refuses a late check: in a bundle, it would take the
    other chains' checks to the dead letters with it while the pollers roll."""
    wire = Wire()
    bundles = CheckBundles(wire)  # type: ignore[arg-type]
    late = check("late").model_copy(update={"follow_until": T0 + timedelta(days=1)})

    await asyncio.gather(
        bundles.send(check("t0"), delay_s=LADDER.cap_s, now=T0),
        bundles.send(late, delay_s=LADDER.cap_s, now=T0),
        bundles.send(check("t1"), delay_s=LADDER.cap_s, now=T0),
    )

    sent = sorted(([c.task_uuid for c in checks_in(m)], ttl) for _, m, ttl in wire.sent)
    assert sent == [(["late"], LADDER.cap_s), (["t0", "t1"], LADDER.cap_s)]
    (alone,) = [m for _, m, _ in wire.sent if isinstance(m, CheckClip)]
    assert alone.follow_until == late.follow_until


async def test_checks_that_come_while_a_bundle_is_out_go_together_in_the_next() -> None:
    wire = Wire()
    bundles = CheckBundles(wire, linger_s=0.0)  # type: ignore[arg-type]
    first = asyncio.create_task(bundles.send(check("first"), delay_s=0.0, now=T0))
    await asyncio.sleep(0)  # its message is out, unconfirmed

    await asyncio.gather(*(bundles.send(check(f"t{i}"), delay_s=0.0, now=T0) for i in range(3)))
    await first

    assert [[c.task_uuid for c in checks_in(m)] for _, m, _ in wire.sent] == [
        ["first"],
        ["t0", "t1", "t2"],
    ]


async def test_a_bundle_holds_at_most_max_checks_and_each_keeps_its_due_time() -> None:
    wire = Wire()
    bundles = CheckBundles(wire, max_checks=2)  # type: ignore[arg-type]

    await asyncio.gather(*(bundles.send(check(f"t{i}"), delay_s=44.2, now=T0) for i in range(5)))

    sizes = [len(checks_in(m)) for _, m, _ in wire.sent]
    assert sizes == [2, 2, 1]
    for _, message, ttl in wire.sent:
        assert ttl == max(r for r in RUNGS_S if r <= 44.2)
        for sent in checks_in(message):
            assert sent.due_at == T0 + timedelta(seconds=44.2)


async def test_every_check_of_a_refused_bundle_is_told() -> None:
    bundles = CheckBundles(Wire(refuse=True))  # type: ignore[arg-type]

    outcomes = await asyncio.gather(
        *(bundles.send(check(f"t{i}"), delay_s=0.0, now=T0) for i in range(3)),
        return_exceptions=True,
    )

    assert [type(outcome) for outcome in outcomes] == [PublishError] * 3
    assert len({id(outcome) for outcome in outcomes}) == 3  # each caller its own


async def test_a_check_that_comes_while_the_first_lingers_goes_with_it() -> None:
    wire = Wire()
    bundles = CheckBundles(wire, linger_s=0.5)  # type: ignore[arg-type]
    first = asyncio.create_task(bundles.send(check("first"), delay_s=0.0, now=T0))
    await asyncio.sleep(0)  # its message waits for company

    await bundles.send(check("second"), delay_s=0.0, now=T0)
    await first

    assert [[c.task_uuid for c in checks_in(m)] for _, m, _ in wire.sent] == [["first", "second"]]
