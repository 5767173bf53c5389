"""Acknowledgements of the fan-out's deliveries, sent together: one ``multiple`` ack a batch.

Each acknowledgement is a frame, one write to the socket. At the few hundred
events a second of a busy pipeline they arrive one by one, and acknowledging
each was the largest single cost of an event here (~60 of ~420 µs of CPU,
measured on a 2-core VM); acknowledging a pass of the event loop's worth
together saved nothing, as a pass rarely holds more than one. So the
acknowledgement waits: it goes once half the channel's prefetch is waiting
(the broker never stops delivering for want of it) or :data:`ACK_DELAY_S`
after the first one waiting, whichever comes first.

That is safe only because every delivery on the channel is handled in the
order it came, and :meth:`Acks.routed` is told of each in that order, once
it has been routed or held (by :class:`reelflow_notifier.fanout.Router`): when one
has been handled, so has every earlier one, and acknowledging it with
``multiple`` settles them all. One task sends them, one at a time, always of
the latest delivery handled, so the tags go out in order.
An acknowledgement of the fan-out queue protects no data (the queue dies
with the replica; the events' record is the store's event log): it only
keeps the prefetch bounding what this process holds (besides the events the
router holds back for their turn, which :mod:`reelflow_notifier.reorder` bounds).
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
        #: the latest delivery due an acknowledgement that the sender has not taken yet
        self._due: AbstractIncomingMessage | None = None
        self._sender: asyncio.Task[None] | None = None

    def routed(self, incoming: AbstractIncomingMessage) -> None:
        """``incoming``, and every delivery before it on its channel, has been handled.

        Nothing is awaited: an acknowledgement that is due is sent by the sender task.
        """
        self._latest = incoming
        self.waiting += 1
        if self.waiting >= self._batch:
            self._send()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(ACK_DELAY_S, self._send)

    async def close(self) -> None:
        """Acknowledge what is waiting, and wait for the acknowledgements under way."""
        self._send()
        if self._sender is not None:
            await asyncio.wait({self._sender})

    def _send(self) -> None:
        """Hand every delivery handled so far to the sender task."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        latest, self._latest, self.waiting = self._latest, None, 0
        if latest is None:
            return
        self._due = latest
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_due(), name="fanout-acks")

    async def _send_due(self) -> None:
        """One acknowledgement at a time, each of the latest delivery due: tags go out in
        order (two tasks waiting to write could be let in out of order)."""
        try:
            while self._due is not None:
                latest, self._due = self._due, None
                # Through the delivery's own channel: after a reconnect, tags start again
                # on a new one, and a channel lost meanwhile dropped the queue with it.
                with contextlib.suppress(AMQPError, ChannelInvalidStateError, ConnectionError):
                    await latest.ack(multiple=True)
        finally:
            self._sender = None
