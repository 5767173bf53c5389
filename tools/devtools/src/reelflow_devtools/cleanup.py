"""``make clean``: the queues and exchanges stopped ``make run`` stacks left on the broker.

A stack's queues outlive it on the shared broker, with the messages in them. So
each ``make run`` records in its run directory the settings its topology is
named after (``topology.json``: the prefix, and the delays that name its wait
queues), and ``reelflow-dev --delete-queues``, which ``make clean`` runs first,
deletes what was so recorded: by the run directory, and by the run directories
inside it (where the hint beside a stack puts theirs); or, with ``--prefix``,
the topology ``make run`` would declare on that prefix.

Never while something uses them: the deleting connection takes each prefix's
lock first (so a ``make run`` on it is refused until the deletion is done, and
one that runs refuses the deletion), then no queue may have a consumer; and
every prefix is checked before anything is deleted, so one in use keeps the
queues of all. A tenant's submit lane is not known by name: the broker deletes
it ``REELFLOW_LANE_EXPIRES_S`` (7 days) after it was last used.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path

from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import AMQPError

from reelflow_common.broker.stacks import consumers, delete_topology, take_stack_lock
from reelflow_common.redact import url_location
from reelflow_common.settings import TopologySettings
from reelflow_common.topology import Topology
from reelflow_devtools.connections import amqp

#: in a run directory: the topology its stacks declare(d), kept after they stop
TOPOLOGY_FILE = "topology.json"


def record_topology(run_dir: Path, settings: TopologySettings) -> None:
    """Keep in ``run_dir`` what names the queues its stack declares (never the broker's URL)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    kept = settings.model_dump_json(exclude={"amqp_url"}, indent=2)
    (run_dir / TOPOLOGY_FILE).write_text(f"{kept}\n")


def recorded_topology(run_dir: Path) -> TopologySettings | None:
    """The topology recorded in ``run_dir``, if a stack has run from it."""
    path = run_dir / TOPOLOGY_FILE
    if not path.is_file():
        return None
    return TopologySettings.model_validate_json(path.read_text())


def recorded_beside(run_dir: Path) -> list[TopologySettings]:
    """The topologies recorded in the run directories inside ``run_dir``."""
    return [
        TopologySettings.model_validate_json(path.read_text())
        for path in sorted(run_dir.glob(f"*/{TOPOLOGY_FILE}"))
    ]


def delete_unused(
    amqp_url: str, topologies: Sequence[TopologySettings], say: Callable[[str], None]
) -> int:
    """Delete the queues and exchanges of ``topologies`` unless something uses those of one
    of them, then none, saying what was deleted or why not: 1 when refused (in use), or
    when the broker refused an operation (said which error); else 0, also when the broker
    does not answer (said what is left there, with how to delete it later).

    ``make clean`` removes the run directory, and the records in it, only after a 0.
    """
    by_prefix: dict[str, Topology] = {}
    for settings in topologies:
        topology = Topology.from_settings(settings)
        by_prefix.setdefault(topology.prefix, topology)
    deleted: list[str] = []
    try:
        return asyncio.run(_delete_unused(amqp_url, list(by_prefix.values()), say, deleted))
    except (OSError, TimeoutError) as exc:
        # No connection, or it was lost (aio-pika's AMQPConnectionError is an OSError): an
        # outage make clean need not wait for.
        say(left_behind(amqp_url, [prefix for prefix in by_prefix if prefix not in deleted], exc))
        return 0
    except AMQPError as exc:
        # The broker answered and refused (a channel closed on a declare or a delete): the
        # records stay, for a make clean once the cause is seen to.
        left = [prefix for prefix in by_prefix if prefix not in deleted]
        say(f"reelflow: could not delete {_of_prefixes(amqp_url, left)}: {_said(exc)}")
        return 1


def left_behind(amqp_url: str, prefixes: Sequence[str], why: BaseException) -> str:
    """The line that says the queues of ``prefixes`` stay on a broker that did not answer
    (``why``), and how to delete them once it does (``.venv`` and the records may be gone)."""
    later = " && ".join(
        f".venv/bin/reelflow-dev --delete-queues --prefix {shlex.quote(prefix)}"
        for prefix in prefixes
    )
    return (
        f"reelflow: left {_of_prefixes(amqp_url, prefixes)}, which did not answer"
        f" ({str(why) or repr(why)}); once it does, `make .venv/.synced && {later}` deletes them"
    )


def _of_prefixes(amqp_url: str, prefixes: Sequence[str]) -> str:
    named = " and ".join(repr(prefix) for prefix in prefixes)
    return (
        f"the queues and exchanges of REELFLOW_AMQP_PREFIX={named} on the broker at"
        f" {url_location(amqp_url)}"
    )


def _said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc)


async def _delete_unused(
    amqp_url: str, topologies: list[Topology], say: Callable[[str], None], deleted: list[str]
) -> int:
    """:func:`delete_unused` on one connection, adding to ``deleted`` each prefix whose
    topology is deleted."""
    async with amqp(amqp_url) as connection:
        # Every prefix is checked, and its lock held until the connection closes, before
        # anything is deleted: one in use keeps all the others too.
        refused = False
        for topology in topologies:
            why = await _in_use(connection, topology)
            if why is not None:
                say(f"reelflow: not deleting {_of_prefixes(amqp_url, [topology.prefix])}: {why}")
                refused = True
        if refused:
            if len(topologies) > 1:
                say("reelflow: so nothing was deleted: make clean deletes every prefix's or none")
            return 1
        for topology in topologies:
            messages = await delete_topology(connection, topology)
            deleted.append(topology.prefix)
            say(
                f"reelflow: deleted {_of_prefixes(amqp_url, [topology.prefix])}"
                f" ({messages} message{'s' * (messages != 1)} in them)"
            )
        return 0


async def _in_use(connection: AbstractConnection, topology: Topology) -> str | None:
    """Why ``topology`` is not to be deleted, if it is not; else its lock is taken, to hold
    until ``connection`` closes."""
    if not await take_stack_lock(await connection.channel(), topology):
        return f"a make run runs on them (it holds {topology.stack_lock}); stop it first"
    used = await consumers(connection, topology.queue_names())
    if used:
        queues = ", ".join(f"{name} ({count})" for name, count in used.items())
        return f"they have consumers: {queues}; stop those first"
    return None
