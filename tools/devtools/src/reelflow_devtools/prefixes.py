"""Queue prefixes of ``make run`` stacks sharing one broker: which are in use, which are free.

Two stacks with one ``REELFLOW_AMQP_PREFIX`` on one broker share their work
queues: one's submitter takes the other's ``SubmitClip`` messages, submits them
to its own Runware (simulator) and cannot record them in its own database, so
the other's clips stay queued for good. So a launcher holds its prefix's lock
(:class:`PrefixLock`, an exclusive queue on the broker) from before its check
until its stack has stopped: of two started at the same moment, the broker
gives the lock to one and refuses the other. A prefix is also in use while one
of its work queues has a consumer (a stack not started by a launcher, the
tests'): a passive declare of the queue says how many.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from aio_pika.abc import AbstractConnection

from reelflow_common.broker.stacks import consumers, stack_lock_held, take_stack_lock
from reelflow_common.redact import url_location
from reelflow_common.topology import WORK_QUEUES, Topology
from reelflow_devtools.connections import amqp

#: how many numbered prefixes of a checkout :func:`free_prefix` tries (``name-2.`` ...)
_NUMBERED = 50


@dataclass(frozen=True)
class InUse:
    """Who uses a prefix's queues now: nobody when false."""

    #: a launcher holds the prefix's lock: its stack runs, or is starting
    locked: bool = False
    #: its work queues that have consumers, with how many each
    consumers: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.locked or bool(self.consumers)


async def prefix_consumers(amqp_url: str, prefix: str) -> dict[str, int]:
    """The work queues of ``prefix`` that have consumers now, with how many each."""
    async with amqp(amqp_url) as connection:
        return await _work_queue_consumers(connection, prefix)


async def _work_queue_consumers(connection: AbstractConnection, prefix: str) -> dict[str, int]:
    topology = Topology.named(prefix)
    return await consumers(connection, [topology.queue(name) for name in WORK_QUEUES])


async def _in_use(amqp_url: str, prefix: str) -> InUse:
    async with amqp(amqp_url) as connection:
        locked = await stack_lock_held(connection, Topology.named(prefix))
        return InUse(locked=locked, consumers=await _work_queue_consumers(connection, prefix))


def in_use(amqp_url: str, prefix: str) -> InUse:
    """Who uses ``prefix``'s queues now, from code that runs no event loop (the launcher's)."""
    return asyncio.run(_in_use(amqp_url, prefix))


def _unheard(_why: BaseException | None) -> None:
    pass


class PrefixLock:
    """A prefix's lock, held on a connection of its own until :meth:`release` or this
    process's end (a thread runs that connection's event loop, which answers the broker's
    heartbeats). ``on_lost`` hears of the connection closing under it (a broker restarted):
    the lock is gone then, and a second stack on the prefix would not be refused."""

    def __init__(
        self,
        amqp_url: str,
        prefix: str,
        *,
        on_lost: Callable[[BaseException | None], None] = _unheard,
    ) -> None:
        self.amqp_url = amqp_url
        self.topology = Topology.named(prefix)
        self._on_lost = on_lost
        self._taken: Future[bool] = Future()
        self._released = threading.Event()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._hold()), name="prefix-lock", daemon=True
        )

    @property
    def name(self) -> str:
        """The lock's queue on the broker."""
        return self.topology.stack_lock

    def acquire(self) -> bool:
        """Take the lock; False when another connection holds it. Raises what connecting raised."""
        self._thread.start()
        return self._taken.result()

    def release(self) -> None:
        """Give the lock back: its connection closes (and the broker deletes its queue)."""
        self._released.set()
        if self._thread.ident is not None:
            self._thread.join()

    async def _hold(self) -> None:
        try:
            async with amqp(self.amqp_url) as connection:
                taken = await take_stack_lock(await connection.channel(), self.topology)
                self._taken.set_result(taken)
                if taken:
                    await self._until_released(connection)
        except BaseException as exc:
            if self._taken.done():
                raise
            self._taken.set_exception(exc)  # raised by acquire(), in the launcher's thread

    async def _until_released(self, connection: AbstractConnection) -> None:
        lost = asyncio.Event()
        why: list[BaseException | None] = []

        def closed(_connection: object, exc: BaseException | None = None) -> None:
            why.append(exc)
            lost.set()

        connection.close_callbacks.add(closed)
        released = asyncio.ensure_future(asyncio.to_thread(self._released.wait))
        dropped = asyncio.ensure_future(lost.wait())
        await asyncio.wait([released, dropped], return_when=asyncio.FIRST_COMPLETED)
        connection.close_callbacks.discard(closed)
        if not self._released.is_set():
            self._on_lost(why[0] if why else None)
        await released  # the thread that waits for release() ends with it
        dropped.cancel()


def refusal(prefix: str, amqp_url: str, used: InUse) -> str:
    """Why a stack does not start on ``prefix``: ``used``, who uses its queues."""
    broker = url_location(amqp_url)
    if used.locked and not used.consumers:
        return (
            f"another reelflow runs on the queues of REELFLOW_AMQP_PREFIX={prefix!r} on the"
            f" broker at {broker}: its launcher holds {Topology.named(prefix).stack_lock}."
            " A second stack with the same prefix would take its messages (and lose them)."
            " Stop that one"
        )
    queues = ", ".join(
        f"{name} ({count} consumer{'s' * (count != 1)})" for name, count in used.consumers.items()
    )
    return (
        f"another reelflow consumes the queues of REELFLOW_AMQP_PREFIX={prefix!r} on the broker"
        f" at {broker}: {queues}. A second stack with the same prefix would"
        " take its messages (and lose them). Stop that one"
    )


def checkout_prefixes(checkout: Path) -> Iterator[str]:
    """Prefixes named after the checkout's directory: ``reelflow-wt.``, ``reelflow-wt-2.``, ..."""
    base = re.sub(r"[^a-z0-9]+", "-", checkout.name.lower()).strip("-") or "reelflow"
    yield f"{base}."
    for number in range(2, _NUMBERED + 1):
        yield f"{base}-{number}."


def free_prefix(checkout: Path, taken: Callable[[str], bool]) -> str:
    """The first of :func:`checkout_prefixes` that ``taken`` does not refuse (else the last)."""
    prefix = ""
    for prefix in checkout_prefixes(checkout):
        if not taken(prefix):
            return prefix
    return prefix
