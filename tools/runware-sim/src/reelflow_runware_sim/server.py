"""Serve a simulator with uvicorn on a socket bound up front, so `port=0` can be reported."""

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator

import uvicorn

from .app import Simulator, create_app
from .config import SimConfig
from .persistence import KeptState

log = logging.getLogger(__name__)

_START_TIMEOUT = 10.0  # seconds; binding is done already, so only the lifespan can be slow
# Above uvicorn's graceful-shutdown bound (5 s) plus its 0.1 s ticks.
_STOP_TIMEOUT = 10.0


class _Server(uvicorn.Server):
    """uvicorn with a `ready` event, and signal handling only when asked for."""

    def __init__(self, config: uvicorn.Config, *, handle_signals: bool) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()
        self._handle_signals = handle_signals
        self._exit = asyncio.Event()

    def request_exit(self) -> None:
        """Begin a graceful shutdown."""
        self.should_exit = True
        self._exit.set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.set()

    async def main_loop(self) -> None:
        if self._handle_signals:
            await super().main_loop()
            return
        # In process nothing but request_exit() stops the server, so wait for it instead
        # of uvicorn's polling of should_exit every 0.1 s, which every test would pay for.
        await self.on_tick(0)  # sets the Date and Server headers once
        await self._exit.wait()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # In tests several servers share one process; each would steal and restore
        # SIGINT out of order, and Ctrl-C would stop reaching pytest.
        if self._handle_signals:
            with super().capture_signals():
                yield
        else:
            yield


class SimServer:
    """One simulator behind uvicorn: `start()` and `stop()`, or `serve()` until a signal."""

    def __init__(self, config: SimConfig, *, in_process: bool = False) -> None:
        self.sim = Simulator(config)
        self._socket = _bind_kept(config.host, config.port, self.sim.kept)
        port = self.sim.port = self._socket.getsockname()[1]
        self.url = f"http://{_url_host(config.host)}:{port}"
        if not self.sim.state.public_url:
            self.sim.state.public_url = self.url
        uvicorn_config = uvicorn.Config(
            create_app(self.sim),
            # In process, leave the host's logging alone: records propagate to the root logger,
            # and uvicorn's loggers keep the host's levels (they are process-wide).
            log_level=None if in_process else config.log_level,
            access_log=False,
            timeout_graceful_shutdown=5,
            log_config=None if in_process else uvicorn.config.LOGGING_CONFIG,
        )
        self._server = _Server(uvicorn_config, handle_signals=not in_process)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start serving in a background task; return once it accepts connections."""
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        ready = asyncio.create_task(self._server.ready.wait())
        timeout = _START_TIMEOUT
        done, _ = await asyncio.wait(
            {self._task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if ready in done:
            return
        ready.cancel()
        if self._task in done:
            self._task.result()  # raises what stopped it
            raise RuntimeError("the simulator stopped while starting")
        await self.stop()
        raise TimeoutError(f"the simulator did not start within {timeout} s")

    async def wait(self) -> None:
        """Wait until the server stops (on SIGINT/SIGTERM when it handles signals)."""
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        """Stop gracefully: finish open requests, cancel webhook deliveries, close the socket."""
        self._server.request_exit()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, _STOP_TIMEOUT)
            finally:
                self._socket.close()


def _bind_kept(host: str, port: int, kept: KeptState | None) -> socket.socket:
    """Bind `port`; for port 0, the port of the run whose state was kept if it is free, so
    the videoURLs that run handed out keep working (Runware's do, wherever it runs)."""
    if port == 0 and kept is not None and kept.port is not None:
        try:
            return _bind(host, kept.port)
        except OSError as exc:
            log.warning(
                "kept_port_taken port=%d error=%r: videoURLs of the earlier run no longer serve",
                kept.port,
                exc,
            )
    return _bind(host, port)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it each keep-alive answer waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _url_host(host: str) -> str:
    """A host to put in a URL: loopback for a wildcard bind, brackets for IPv6."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
