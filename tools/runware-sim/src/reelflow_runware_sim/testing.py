"""Run the simulator inside a test's event loop.

```python
async with running_simulator(speedup=1000, seed=7) as sim:
    client = RunwareClient(base_url=sim.base_url, api_key=sim.api_key)
    ...
    assert (await sim.task(task_uuid))["submissions"] == 1
```
"""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from .app import Simulator
from .config import SimConfig
from .server import SimServer
from .state import SimState
from .validation import task_uuid_of


class RunningSimulator:
    """A simulator serving on a free local port, with direct access to its ground truth."""

    def __init__(self, server: SimServer) -> None:
        self._server = server
        self.base_url = server.url
        """Runware base URL: clients POST to `{base_url}/v1`."""
        self.api_key = server.sim.config.api_keys[0]

    @property
    def config(self) -> SimConfig:
        """The settings this simulator runs with."""
        return self._server.sim.config

    @property
    def state(self) -> SimState:
        """The in-memory state, for assertions the helpers below do not cover."""
        return self._server.sim.state

    @property
    def simulator(self) -> Simulator:
        """The simulator behind the server."""
        return self._server.sim

    async def task(self, task_uuid: str) -> dict[str, Any]:
        """Ground truth for one task, as `GET /__sim/tasks/{uuid}` (`accepted` false if unknown)."""
        return self.state.view(task_uuid_of({"taskUUID": task_uuid}))

    async def tasks(self) -> list[dict[str, Any]]:
        """Ground truth for every accepted task, as `GET /__sim/tasks`."""
        now = self.state.clock()
        return [task.view(now) for task in self.state.tasks.values()]

    async def stats(self) -> dict[str, Any]:
        """Request counters, as `GET /__sim/stats`."""
        return self.state.stats()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` holds, re-checked on every state change.

        Bound it: `async with asyncio.timeout(5): await sim.wait_for(...)`.
        """
        await self.state.wait_for(condition)

    async def reset(self) -> None:
        """Forget all tasks and counters, as `POST /__sim/reset`."""
        await self._server.sim.reset()


@asynccontextmanager
async def running_simulator(
    config: SimConfig | None = None, /, **overrides: Any
) -> AsyncIterator[RunningSimulator]:
    """Serve a simulator on 127.0.0.1 and a free port for the duration of the block.

    `overrides` replace fields of `config` (itself defaulting to `SimConfig()` with port 0);
    the environment is never read.
    """
    values = config.model_dump() if config is not None else {"port": 0}
    server = SimServer(SimConfig(**{**values, **overrides}), in_process=True)
    await server.start()
    try:
        yield RunningSimulator(server)
    finally:
        await server.stop()
