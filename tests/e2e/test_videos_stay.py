"""Videos that stay, through the real processes and a real browser: the simulator's links
expire after a minute (simulated), and the dashboard still plays every clip from
reelflow's own storage, served by the api.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from reelflow_devtools.launcher import Stack
from tests.e2e.browser import chromium
from tests.e2e.stack import e2e_config, started
from tests.waiting import PROCESS_DEADLINE_S, eventually_returns

pytestmark = pytest.mark.e2e

#: the simulator's speed here: a minute of link lifetime is three real seconds
SPEEDUP = 20.0
LINK_TTL = 60.0


@pytest.fixture
def stack(amqp_url: str, mongo_url: str, tmp_path: Path) -> Iterator[Stack]:
    config = e2e_config(
        amqp_url,
        mongo_url,
        tmp_path / "stack",
        webhooks=False,
        REELFLOW_STORAGE_BACKEND="local",
        REELFLOW_STORAGE_DIR=str(tmp_path / "videos"),
        REELFLOW_VIDEO_URL_SECRET="e2e-video-url-secret",
    )
    assert config.simulator is not None
    simulator = replace(config.simulator, speedup=SPEEDUP, video_url_ttl=LINK_TTL)
    yield from started(replace(config, simulator=simulator))


def _status(stack: Stack, key: str, project_id: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{stack.api_url}/v1/projects/{project_id}", headers={"Authorization": f"Bearer {key}"}
    )
    answer.raise_for_status()
    status: dict[str, Any] = answer.json()
    return status


def test_every_clip_plays_from_reelflows_storage_after_runwares_links_expired(
    stack: Stack,
) -> None:
    key = asyncio.run(stack.issue_key("videos"))
    created = httpx.post(
        f"{stack.api_url}/v1/projects",
        headers={"Authorization": f"Bearer {key}"},
        json={"scenes": [{"prompt": f"scene {n} [sim:latency=5]"} for n in range(2)]},
    )
    assert created.status_code == 202, created.text
    project_id = created.json()["project_id"]

    async def all_stored() -> dict[str, Any] | None:
        status = _status(stack, key, project_id)
        return status if all("stored_url" in r for r in status["results"]) else None

    status = asyncio.run(eventually_returns(all_stored, "every video stored", PROCESS_DEADLINE_S))
    assert status["status"] == "completed"

    async def runware_links_expired() -> bool | None:
        async with httpx.AsyncClient() as http:
            answers = [await http.get(r["video_url"]) for r in status["results"]]
        return True if all(a.status_code == 404 for a in answers) else None

    asyncio.run(
        eventually_returns(
            runware_links_expired, "Runware's links expired", PROCESS_DEADLINE_S, pause_s=0.5
        )
    )

    with chromium() as browser:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{stack.api_url}/")
        page.get_by_label("API key").fill(key)
        page.keyboard.press("Enter")
        page.goto(f"{stack.api_url}/#/projects/{project_id}")
        expect(page.locator('.clip[data-status="success"] video')).to_have_count(2)
        page.wait_for_function(
            """() => [...document.querySelectorAll('video')].every(v =>
                 new URL(v.currentSrc).pathname.startsWith('/v1/videos/')
                 && v.readyState >= 2 && v.duration > 0 && !v.error)""",
            timeout=PROCESS_DEADLINE_S * 1000,
        )
        context.close()
