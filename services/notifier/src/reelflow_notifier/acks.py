"""Acknowledgements of the fan-out's deliveries, sent together: one ``multiple`` ack a batch.

Each acknowledgement is a frame, one write to the socket. At the few hundred
events a second of a busy pipeline they arrive one by one, and acknowledging
each was the largest single cost of an event here (~60 of ~420 µs of CPU,
measured on a 2-core VM); acknowledging a pass of the event loop's worth
together saved nothing, as a pass rarely holds more than one. So the
acknowledgement waits: it goes once half the channel's prefetch is waiting
(the broker never stops delivering for want of it) or :data:`ACK_DELAY_S`
after the first one waiting, whichever comes first.

That is safe only because every delivery on the channel is handled at once,
in the order it came (no await before :meth:`Acks.routed`): when one has been
handled, so has every earlier one, and acknowledging it with ``multiple``
settles them all. An acknowledgement of the fan-out queue protects no data
(the queue dies with the replica; the events' record is the store's event
log): it only keeps the prefetch bounding what this process holds.
"""

from __future__ import annotations

import asyncio
import contextlib

from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

#: the longest a handled delivery waits for its acknowledgement
ACK_DELAY_S = 0.05


class Acks:
    """The handled, not yet acknowledged deliveries of one channel with ``prefetch``."""

    def __init__(self, prefetch: int) -> None:
        self._batch = max(1, prefetch // 2)
        self._latest: AbstractIncomingMessage | None = None
        self.waiting = 0
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def routed(self, incoming: AbstractIncomingMessage) -> None:
        """``incoming``, and every delivery before it on its channel, has been handled."""
        self._latest = incoming
        self.waiting += 1
        if self.waiting >= self._batch:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(ACK_DELAY_S, self._flush_later)

    async def flush(self) -> None:
        """Acknowledge every delivery handled so far."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        latest, self._latest, self.waiting = self._latest, None, 0
        if latest is None:
            return
        # Through the delivery's own channel: after a reconnect, tags start again on a
        # new one, and a channel lost meanwhile dropped the queue with it (exclusive).
        with contextlib.suppress(AMQPError, ChannelInvalidStateError, ConnectionError):
            await latest.ack(multiple=True)

    async def close(self) -> None:
        """Acknowledge what is waiting, and wait for acknowledgements under way."""
        await self.flush()
        if self._sending:
            await asyncio.wait(set(self._sending))

    def _flush_later(self) -> None:
        self._timer = None
        task = asyncio.create_task(self.flush(), name="fanout-acks")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
