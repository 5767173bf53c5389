"""A client for the `runware_sim` fixture (from `tests/fixtures/runware.py`)."""

from collections.abc import AsyncIterator

import httpx
import pytest

from reelflow_runware_sim.testing import RunningSimulator
from tests.sim.helpers import client_for


@pytest.fixture
async def http(runware_sim: RunningSimulator) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client for the simulator, with a valid Bearer key."""
    async with client_for(runware_sim) as client:
        yield client
