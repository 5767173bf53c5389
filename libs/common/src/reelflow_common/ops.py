"""Operations endpoints every service answers: ``/healthz``, ``/readyz``, ``/metrics``.

Workers serve them on their own port with :func:`serve_ops`; the API adds
:func:`ops_routes` to its FastAPI app.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Literal

import uvicorn
from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import AuthenticationError, ProbableAuthenticationError
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
    :class:`FirstLink`, whose check may change ``required``: read after the checks).
    """

    async def healthz(_request: Request) -> Response:
        return JSONResponse(Health().model_dump())

    async def readyz(_request: Request) -> Response:
        names = list(readiness)
        results = await asyncio.gather(
            *(_run_check(readiness[name], check_timeout_s) for name in names)
        )
        gating = frozenset(required)  # after the checks, which may change it (FirstLink)
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


#: how long after a replica's start its first broker link is required while RabbitMQ is only
#: unreachable (refused, timed out, DNS failing): a pod that starts in an outage (a drain, an
#: OOM kill, a scale-out, a rollout) joins its Service then, degraded, as the replicas that
#: linked before it stay in theirs (``FirstLink``)
FIRST_LINK_GRACE_S = 30.0

#: what the broker answers a link whose settings are wrong, which waiting does not change (each
#: an outage to ``is_transient``, waited out for ever): a login refused (``ACCESS_REFUSED``:
#: wrong credentials, no access to the vhost), no authentication mechanism in common
_REFUSED = (AuthenticationError, ProbableAuthenticationError)


class FirstLink:
    """A dependency required by ``/readyz`` until the first link to it has succeeded, for a
    bounded grace while it is only unreachable, and only reported after that: RabbitMQ in the
    api and the notifier.

    Until :meth:`linked` (its queues and subscriptions declared), ``name`` is required for
    ``grace_s`` after the start (a 503: a new replica takes no request before its link
    while the broker may be a moment away). Past that, a broker that is down or unreachable
    (:meth:`failed` told only outages) is a 200 ``degraded``: the link goes on trying, as a
    linked replica's reconnects, and a replica that starts in an outage serves reads like
    the others rather than shrink the front door. A link the broker refuses (a login:
    :data:`_REFUSED`) or that ended in error (:meth:`watch`: a topology that conflicts, a
    vhost that does not exist, a bug; retried no more) stays required: a 503 that holds a
    rollout up, until the link succeeds (refused) or for good (ended: until the pod is
    replaced). After the link, an outage is a 200 ``degraded``: the link reconnects by
    itself.

    Registers ``name`` in ``readiness`` and ``required``, which the app hands to
    :func:`ops_routes`; until the link, its check decides at each probe whether ``name`` is
    still required. ``clock``: seconds, monotonic (tests move it).
    """

    def __init__(
        self,
        name: str,
        readiness: dict[str, ReadinessCheck],
        required: set[str],
        *,
        grace_s: float = FIRST_LINK_GRACE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._readiness = readiness
        self._required = required
        self._clock = clock
        self._grace_ends = clock() + grace_s
        self._refused = False
        #: no link yet, nor a link task that ended: ``_not_yet`` decides
        self._waiting = True
        readiness[name] = self._not_yet
        required.add(name)

    def failed(self, exc: Exception) -> None:
        """A failed attempt of the first link, which it waits out (``wait_for``'s
        ``on_failure``): one the broker refused keeps ``name`` required until the link."""
        if isinstance(exc, _REFUSED):
            self._refused = True

    def linked(self, check: ReadinessCheck) -> None:
        """The first link succeeded: ``check`` reports the dependency from now on, and
        its outages only degrade."""
        self._waiting = False
        self._readiness[self._name] = check
        self._required.discard(self._name)

    def watch(self, task: asyncio.Task[None]) -> None:
        """Required again, for good, once the link's ``task`` ends in error."""
        task.add_done_callback(self._ended)

    async def _not_yet(self) -> bool:
        # Required in the grace, or once refused; else only reported (ops_routes reads
        # ``required`` after the checks ran). Not waiting any more: a probe that got this
        # check before the link (or its end) runs it after, and decides nothing.
        if self._waiting:
            if self._refused or self._clock() < self._grace_ends:
                self._required.add(self._name)
            else:
                self._required.discard(self._name)
        return False

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        self._waiting = False
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
