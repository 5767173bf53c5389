"""A simulator and a client that talks to it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from pydantic import SecretStr

from reelflow_common.runware import RunwareClient, VideoRequest
from reelflow_common.settings import RunwareSettings
from reelflow_runware_sim.testing import RunningSimulator, running_simulator


def client_settings(base_url: str, api_key: str, **overrides: Any) -> RunwareSettings:
    return RunwareSettings(
        runware_base_url=base_url,
        runware_api_key=SecretStr(api_key),
        runware_timeout_s=10.0,
        **overrides,
    )


@asynccontextmanager
async def sim_and_client(
    *,
    api_key: str | None = None,
    http: httpx.AsyncClient | None = None,
    client_overrides: dict[str, Any] | None = None,
    **sim_overrides: Any,
) -> AsyncIterator[tuple[RunningSimulator, RunwareClient]]:
    """A fresh simulator and a client for it (the client owns its pool unless ``http`` is given)."""
    sim_overrides.setdefault("seed", 7)
    async with running_simulator(**sim_overrides) as sim:
        settings = client_settings(sim.base_url, api_key or sim.api_key, **(client_overrides or {}))
        if http is not None:
            yield sim, RunwareClient(settings, http)
            return
        async with RunwareClient.open(settings) as client:
            yield sim, client


def video(prompt: str = "a red fox in snow", **fields: Any) -> VideoRequest:
    """A request the simulator accepts for Veo 3.1 Fast, with a fresh task UUID."""
    values: dict[str, Any] = {
        "task_uuid": str(uuid.uuid4()),
        "model": "google:3@3",
        "positive_prompt": prompt,
        "duration": 4,
        "width": 1280,
        "height": 720,
    }
    values.update(fields)
    return VideoRequest(**values)
