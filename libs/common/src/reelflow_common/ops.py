"""Operations endpoints every service answers: ``/healthz``, ``/readyz``, ``/metrics``.

Workers serve them on their own port with :func:`serve_ops`; the API adds
:func:`ops_routes` to its FastAPI app.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Literal

import uvicorn
from aio_pika.abc import AbstractConnection
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reelflow_common.errors import ReelflowError
from reelflow_common.logging import get_logger

ReadinessCheck = Callable[[], Awaitable[bool]]

#: the operations paths: never load-shed, never behind authentication
OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

log = get_logger(__name__)

#: a service's exit code when its HTTP port is another process's (uvicorn's startup failure: 3)
EXIT_PORT_TAKEN = 4


class PortTaken(ReelflowError):
    """The service's HTTP port is another process's: it cannot serve there."""


def bound_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` as uvicorn binds one, for its ``serve(sockets=)``.

    A service binds it before it starts anything else: a port that is taken stops it
    with :class:`PortTaken` at once, before a connection or a task is left to close.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortTaken(f"port {port} on {host}: {exc.strerror or exc}") from exc
    return sock


class Health(BaseModel):
    """``GET /healthz``: the process is alive."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """``GET /readyz``: 200 while every dependency the service requires answers, else 503
    with the same body.

    ``status`` is ``ok`` only when every check is true; ``degraded`` (still 200) when a
    dependency the service can serve without is down; ``unavailable`` (503) when a
    required one is.
    """

    status: Literal["ok", "degraded", "unavailable"] = Field(
        description=(
            "ok: every check true; degraded (200): a dependency the service serves without"
            " is down; unavailable (503): a required one is"
        )
    )
    checks: dict[str, bool] = Field(
        description="each dependency (rabbitmq, mongodb) and whether it answered",
        examples=[{"rabbitmq": True, "mongodb": True}],
    )


def ops_routes(
    readiness: Mapping[str, ReadinessCheck],
    *,
    required: Collection[str],
    check_timeout_s: float = 2.0,
) -> list[Route]:
    """The three routes, for any Starlette or FastAPI app.

    ``required`` names the checks that gate readiness (503 while one is false,
    or missing); the others are reported, and while one is false the answer is
    a 200 ``degraded``. Both are read on every request, so an app may fill them
    in its lifespan after building the routes (and stop requiring a check:
    :class:`FirstLink`).
    """

    async def healthz(_request: Request) -> Response:
        return JSONResponse(Health().model_dump())

    async def readyz(_request: Request) -> Response:
        gating = frozenset(required)
        names = list(readiness)
        results = await asyncio.gather(
            *(_run_check(readiness[name], check_timeout_s) for name in names)
        )
        checks = dict(zip(names, results, strict=True))
        ready = all(checks.get(name, False) for name in gating)
        if ready and all(results):
            return JSONResponse(Readiness(status="ok", checks=checks).model_dump())
        if ready:
            log.warning("degraded", checks=checks)
            return JSONResponse(Readiness(status="degraded", checks=checks).model_dump())
        log.warning("not_ready", checks=checks)
        return JSONResponse(
            Readiness(status="unavailable", checks=checks).model_dump(), status_code=503
        )

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"], include_in_schema=False),
        Route("/readyz", readyz, methods=["GET"], include_in_schema=False),
        Route("/metrics", metrics, methods=["GET"], include_in_schema=False),
    ]


def ops_app(readiness: Mapping[str, ReadinessCheck], *, required: Collection[str]) -> Starlette:
    """A bare app with only the operations routes (the workers' ops port)."""
    return Starlette(routes=ops_routes(readiness, required=required))


async def _run_check(check: ReadinessCheck, timeout_s: float) -> bool:
    # A probe must answer quickly: a hung dependency is an unavailable one.
    try:
        async with asyncio.timeout(timeout_s):
            return bool(await check())
    except Exception:
        return False


async def not_yet() -> bool:
    """The readiness check of a dependency the service is still waiting for."""
    return False


def amqp_ready(connection: AbstractConnection) -> ReadinessCheck:
    """Ready while the connection is open (false while a robust one reconnects)."""

    async def check() -> bool:
        return connection.connected.is_set() and not connection.is_closed

    return check


class FirstLink:
    """A dependency required by ``/readyz`` until the first link to it has succeeded, and
    only reported after that: RabbitMQ in the api and the notifier.

    Until :meth:`linked` (its queues and subscriptions declared), ``name`` is required:
    a 503, so a new replica takes no request before its link, and one whose link never
    comes up (wrong credentials, which ``wait_for`` waits out for ever; a topology that
    conflicts) holds a rollout up. After it, an outage is a 200 ``degraded``: the link
    reconnects by itself. A link task that ended in error (:meth:`watch`: not an outage,
    retried no more) makes it required again, for good: 503 until the pod is replaced.

    Registers ``name`` in ``readiness`` and ``required``, which the app hands to
    :func:`ops_routes`.
    """

    def __init__(self, name: str, readiness: dict[str, ReadinessCheck], required: set[str]) -> None:
        self._name = name
        self._readiness = readiness
        self._required = required
        readiness[name] = not_yet
        required.add(name)

    def linked(self, check: ReadinessCheck) -> None:
        """The first link succeeded: ``check`` reports the dependency from now on, and
        its outages only degrade."""
        self._readiness[self._name] = check
        self._required.discard(self._name)

    def watch(self, task: asyncio.Task[None]) -> None:
        """Required again, for good, once the link's ``task`` ends in error."""
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        self._readiness[self._name] = _gave_up
        self._required.add(self._name)


async def _gave_up() -> bool:
    return False


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The service owns SIGTERM/SIGINT (lifecycle.shutdown_event); this server
        # stops through ``stop`` like everything else.
        yield


async def serve_ops(
    app: Starlette,
    host: str,
    port: int,
    stop: asyncio.Event,
    *,
    sock: socket.socket | None = None,
) -> None:
    """Serve ``app`` in the running loop until ``stop`` is set.

    ``sock``, an already bound socket, is used instead of ``host``/``port``
    (tests bind port 0 to get a free one).
    """
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
    )
    server = _Server(config)

    async def exit_on_stop() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(exit_on_stop())
    try:
        await server.serve(sockets=[sock] if sock is not None else None)
    finally:
        watcher.cancel()


@asynccontextmanager
async def ops_server(
    app: Starlette, host: str, port: int, *, sock: socket.socket | None = None
) -> AsyncIterator[None]:
    """Serve ``app`` while the block runs: a worker answers ``/healthz`` from its first moment.

    Its port is bound on entry (:class:`PortTaken` if it cannot be). Entered before
    the worker waits for RabbitMQ and MongoDB, so the probes answer (and ``/readyz``
    names what is missing) while it waits.
    """
    done = asyncio.Event()
    sock = sock or bound_socket(host, port)
    server = asyncio.create_task(serve_ops(app, host, port, done, sock=sock), name="ops_server")
    try:
        yield
    finally:
        done.set()
        await server
