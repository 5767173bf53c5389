"""The api's waiters by project: who is woken, and that none outlives its wait."""

from __future__ import annotations

from typing import Any, cast

import pytest
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import ChannelClosed
from aio_pika.tools import CallbackCollection

from reelflow_api.wakeups import Wakeups, subscribed
from reelflow_common.topology import Topology


def test_an_event_wakes_the_waiters_of_its_project_only() -> None:
    wakeups = Wakeups()
    with (
        wakeups.watching("p1") as first,
        wakeups.watching("p1") as second,
        wakeups.watching("p2") as other,
    ):
        assert wakeups.wake("p1") == 2
        assert wakeups.wake("p3") == 0

        assert [first.is_set(), second.is_set()] == [True, True]
        assert not other.is_set()


def test_a_waiter_is_forgotten_when_its_wait_ends() -> None:
    wakeups = Wakeups()
    with wakeups.watching("p1"):
        with wakeups.watching("p1"):
            assert wakeups.waiting() == 2
        assert wakeups.waiting() == 1
    assert wakeups.waiting() == 0
    assert wakeups.wake("p1") == 0


def test_waking_all_wakes_every_waiter() -> None:
    wakeups = Wakeups()
    with wakeups.watching("p1") as first, wakeups.watching("p2") as second:
        wakeups.wake_all()

        assert [first.is_set(), second.is_set()] == [True, True]


TOPOLOGY = Topology.named("t.")


class _Queue:
    def __init__(self, channel: _Channel, name: str) -> None:
        self.channel = channel
        self.name = name

    async def bind(self, exchange: str, key: str) -> None:
        self.channel.bound.append((self.name, key))

    async def consume(self, callback: Any, *, no_ack: bool) -> str:
        if self.channel.refuse_consume:
            raise ChannelClosed(406, "refused")
        return "ctag"

    async def cancel(self, tag: str) -> None:
        self.channel.cancelled.append(tag)


class _Channel:
    """The calls ``subscribed`` makes on a channel, remembered."""

    def __init__(self, *, refuse_consume: bool = False) -> None:
        self.refuse_consume = refuse_consume
        self.declared: list[str] = []
        self.bound: list[tuple[str, str]] = []
        self.deleted: list[str] = []
        self.cancelled: list[str] = []

    async def declare_queue(self, name: str, **_options: Any) -> _Queue:
        self.declared.append(name)
        return _Queue(self, name)

    async def queue_delete(self, name: str) -> None:
        self.deleted.append(name)


class _Connection:
    def __init__(self) -> None:
        self.reconnect_callbacks: CallbackCollection[Any, []] = CallbackCollection(self)


async def test_a_reconnect_of_the_connection_wakes_every_waiter_until_unsubscribed() -> None:
    wakeups, connection, channel = Wakeups(), _Connection(), _Channel()
    robust = cast("AbstractRobustConnection", connection)
    with wakeups.watching("p1") as first, wakeups.watching("p2") as second:
        async with subscribed(
            robust,
            cast("AbstractChannel", channel),
            Topology.named("t."),
            wakeups,
            queue_name="q.1",
        ) as name:
            assert name == "q.1"
            assert len(connection.reconnect_callbacks) == 1
            await connection.reconnect_callbacks()  # what aio-pika runs once reconnected
            assert [first.is_set(), second.is_set()] == [True, True]
        assert len(connection.reconnect_callbacks) == 0
        assert channel.cancelled == ["ctag"]


async def test_a_subscription_that_fails_half_way_leaves_no_queue_and_retries_its_name() -> None:
    wakeups, connection, channel = Wakeups(), _Connection(), _Channel(refuse_consume=True)
    robust = cast("AbstractRobustConnection", connection)
    for _ in range(2):
        with pytest.raises(ChannelClosed):
            async with subscribed(
                robust,
                cast("AbstractChannel", channel),
                Topology.named("t."),
                wakeups,
                queue_name="q.1",
            ):
                pass
    assert channel.declared == ["q.1", "q.1"]  # the same name each try
    assert channel.deleted == ["q.1", "q.1"]  # and never left bound behind
    assert len(connection.reconnect_callbacks) == 0
