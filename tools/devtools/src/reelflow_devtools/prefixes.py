"""Queue prefixes of ``make run`` stacks sharing one broker: which are in use, which are free.

Two stacks with one ``REELFLOW_AMQP_PREFIX`` on one broker share their work
queues: one's submitter takes the other's ``SubmitClip`` messages, submits them
to its own Runware (simulator) and cannot record them in its own database, so
the other's clips stay queued for good. A stack's prefix is in use while one of
its work queues has a consumer: a passive declare of the queue says how many
(a queue that does not exist has none). Two stacks starting at the same moment
can still both find a prefix free; one started after another is refused.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import ChannelNotFoundEntity

from reelflow_common.topology import WORK_QUEUES, Topology

#: a broker that does not answer within this is taken as having no consumers of a prefix
_CONNECT_TIMEOUT_S = 10.0
#: how many numbered prefixes of a checkout :func:`free_prefix` tries (``name-2.`` ...)
_NUMBERED = 50


async def consumers(amqp_url: str, prefix: str) -> dict[str, int]:
    """The work queues of ``prefix`` that have consumers now, with how many each."""
    connection = await aio_pika.connect(amqp_url, timeout=_CONNECT_TIMEOUT_S)
    try:
        return await _consumers(connection, prefix)
    finally:
        await connection.close()


async def _consumers(connection: AbstractConnection, prefix: str) -> dict[str, int]:
    topology = Topology(prefix=prefix)
    found: dict[str, int] = {}
    for work_queue in WORK_QUEUES:
        name = topology.queue(work_queue)
        # A channel per queue: the broker closes the one a missing queue was asked on.
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(name, passive=True)
        except ChannelNotFoundEntity:
            continue
        count = queue.declaration_result.consumer_count or 0
        await channel.close()
        if count:
            found[name] = count
    return found


def in_use(amqp_url: str, prefix: str) -> dict[str, int]:
    """:func:`consumers`, from code that runs no event loop (the launcher's)."""
    return asyncio.run(consumers(amqp_url, prefix))


def refusal(prefix: str, amqp_url: str, used: dict[str, int]) -> str:
    """Why a stack does not start on ``prefix``: ``used``, its work queues that have consumers."""
    queues = ", ".join(
        f"{name} ({count} consumer{'s' * (count != 1)})" for name, count in used.items()
    )
    return (
        f"another reelflow consumes the queues of REELFLOW_AMQP_PREFIX={prefix!r} on the broker"
        f" at {_hidden_password(amqp_url)}: {queues}. A second stack with the same prefix would"
        " take its messages (and lose them). Stop that one"
    )


def _hidden_password(url: str) -> str:
    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)


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
