"""A notifier replica's queue is bound to the projects watched on it: one bind per project,
an unbind after the linger, in the order asked; what a broker failure left undone is redone
by the repair after the reconnect."""

from __future__ import annotations

import asyncio

from aio_pika.exceptions import ChannelInvalidStateError

from reelflow_notifier.bindings import ProjectBindings
from tests.waiting import eventually

EXCHANGE = "reelflow.events"


class BrokerQueue:
    """The broker's side of a queue's bindings: what it was asked, what holds; each call
    can be made to fail, or to wait until let go."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.keys: set[str] = set()
        self.failing = False
        self.gate: asyncio.Event | None = None

    # aio-pika's signatures, timeout included
    async def bind(self, exchange: str, routing_key: str, *, timeout: float) -> None:  # noqa: ASYNC109
        await self._call("bind", routing_key)
        self.keys.add(routing_key)

    async def unbind(self, exchange: str, routing_key: str, *, timeout: float) -> None:  # noqa: ASYNC109
        await self._call("unbind", routing_key)
        self.keys.discard(routing_key)

    async def _call(self, what: str, routing_key: str) -> None:
        assert routing_key.startswith("*.*.")
        self.calls.append((what, routing_key.removeprefix("*.*.")))
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise ChannelInvalidStateError("the broker is away")


def bindings(queue: BrokerQueue, *, linger_s: float = 60.0) -> tuple[ProjectBindings, list[str]]:
    unbound: list[str] = []
    made = ProjectBindings(
        queue,  # type: ignore[arg-type]
        EXCHANGE,
        on_unbound=unbound.append,
        linger_s=linger_s,
    )
    return made, unbound


async def test_a_first_watch_binds_and_a_watch_waits_for_its_bind() -> None:
    queue = BrokerQueue()
    queue.gate = asyncio.Event()
    made, _unbound = bindings(queue)

    made.want("p1")
    made.want("p1")  # still wanted: nothing more
    waiting = asyncio.create_task(made.bound("p1"))
    await eventually(lambda: queue.calls == [("bind", "p1")], "the bind asked for")
    assert not waiting.done()  # a snapshot read now could miss an event

    queue.gate.set()
    await asyncio.wait_for(waiting, 5)
    assert made.bound_projects() == {"p1"}
    assert queue.calls == [("bind", "p1")]


async def test_a_project_left_is_unbound_after_the_linger_unless_watched_again() -> None:
    queue = BrokerQueue()
    made, unbound = bindings(queue, linger_s=0.05)
    made.want("p1")
    made.want("p2")
    await made.bound("p1")
    await made.bound("p2")

    made.drop("p1")
    made.drop("p2")
    made.want("p2")  # back within the linger: still bound, no new bind
    await made.bound("p2")
    await eventually(lambda: unbound == ["p1"], "p1 unbound after the linger")

    assert made.bound_projects() == {"p2"}
    assert queue.calls == [("bind", "p1"), ("bind", "p2"), ("unbind", "p1")]


async def test_a_watch_during_an_unbind_binds_again_after_it() -> None:
    queue = BrokerQueue()
    made, unbound = bindings(queue, linger_s=0)
    made.want("p1")
    await made.bound("p1")
    queue.gate = asyncio.Event()
    made.drop("p1")
    await eventually(lambda: queue.calls[-1] == ("unbind", "p1"), "the unbind under way")

    made.want("p1")
    waiting = asyncio.create_task(made.bound("p1"))
    await asyncio.sleep(0)
    assert not waiting.done()
    queue.gate.set()
    await asyncio.wait_for(waiting, 5)

    assert queue.calls == [("bind", "p1"), ("unbind", "p1"), ("bind", "p1")]
    assert queue.keys == {"*.*.p1"}
    assert made.bound_projects() == {"p1"}
    assert unbound == ["p1"]


async def test_what_the_broker_failed_is_redone_by_the_repair() -> None:
    queue = BrokerQueue()
    made, unbound = bindings(queue, linger_s=0)
    made.want("stays")
    made.want("leaves")
    await made.bound("stays")
    await made.bound("leaves")

    queue.failing = True
    made.want("new")
    await made.bound("new")  # failed, and said so by returning: the socket gets its snapshot
    made.drop("leaves")
    await eventually(lambda: queue.calls[-1] == ("unbind", "leaves"), "the unbind tried")
    assert made.bound_projects() == {"stays", "leaves"}

    queue.failing = False
    await made.repair()

    assert made.bound_projects() == {"stays", "new"}
    assert queue.keys == {"*.*.stays", "*.*.new"}
    assert unbound == ["leaves"]


async def test_after_close_nothing_is_bound_or_unbound() -> None:
    queue = BrokerQueue()
    made, _unbound = bindings(queue, linger_s=0)
    made.want("p1")
    await made.bound("p1")

    made.close()
    made.drop("p1")
    made.want("p2")
    await made.bound("p2")
    await asyncio.sleep(0)

    assert queue.calls == [("bind", "p1")]
