"""``make clean`` (``reelflow-dev --delete-queues``) deletes the queues and exchanges stopped
stacks left on the broker, never those of a stack that runs.

Each test declares, as a stack's services would, the topologies of prefixes of
its own on the shared broker, and deletes whatever is left of them at the end.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from aio_pika.exceptions import ChannelNotFoundEntity

from reelflow_common.broker.stacks import delete_topology
from reelflow_common.settings import TopologySettings
from reelflow_common.topology import SUBMIT_CLIP, WORK_QUEUES, Topology, declare_topology
from reelflow_devtools.cleanup import record_topology
from reelflow_devtools.devrun import delete_queues, parse_args, topology_from_environment
from reelflow_devtools.ports import free_port
from reelflow_devtools.prefixes import PrefixLock

pytestmark = pytest.mark.integration

#: one rung per ladder: a small topology (12 queues) with every kind of name
_SMALL = {
    f"{ladder}_{end}_delay_s": 1.0
    for ladder in ("retry", "poll", "copy")
    for end in ("initial", "max")
}


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[AbstractConnection]:
    connection = await aio_pika.connect(amqp_url, timeout=15)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def declared(broker: AbstractConnection) -> AsyncIterator[Callable[..., Awaitable[None]]]:
    """Declares a topology as a stack's services do; deletes it at the end, whatever is left."""
    topologies: list[Topology] = []

    async def declare(topology: Topology, *, names: list[str] | None = None) -> None:
        topologies.append(topology)
        channel = await broker.channel()
        if names is None:
            await declare_topology(channel, topology)
        else:
            for name in names:
                await channel.declare_queue(name, durable=True)
        await channel.close()

    yield declare
    for topology in topologies:
        await delete_topology(broker, topology)


def _small(prefix: str) -> TopologySettings:
    return TopologySettings.model_validate({"amqp_prefix": prefix, **_SMALL})


def _prefix() -> str:
    return f"clean-{uuid.uuid4().hex[:8]}."


async def _exists(broker: AbstractConnection, name: str, *, exchange: bool = False) -> bool:
    channel = await broker.channel()
    try:
        if exchange:
            await channel.declare_exchange(name, passive=True)
        else:
            await channel.declare_queue(name, passive=True)
    except ChannelNotFoundEntity:
        return False
    await channel.close()
    return True


async def _left(broker: AbstractConnection, topology: Topology) -> list[str]:
    """What of ``topology`` is still on the broker."""
    left = [name for name in topology.queue_names() if await _exists(broker, name)]
    for name in topology.exchange_names():
        if await _exists(broker, name, exchange=True):
            left.append(name)
    return left


async def _clean(run_dir: Path, amqp_url: str, *more: str) -> int:
    """What make clean runs first, with the launcher's options ``more``."""
    args = parse_args(["--delete-queues", "--run-dir", str(run_dir), *more])
    return await asyncio.to_thread(delete_queues, args, {"REELFLOW_AMQP_URL": amqp_url})


