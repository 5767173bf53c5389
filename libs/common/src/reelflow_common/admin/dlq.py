"""Dead-letter queues as an operator sees them: which ones, what is in them, and dropping
the ones no fix will make valid.

Every message is taken with ``broker.dlq.taken_dead_letters`` (as ``requeue`` takes
them): a peek returns each one it takes, a drop acknowledges only the ones it was
asked for and returns the rest, in order. Depths and requeueing are
``reelflow_common.broker.dlq``'s, the same functions the workers use.

A dead letter is named by its ``message_id``, or, having none (a message some other
program published), by ``sha256:`` and the start of its body's hash: ``dlq list``
prints that name, ``dlq drop --id`` takes it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from reelflow_common.broker.dlq import dead_letter_depths, dead_letter_name, taken_dead_letters
from reelflow_common.logging import get_logger
from reelflow_common.topology import HEADER_FAILURES, WORK_QUEUES, Topology

#: bytes of a message body ``dlq list`` shows (``--json`` shows it whole)
BODY_SHOWN = 300

log = get_logger(__name__)


@dataclass(frozen=True)
class DeadLetter:
    #: what ``dlq list`` shows and ``dlq drop --id`` takes
    name: str
    message_id: str | None
    type: str | None
    #: why and from where the broker dead-lettered it, from ``x-death``
    reason: str
    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)

    def shown(self) -> str:
        """The start of the body, as text."""
        text = self.body[:BODY_SHOWN].decode(errors="replace")
        return f"{text}…" if len(self.body) > BODY_SHOWN else text

    def as_json(self, queue: str) -> str:
        """One JSON line with all of it: the body whole (base64 if it is not UTF-8)."""
        record: dict[str, Any] = {
            "queue": queue,
            "id": self.name,
            "message_id": self.message_id,
            "type": self.type,
            "reason": self.reason,
            "headers": self.headers,
        }
        try:
            record["body"] = self.body.decode()
        except UnicodeDecodeError:
            record["body_base64"] = base64.b64encode(self.body).decode()
        return json.dumps(record, default=_json_value, ensure_ascii=False)


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
) -> list[DeadLetter]:
    """Up to ``limit`` messages of the DLQ, each returned to it right away."""
    seen: list[DeadLetter] = []
    async with taken_dead_letters(channel, topology, work_queue) as taken:
        while len(seen) < limit and (message := await taken.next()) is not None:
            seen.append(dead_letter(message))
    return seen


async def drop(
    channel: AbstractChannel,
    topology: Topology,
    work_queue: str,
    *,
    name: str | None,
    before_drop: Callable[[DeadLetter], None],
) -> list[DeadLetter]:
    """Remove every message named ``name`` from the DLQ (None: every message); the ones
    removed, each given to ``before_drop`` before it is.

    Only messages present at the start are looked at, so one dead-lettered meanwhile
    stays; the others go back in their order. A message another command holds right
    now (a ``dlq list`` running) is not seen.
    """
    depth = (await dead_letter_depths(channel, topology, [work_queue]))[work_queue]
    dropped: list[DeadLetter] = []
    looked_at = 0
    try:
        async with taken_dead_letters(channel, topology, work_queue) as taken:
            while looked_at < depth and (message := await taken.next()) is not None:
                looked_at += 1
                letter = dead_letter(message)
                if name is not None and letter.name != name:
                    continue
                # Told first: should the command fail here, the message is still in the DLQ.
                before_drop(letter)
                await message.ack()
                dropped.append(letter)
    finally:
        log.warning(
            "dead_letters_dropped",
            queue=work_queue,
            asked=name or "all",
            dropped=[letter.name for letter in dropped],
            looked_at=looked_at,
        )
    return dropped


def dead_letter(message: AbstractIncomingMessage) -> DeadLetter:
    headers = dict(message.headers or {})
    return DeadLetter(
        name=dead_letter_name(message.message_id, message.body),
        message_id=message.message_id,
        type=message.type,
        reason=_death_reason(headers),
        body=message.body,
        headers=headers,
    )


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


def _json_value(value: object) -> object:
    """Header values JSON lacks: the broker's timestamps and byte strings."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode(errors="replace")
    return str(value)
