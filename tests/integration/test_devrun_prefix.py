"""``make run`` refuses a queue prefix another stack consumes from, and suggests a free one.

Each test consumes, as a running stack's submitter would, from a work queue of a
prefix of its own on the shared broker, and deletes it at the end.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from reelflow_devtools.devrun import beside, check_prefix
from reelflow_devtools.launcher import StackConfig
from reelflow_devtools.prefixes import consumers, in_use
from reelflow_devtools.processes import Occupied
from tests.consumers import consuming

pytestmark = pytest.mark.integration


async def test_a_prefix_whose_work_queue_has_a_consumer_is_refused_saying_so(
    amqp_url: str, tmp_path: Path
) -> None:
    prefix = f"devrun-{uuid.uuid4().hex[:8]}."
    config = StackConfig(run_dir=tmp_path / "run", amqp_url=amqp_url, amqp_prefix=prefix)
    async with consuming(amqp_url, prefix) as queue:
        assert await consumers(amqp_url, prefix) == {queue: 1}

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
