"""What the tests of reelflow's video copies share: the simulator's MP4 and the URL secret."""

from __future__ import annotations

import ipaddress
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from reelflow_common.storage import VideoLinks
from reelflow_runware_sim.testing import RunningSimulator
from tests.integration.api_helpers import Api
from tests.integration.worker_helpers import World

#: the simulator's video (a 1 s H.264 MP4), what every copy should hold
SAMPLE = files("reelflow_runware_sim").joinpath("assets/sample.mp4").read_bytes()
SECRET = SecretStr("video-url-secret")


def sample_file(directory: Path) -> Path:
    path = directory / "sample.mp4"
    path.write_bytes(SAMPLE)
    return path


def copies_from(sim: RunningSimulator) -> dict[str, Any]:
    """The poller's settings that let it copy the simulator's videos: http, from its host
    (a loopback address, so internal too)."""
    host = httpx.URL(sim.base_url).host
    return {
        "video_copy_allowed_hosts": [host],
        "video_copy_internal_hosts": [host],
        "video_copy_allow_http": True,
    }


async def resolves_public(host: str, _port: int) -> list[str]:
    """A mock CDN's resolver: every name is at a public address (the mock connects nowhere);
    an address is itself, as with a real resolver."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        return ["8.8.8.8"]


def links(ttl_s: float = 60) -> VideoLinks:
    """Links signed with the tests' secret, as the services sign them."""
    return VideoLinks(SECRET.get_secret_value().encode(), ttl_s=ttl_s)


async def signed_in(api: Api, world: World) -> dict[str, str]:
    """Headers of a new tenant's key; ``world`` creates its projects for that tenant."""
    auth = await api.tenant()
    world.tenant_id = await api.keys.tenant_for_key(auth["Authorization"].split()[1]) or ""
    return auth
