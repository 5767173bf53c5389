"""The scenario after the notifier's waits until the notifier has closed its sockets."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from reelflow_devtools.bench import notifier as notifier_module


class _Notifier:
    """A stand-in notifier's ``/metrics``: the open sockets it reports, one reading at a time."""

    def __init__(self, open_sockets: list[int]) -> None:
        self._readings = open_sockets
        self.reads = 0
        self.base_url = ""

    def url(self, _service: str) -> str:
        return self.base_url

    async def metrics(self, _request: web.Request) -> web.Response:
        value = self._readings[min(self.reads, len(self._readings) - 1)]
        self.reads += 1
        text = f"# TYPE reelflow_ws_connections gauge\nreelflow_ws_connections {value:.1f}\n"
        return web.Response(text=text)


@asynccontextmanager
async def _serving(notifier: _Notifier) -> AsyncIterator[None]:
    app = web.Application()
    app.router.add_get("/metrics", notifier.metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    notifier.base_url = f"http://127.0.0.1:{port}"
    try:
        yield
    finally:
        await runner.cleanup()


def _cpu_readings(monkeypatch: pytest.MonkeyPatch, readings: list[float]) -> None:
    """The notifier's CPU seconds so far, one reading per call (the last one repeated)."""
    calls = iter(range(10_000))
    monkeypatch.setattr(
        notifier_module,
        "cpu_seconds",
        lambda _pid: readings[min(next(calls), len(readings) - 1)],
    )


async def test_the_wait_ends_once_no_socket_is_open_and_the_notifier_is_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(notifier_module, "QUIET_WINDOW_S", 0.05)
    _cpu_readings(monkeypatch, [1.0])  # idle throughout
    stand_in = _Notifier(open_sockets=[10_000, 4_000, 0])

    async with _serving(stand_in):
        waited = await notifier_module._until_quiet(
            stand_in,  # type: ignore[arg-type]
            os.getpid(),
            deadline_s=30,
        )

    assert waited is not None
    assert stand_in.reads == 3  # it read until the sockets were all closed, and no further


async def test_the_wait_goes_on_while_the_notifier_is_busy_after_its_sockets_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(notifier_module, "QUIET_WINDOW_S", 0.05)
    # two busy windows (the sockets' cleanup, the collector's pass), then idle
    _cpu_readings(monkeypatch, [0.0, 0.5, 0.5, 1.0, 1.0, 1.0])
    stand_in = _Notifier(open_sockets=[0])

    async with _serving(stand_in):
        waited = await notifier_module._until_quiet(
            stand_in,  # type: ignore[arg-type]
            os.getpid(),
            deadline_s=30,
        )

    assert waited is not None
    assert stand_in.reads == 3  # three windows: busy, busy, quiet


async def test_a_notifier_that_keeps_sockets_open_is_not_waited_for_past_the_deadline(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(notifier_module, "QUIET_WINDOW_S", 0.05)
    _cpu_readings(monkeypatch, [1.0])  # idle: only the open sockets keep it waiting
    stand_in = _Notifier(open_sockets=[12])

    async with _serving(stand_in):
        # a wait that ignored its deadline fails here, not at the suite's timeout
        waited = await asyncio.wait_for(
            notifier_module._until_quiet(
                stand_in,  # type: ignore[arg-type]
                os.getpid(),
                deadline_s=0.5,
            ),
            timeout=10,
        )

    assert waited is None
    assert "the notifier was not quiet within 0.5 s" in capsys.readouterr().out
