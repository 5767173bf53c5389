"""Sockets coming and going under the notifier's GC policy: memory does not creep."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from reelflow_common.domain import ClipRequest
from reelflow_common.store import ApiKeyStore, NewProject, ProjectStore
from reelflow_notifier.gcpolicy import GcPolicy
from reelflow_notifier.settings import Settings
from tests.integration.notifier_helpers import client, receive, running_notifier
from tests.waiting import eventually

pytestmark = pytest.mark.integration

SOCKETS = 1_000
ROUNDS = 5


def rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def objects_kept() -> int:
    """Objects the collector tracks, frozen or not: what a leak of sockets' cycles grows."""
    return len(gc.get_objects()) + gc.get_freeze_count()


async def test_sockets_connecting_and_leaving_again_and_again_leave_nothing_behind(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> None:
    settings: Settings = settings_for(Settings, http_host="127.0.0.1", http_port=0)
    # A reclaim only once a whole round has closed: on a slow machine the sockets close
    # over several ticks, and with the default threshold (256) the last few of a round
    # would wait for the next round's closes, as they may in production.
    policy = GcPolicy(min_closed=SOCKETS)
    api_keys = ApiKeyStore(mongo_db)
    tenant_id = await api_keys.create_tenant("acme")
    key = await api_keys.issue_key(tenant_id)
    new = NewProject(
        tenant_id=tenant_id,
        title="Trip to Lisbon",
        model="google:3@3",
        scenes=[ClipRequest(prompt="scene 0")],
    )
    project = (await ProjectStore(mongo_db).create(new)).project
    kept: list[int] = []
    rss: list[float] = []
    # Info lines per socket would be kept as records by pytest's log capture (when an
    # earlier test left the level at INFO) and count as objects kept.
    logging.disable(logging.INFO)
    try:
        async with running_notifier(settings, gc_policy=policy) as notifier:
            url = f"{notifier.base_url}/v1/ws/projects/{project.id}?token={key}"
            gate = asyncio.Semaphore(50)

            async def watch(stack: AsyncExitStack) -> None:
                async with gate:
                    ws = await stack.enter_async_context(client(url))
                    assert (await receive(ws))["type"] == "snapshot"

            for _ in range(ROUNDS):
                async with AsyncExitStack() as stack:
                    await asyncio.gather(*(watch(stack) for _ in range(SOCKETS)))
                    await eventually(lambda: policy.open == SOCKETS, "every socket served")
                await eventually(lambda: policy.open == 0, "every socket closed", timeout_s=60)
                # The round's full pass, once its last socket closed.
                await eventually(lambda: policy.closed_since_full == 0, "closed ones reclaimed")
                kept.append(objects_kept())
                rss.append(rss_mib())
    finally:
        logging.disable(logging.NOTSET)
        gc.unfreeze()
    # The first round grows caches and pools for good; after it, nothing accumulates: a
    # round's sockets leave some 12,000 objects in cycles, which a leak would keep.
    assert policy.freezes >= ROUNDS
    assert max(kept[1:]) - kept[1] < SOCKETS, kept  # under one object per socket, all rounds
    assert max(rss[1:]) - rss[1] < 10, rss  # MiB; a socket's objects leaked are ~40 KiB each
