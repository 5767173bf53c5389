"""A notifier replica's queue is bound to the projects watched on it: one bind per project,
an unbind after the linger, in the order asked; a bind or unbind the broker fails is tried
again until it holds, and what was read before a late bind is caught up."""

from __future__ import annotations

import asyncio

from aio_pika.exceptions import ChannelInvalidStateError

from reelflow_common.backoff import Backoff
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
        self.channel_open = True

    async def bind(self, exchange: str, routing_key: str) -> None:
        await self._call("bind", routing_key)
        self.keys.add(routing_key)

    async def unbind(self, exchange: str, routing_key: str) -> None:
        await self._call("unbind", routing_key)
        self.keys.discard(routing_key)

    async def _call(self, what: str, routing_key: str) -> None:
        assert routing_key.startswith("*.*.")
        self.calls.append((what, routing_key.removeprefix("*.*.")))
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise ChannelInvalidStateError("the broker is away")


class Told:
    """What the bindings told: projects bound late (to catch up), projects unbound."""

    def __init__(self) -> None:
        self.late: list[str] = []
        self.unbound: list[str] = []


def bindings(queue: BrokerQueue, *, linger_s: float = 60.0) -> tuple[ProjectBindings, Told]:
    told = Told()
    made = ProjectBindings(
        queue,  # type: ignore[arg-type]
        EXCHANGE,
        channel_open=lambda: queue.channel_open,
        on_bound_late=told.late.append,
        on_unbound=told.unbound.append,
        linger_s=linger_s,
        retry=Backoff(first_s=0.01, cap_s=0.01),
    )
    return made, told


async def test_a_first_watch_binds_and_a_watch_waits_for_its_bind() -> None:
    queue = BrokerQueue()
    queue.gate = asyncio.Event()
    made, _told = bindings(queue)

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
    made, told = bindings(queue, linger_s=0.05)
    made.want("p1")
    made.want("p2")
    await made.bound("p1")
    await made.bound("p2")

    made.drop("p1")
    made.drop("p2")
    made.want("p2")  # back within the linger: still bound, no new bind
    await made.bound("p2")
    await eventually(lambda: told.unbound == ["p1"], "p1 unbound after the linger")

    assert made.bound_projects() == {"p2"}
    assert queue.calls == [("bind", "p1"), ("bind", "p2"), ("unbind", "p1")]


async def test_a_watch_during_an_unbind_binds_again_after_it() -> None:
    queue = BrokerQueue()
    made, told = bindings(queue, linger_s=0)
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
    assert told.unbound == ["p1"]


async def test_watched_again_within_a_linger_during_an_earlier_unbind_it_is_bound_again() -> None:
    queue = BrokerQueue()
    made, _told = bindings(queue, linger_s=0)
    made.want("p1")
    await made.bound("p1")
    queue.gate = asyncio.Event()
    made.drop("p1")
    await eventually(lambda: queue.calls[-1] == ("unbind", "p1"), "the unbind under way")

    made.want("p1")  # a bind after the unbind
    made.drop("p1")  # a re-subscribe: unwatched, a new linger
    made.want("p1")  # and watched again within it, the unbind still under way
    queue.gate.set()

    expected = [("bind", "p1"), ("unbind", "p1"), ("bind", "p1")]
    await eventually(lambda: queue.calls == expected, "bound again after the unbind")
    await eventually(lambda: made.bound_projects() == {"p1"}, "the bind confirmed")
    assert queue.keys == {"*.*.p1"}


async def test_a_failed_bind_is_tried_again_until_it_holds_and_its_watchers_catch_up() -> None:
    queue = BrokerQueue()
    made, told = bindings(queue)
    queue.failing = True
    made.want("p1")
    await made.bound("p1")  # failed, and said so by returning: the socket gets its snapshot
    assert made.bound_projects() == set()
    assert told.late == []

    queue.failing = False
    await eventually(lambda: made.bound_projects() == {"p1"}, "bound at a later attempt")
    assert told.late == ["p1"]  # read before the bind held: its watchers catch up
    assert queue.keys == {"*.*.p1"}


async def test_while_the_connection_is_gone_a_watch_waits_for_nothing_and_catches_up_after() -> (
    None
):
    queue = BrokerQueue()
    queue.channel_open = False
    made, told = bindings(queue)

    made.want("p1")
    await asyncio.wait_for(made.bound("p1"), 5)  # at once: the socket gets its snapshot
    assert queue.calls == []  # nothing asked of a closed channel

    # Back, the queue restored: the reconnect's resume binds it; its watchers catch up.
    queue.channel_open = True
    await made.resume()
    assert made.bound_projects() == {"p1"}
    await eventually(lambda: told.late == ["p1"], "its watchers told to catch up")
    assert queue.calls == [("bind", "p1")]


async def test_a_failed_unbind_is_tried_again_unless_the_project_is_watched_again() -> None:
    queue = BrokerQueue()
    made, told = bindings(queue, linger_s=0)
    made.want("p1")
    made.want("p2")
    await made.bound("p1")
    await made.bound("p2")

    queue.failing = True
    made.drop("p1")
    made.drop("p2")
    await eventually(lambda: queue.calls.count(("unbind", "p1")) >= 2, "p1's unbind tried twice")
    made.want("p2")  # watched again: its unbind stops, and it is bound again
    queue.failing = False
    await made.bound("p2")

    await eventually(lambda: told.unbound == ["p1"], "p1 unbound at last")
    await eventually(lambda: made.bound_projects() == {"p2"}, "p2 bound")
    assert queue.keys == {"*.*.p2"}


async def test_a_call_that_failed_with_the_connection_waits_for_its_return() -> None:
    queue = BrokerQueue()
    queue.gate = asyncio.Event()
    made, told = bindings(queue)
    made.want("p1")
    await eventually(lambda: queue.calls == [("bind", "p1")], "the bind under way")

    queue.failing, queue.channel_open = True, False  # the connection goes
    queue.gate.set()
    await made.bound("p1")
    await asyncio.sleep(0.1)  # ten backoffs: none is tried on a timer
    assert queue.calls == [("bind", "p1")]

    # Back, the queue and its recorded bindings restored: the resume binds it.
    queue.failing, queue.channel_open = False, True
    await made.resume()
    assert made.bound_projects() == {"p1"}
    await eventually(lambda: told.late == ["p1"], "its watchers told to catch up")
    assert queue.calls == [("bind", "p1"), ("bind", "p1")]


async def test_a_watch_that_ends_before_its_bind_starts_is_waited_for_by_no_one() -> None:
    queue = BrokerQueue()
    made, _told = bindings(queue, linger_s=0)
    made.want("p1")
    await made.bound("p1")
    queue.gate = asyncio.Event()
    made.drop("p1")
    await eventually(lambda: queue.calls[-1] == ("unbind", "p1"), "the unbind under way")

    made.want("p1")  # its bind waits for the unbind
    waiting = asyncio.create_task(made.bound("p1"))
    await asyncio.sleep(0)  # the sender waits for it
    assert not waiting.done()
    made.drop("p1")  # and the watch ends before the bind starts
    await asyncio.wait_for(waiting, 2)  # the sender goes on (it would wait WAIT_S, 5 s)
    queue.gate.set()


async def test_after_close_nothing_is_bound() -> None:
    queue = BrokerQueue()
    made, _told = bindings(queue, linger_s=0)
    made.want("p1")
    await made.bound("p1")

    made.close()
    made.want("p2")
    await made.bound("p2")
    await asyncio.sleep(0)  # a bind task, were one made, would have asked by now

    assert queue.calls == [("bind", "p1")]