async def test_make_clean_deletes_what_the_stacks_of_its_run_directory_left_messages_and_all(
    amqp_url: str,
    tmp_path: Path,
    broker: AbstractConnection,
    declared: Callable[..., Awaitable[None]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = tmp_path / ".run"
    own, beside = _small(_prefix()), _small(_prefix())
    record_topology(run_dir, own)
    record_topology(run_dir / "beside", beside)  # where the hint beside a stack puts it
    for settings in (own, beside):
        topology = Topology.from_settings(settings)
        await declared(topology)
        channel = await broker.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(b"{}"), routing_key=topology.queue(SUBMIT_CLIP)
        )
        await channel.close()

    assert await _clean(run_dir, amqp_url) == 0

    for settings in (own, beside):
        assert await _left(broker, Topology.from_settings(settings)) == []
    said = capsys.readouterr().out
    assert (
        f"reelflow: deleted the queues and exchanges of REELFLOW_AMQP_PREFIX="
        f"'{own.amqp_prefix}' on the broker at" in said
    )
    assert f"'{beside.amqp_prefix}'" in said
    assert "(1 message in them)" in said
    assert "guest:guest" not in said


async def test_make_clean_refuses_while_a_make_run_holds_the_prefix(
    amqp_url: str,
    tmp_path: Path,
    broker: AbstractConnection,
    declared: Callable[..., Awaitable[None]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = _small(_prefix())
    record_topology(tmp_path / ".run", settings)
    topology = Topology.from_settings(settings)
    await declared(topology)
    running = PrefixLock(amqp_url, settings.amqp_prefix)  # as that stack's launcher holds it
    assert await asyncio.to_thread(running.acquire)
    try:
        assert await _clean(tmp_path / ".run", amqp_url) == 1
    finally:
        await asyncio.to_thread(running.release)

    said = capsys.readouterr().out
    assert "reelflow: not deleting the queues and exchanges of REELFLOW_AMQP_PREFIX='" in said
    assert f"a make run runs on them (it holds {topology.stack_lock}); stop it first" in said
    assert await _left(broker, topology) == [*topology.queue_names(), *topology.exchange_names()]


async def test_make_clean_deletes_nothing_while_one_of_its_stacks_runs(
    amqp_url: str,
    tmp_path: Path,
    broker: AbstractConnection,
    declared: Callable[..., Awaitable[None]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = tmp_path / ".run"
    stopped, runs = _small(_prefix()), _small(_prefix())
    record_topology(run_dir, stopped)
    record_topology(run_dir / "beside", runs)
    for settings in (stopped, runs):
        await declared(Topology.from_settings(settings))
    running = PrefixLock(amqp_url, runs.amqp_prefix)
    assert await asyncio.to_thread(running.acquire)
    try:
        assert await _clean(run_dir, amqp_url) == 1
    finally:
        await asyncio.to_thread(running.release)

    kept = Topology.from_settings(stopped)  # unused, yet kept: all or nothing
    assert await _left(broker, kept) == [*kept.queue_names(), *kept.exchange_names()]
    said = capsys.readouterr().out.splitlines()
    assert said[-1] == (
        "reelflow: so nothing was deleted: make clean deletes every prefix's or none"
    )
    assert not any(line.startswith("reelflow: deleted") for line in said), said


async def test_make_clean_refuses_while_a_queue_of_the_prefix_has_consumers(
    amqp_url: str,
    tmp_path: Path,
    broker: AbstractConnection,
    declared: Callable[..., Awaitable[None]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = _small(_prefix())
    record_topology(tmp_path / ".run", settings)
    topology = Topology.from_settings(settings)
    await declared(topology)
    dead_letters = topology.dead_letter_queue(SUBMIT_CLIP)
    channel = await broker.channel()  # a stack no launcher started, reading its dead letters
    queue = await channel.get_queue(dead_letters)
    tag = await queue.consume(_ignored, no_ack=True)
    try:
        assert await _clean(tmp_path / ".run", amqp_url) == 1
    finally:
        await queue.cancel(tag)
        await channel.close()

    said = capsys.readouterr().out
    assert f"they have consumers: {dead_letters} (1); stop those first" in said
    assert await _left(broker, topology) == [*topology.queue_names(), *topology.exchange_names()]


async def test_make_clean_leaves_the_queues_on_a_broker_that_does_not_answer_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / ".run"
    record_topology(run_dir, _small(""))
    record_topology(run_dir / "beside", _small("beside."))
    # Not this machine's broker's address, as the launcher tells them apart: were a broker
    # started or configured for it, this one would be refused first.
    nobody = f"amqp://guest:guest@127.0.0.2:{free_port()}/"

    assert await _clean(run_dir, nobody) == 0  # make clean goes on, and removes the rest

    said = capsys.readouterr().out.splitlines()
    assert len(said) == 1, said
    assert said[0].startswith(
        "reelflow: left the queues and exchanges of REELFLOW_AMQP_PREFIX='' and 'beside.' on"
        " the broker at amqp://127.0.0.2:"
    )
    assert said[0].endswith(
        "; once it does, `make .venv/.synced && .venv/bin/reelflow-dev --delete-queues"
        " --prefix '' && .venv/bin/reelflow-dev --delete-queues --prefix beside.` deletes them"
    )


async def test_make_clean_goes_by_the_records_alone_never_the_default_prefix(
    amqp_url: str,
    tmp_path: Path,
    broker: AbstractConnection,
    declared: Callable[..., Awaitable[None]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A checkout whose stacks ran only beside (REELFLOW_AMQP_PREFIX=<checkout>-2. with the
    # hint's run directory): its own .run records nothing, and the default prefix's queues
    # are any checkout's.
    run_dir = tmp_path / ".run"
    beside = _small(_prefix())
    record_topology(run_dir / "beside", beside)
    await declared(Topology.from_settings(beside))

    assert await _clean(run_dir, amqp_url) == 0

    said = capsys.readouterr().out
    assert f"REELFLOW_AMQP_PREFIX='{beside.amqp_prefix}'" in said
    assert "REELFLOW_AMQP_PREFIX=''" not in said
    assert await _left(broker, Topology.from_settings(beside)) == []


async def test_make_clean_deletes_nothing_when_nothing_is_recorded_and_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / ".run"
    (run_dir / "logs").mkdir(parents=True)  # a run directory, but no stack recorded a topology
    nobody = f"amqp://guest:guest@127.0.0.2:{free_port()}/"

    assert await _clean(run_dir, nobody) == 0

    said = capsys.readouterr().out.splitlines()
    assert said == [
        f"reelflow: no stack recorded its queues in {run_dir} (no topology.json in it or in"
        " the run directories inside it): no queues deleted"
    ]


async def test_make_clean_stops_saying_what_the_broker_refused_when_it_answers_with_an_error(
    amqp_url: str,
    tmp_path: Path,
    broker: AbstractConnection,
    declared: Callable[..., Awaitable[None]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Any AMQPError was "did not answer" and a 0, after which make clean removed the run
    # directory and the records of what is still on the broker.
    run_dir = tmp_path / ".run"
    settings = _small(_prefix())
    record_topology(run_dir, settings)
    topology = Topology.from_settings(settings)
    locked = topology.queue(SUBMIT_CLIP)
    await declared(topology, names=[name for name in topology.queue_names() if name != locked])
    # Exclusive to another connection: the broker closes the channel that asks about it.
    channel = await broker.channel()
    await channel.declare_queue(locked, exclusive=True)

    assert await _clean(run_dir, amqp_url) == 1

    said = capsys.readouterr().out.splitlines()
    assert len(said) == 1, said
    assert said[0].startswith(
        "reelflow: could not delete the queues and exchanges of REELFLOW_AMQP_PREFIX="
        f"'{settings.amqp_prefix}' on the broker at amqp://"
    )
    assert "ChannelLockedResource: " in said[0]
    assert "did not answer" not in said[0]
    assert sorted(await _left(broker, topology)) == sorted(topology.queue_names())  # all kept


async def _ignored(_message: AbstractIncomingMessage) -> None:
    pass


async def test_the_queues_of_any_prefix_are_deleted_as_make_run_would_have_named_them(
    amqp_url: str,
    tmp_path: Path,
    broker: AbstractConnection,
    declared: Callable[..., Awaitable[None]],
) -> None:
    prefix = _prefix()
    args = parse_args(["--run-dir", str(tmp_path / "elsewhere")])
    topology = Topology.from_settings(topology_from_environment(args, prefix, {}))
    some = [topology.queue(name) for name in WORK_QUEUES]
    some += [
        topology.wait_queue(name, ms)
        for name, ladder in topology.ladders.items()
        for ms in ladder[-1:]
    ]
    await declared(topology, names=some)

    assert await _clean(tmp_path / "nothing-recorded", amqp_url, "--prefix", prefix) == 0

    assert [name for name in some if await _exists(broker, name)] == []
    assert not (tmp_path / "nothing-recorded").exists()  # nothing written for it
