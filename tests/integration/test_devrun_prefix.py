"""``make run`` refuses a queue prefix another stack holds or consumes from, and suggests a
free one.

Each test consumes, as a running stack's submitter would, from a work queue of a
prefix of its own on the shared broker, and deletes it at the end; or holds that
prefix's lock, as a launcher does, which the broker deletes with its connection.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import pytest

from reelflow_devtools.launcher import StackConfig
from reelflow_devtools.prefixes import in_use, prefix_consumers
from reelflow_devtools.processes import Occupied
from reelflow_devtools.startchecks import beside, check_prefix, lock_prefix
from tests.consumers import consuming
from tests.waiting import DEADLINE_S, eventually

pytestmark = pytest.mark.integration


async def test_a_prefix_whose_work_queue_has_a_consumer_is_refused_saying_so(
    amqp_url: str, tmp_path: Path
) -> None:
    prefix = f"devrun-{uuid.uuid4().hex[:8]}."
    config = StackConfig(run_dir=tmp_path / "run", amqp_url=amqp_url, amqp_prefix=prefix)
    async with consuming(amqp_url, prefix) as queue:
        assert await prefix_consumers(amqp_url, prefix) == {queue: 1}

        with pytest.raises(Occupied) as refused:
            await asyncio.to_thread(check_prefix, config)

    said = str(refused.value)
    assert f"REELFLOW_AMQP_PREFIX='{prefix}'" in said
    assert f"{queue} (1 consumer)" in said
    assert "guest:guest" not in said  # the broker's password is not printed
    # Its consumer gone, the prefix is free again (its queues may stay: they are its own).
    await asyncio.to_thread(check_prefix, config)


async def test_the_hint_beside_a_stack_skips_a_checkouts_prefix_in_use(
    amqp_url: str, tmp_path: Path
) -> None:
    checkout = tmp_path / f"wt-{uuid.uuid4().hex[:8]}"
    checkout.mkdir()
    config = StackConfig(run_dir=tmp_path / "run", amqp_url=amqp_url)
    async with consuming(amqp_url, f"{checkout.name}."):
        hint = await asyncio.to_thread(beside, config, checkout=checkout)

    second = f"{checkout.name}-2."
    assert hint.startswith(f"REELFLOW_AMQP_PREFIX={second} ")
    assert f"--run-dir .run/{checkout.name}-2 " in hint
    assert not await asyncio.to_thread(in_use, amqp_url, second)


def _taken_and_given_back(config: StackConfig) -> bool:
    """Whether a launch of ``config`` would get its prefix's lock now (given back at once)."""
    try:
        lock = lock_prefix(config)
    except Occupied:
        return False
    lock.release()
    return True


async def test_of_two_launches_that_both_found_a_prefix_free_the_second_is_refused(
    amqp_url: str, tmp_path: Path
) -> None:
    prefix = f"devrun-{uuid.uuid4().hex[:8]}."
    first, second = (
        StackConfig(run_dir=tmp_path / name, amqp_url=amqp_url, amqp_prefix=prefix)
        for name in ("first", "second")
    )
    # Started at the same moment: neither's services consume yet, so both checks pass.
    await asyncio.to_thread(check_prefix, first)
    await asyncio.to_thread(check_prefix, second)

    held = await asyncio.to_thread(lock_prefix, first)
    try:
        with pytest.raises(Occupied) as refused:
            await asyncio.to_thread(lock_prefix, second)
        # The hint beside a stack skips a prefix whose launcher is still starting.
        assert (await asyncio.to_thread(in_use, amqp_url, prefix)).locked
    finally:
        held.release()

    said = str(refused.value)
    assert f"another reelflow runs on the queues of REELFLOW_AMQP_PREFIX='{prefix}'" in said
    assert f"{prefix}stack.lock" in said
    assert "guest:guest" not in said
    # The first stack stopped, its lock given back: the prefix is free again.
    await eventually(
        lambda: asyncio.to_thread(_taken_and_given_back, second), "the lock given back"
    )


#: a launcher that holds a prefix's lock until it is killed
HOLDER = """
import sys
from reelflow_devtools.prefixes import PrefixLock
assert PrefixLock(sys.argv[1], sys.argv[2]).acquire()
print("held", flush=True)
sys.stdin.read()
"""


async def test_a_prefix_lock_goes_with_the_launcher_that_held_it_however_it_ends(
    amqp_url: str, tmp_path: Path
) -> None:
    prefix = f"devrun-{uuid.uuid4().hex[:8]}."
    config = StackConfig(run_dir=tmp_path / "run", amqp_url=amqp_url, amqp_prefix=prefix)
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        *["-c", HOLDER, amqp_url, prefix],
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        async with asyncio.timeout(DEADLINE_S):
            assert await holder.stdout.readline() == b"held\n"
        assert not await asyncio.to_thread(_taken_and_given_back, config)
    finally:
        holder.kill()  # SIGKILL: it gives nothing back itself
        await holder.wait()
    await eventually(
        lambda: asyncio.to_thread(_taken_and_given_back, config), "the killed launcher's lock gone"
    )
