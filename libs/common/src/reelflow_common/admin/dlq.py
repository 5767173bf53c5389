"""Dead-letter queues as an operator sees them: which ones, and what is in them.

A peek takes messages with ``broker.dlq.taken_dead_letters`` (as ``requeue`` takes
them) and returns each at once, so they stay in the DLQ. Depths and requeueing are
``reelflow_common.broker.dlq``'s, the same functions the workers use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from reelflow_common.broker.dlq import taken_dead_letters
from reelflow_common.topology import HEADER_FAILURES, WORK_QUEUES, Topology

#: bytes of a message body shown by a peek
BODY_SHOWN = 300


@dataclass(frozen=True)
class Peeked:
    message_id: str | None
    type: str | None
    #: why and from where the broker dead-lettered it, from ``x-death``
    reason: str
    body: str


def work_queues(topology: Topology, queue: str | None) -> tuple[str, ...]:
    """The work queues a command is about: all of them, or the one ``queue`` names.

    ``queue`` may be a work queue's name or its DLQ's, with the deployment's prefix
    (as ``dlq list`` prints them) or without (as the ``reelflow_dead_letters`` gauge
    and its alert name them).
    """
    if queue is None:
        return WORK_QUEUES
    for work_queue in WORK_QUEUES:
        names = (work_queue, f"{work_queue}.dlq")
        if queue in (*names, *map(topology.name, names)):
            return (work_queue,)
    raise ValueError(
        f"unknown queue {queue!r}; one of: {', '.join(WORK_QUEUES)}"
        f" (or their DLQs as dlq list prints them:"
        f" {', '.join(map(topology.dead_letter_queue, WORK_QUEUES))})"
    )


async def peek(
    channel: AbstractChannel, topology: Topology, work_queue: str, limit: int
) -> list[Peeked]:
    """Up to ``limit`` messages of the DLQ, each returned to it right away."""
    seen: list[Peeked] = []
    async with taken_dead_letters(channel, topology, work_queue) as taken:
        while len(seen) < limit and (message := await taken.next()) is not None:
            seen.append(_peeked(message))
    return seen


def _peeked(message: AbstractIncomingMessage) -> Peeked:
    body = message.body[:BODY_SHOWN].decode(errors="replace")
    if len(message.body) > BODY_SHOWN:
        body += "…"
    return Peeked(message.message_id, message.type, _death_reason(message.headers or {}), body)


def _death_reason(headers: dict[str, Any]) -> str:
    deaths = headers.get("x-death")
    if not isinstance(deaths, list) or not deaths or not isinstance(deaths[0], dict):
        failures = headers.get(HEADER_FAILURES)
        if failures is not None:
            # A part of a message the consumer sent here itself (``PartlyHandled``).
            return f"handler failed ({_text(failures)}x; a part of a message, sent by its consumer)"
        return "unknown"
    death = deaths[0]
    reason, queue = death.get("reason", "?"), death.get("queue", "?")
    return f"{_text(reason)} from {_text(queue)} ({death.get('count', 1)}x)"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
