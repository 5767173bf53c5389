"""The operations endpoints: liveness, readiness per dependency, Prometheus metrics."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import httpx
from aio_pika.exceptions import (
    AMQPConnectionError,
    ChannelPreconditionFailed,
    ProbableAuthenticationError,
)
from fastapi import FastAPI

from reelflow_common.metrics import MESSAGES_TOTAL
from reelflow_common.ops import FirstLink, ops_app, ops_routes, serve_ops
from tests.waiting import DEADLINE_S

Check = Callable[[], Awaitable[bool]]

BOTH = frozenset({"rabbitmq", "mongodb"})
CHECKS_UP = {"rabbitmq": True, "mongodb": True}
CHECKS_DOWN = {"rabbitmq": False, "mongodb": True}


def answers(value: bool) -> Check:
    async def check() -> bool:
        return value

    return check


async def raises() -> bool:
    raise ConnectionError("mongo is gone")


async def hangs() -> bool:
    await asyncio.Event().wait()
    return True


def client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ops")  # type: ignore[arg-type]


async def test_healthz_answers_ok() -> None:
    async with client(ops_app({"rabbitmq": answers(False)}, required=BOTH)) as http:
        response = await http.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_ok_when_every_dependency_answers() -> None:
    app = ops_app({"rabbitmq": answers(True), "mongodb": answers(True)}, required=BOTH)
    async with client(app) as http:
        response = await http.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"rabbitmq": True, "mongodb": True}}


async def test_readyz_names_the_required_dependency_that_is_down() -> None:
    app = ops_app({"rabbitmq": answers(False), "mongodb": answers(True)}, required=BOTH)
    async with client(app) as http:
        response = await http.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"rabbitmq": False, "mongodb": True},
    }


async def test_a_dependency_not_required_that_is_down_is_a_200_degraded() -> None:
    """The api and the notifier serve without RabbitMQ: they stay in their Service."""
    checks = {"rabbitmq": answers(False), "mongodb": answers(True)}
    async with client(ops_app(checks, required={"mongodb"})) as http:
        response = await http.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "checks": {"rabbitmq": False, "mongodb": True},
    }


async def test_a_required_dependency_down_is_a_503_whatever_the_others_say() -> None:
    checks = {"rabbitmq": answers(True), "mongodb": answers(False)}
    async with client(ops_app(checks, required={"mongodb"})) as http:
        response = await http.get("/readyz")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"


async def test_a_required_check_not_yet_registered_is_not_ready() -> None:
    async with client(ops_app({"rabbitmq": answers(True)}, required=BOTH)) as http:
        response = await http.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"rabbitmq": True}}


async def test_a_check_that_raises_or_hangs_counts_as_down() -> None:
    app = FastAPI()
    app.router.routes.extend(
        ops_routes({"mongodb": raises, "rabbitmq": hangs}, required=BOTH, check_timeout_s=0.05)
    )
    async with client(app) as http:
        response = await http.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"] == {"mongodb": False, "rabbitmq": False}


async def test_checks_added_after_the_routes_are_built_are_used() -> None:
    readiness: dict[str, Check] = {}
    app = ops_app(readiness, required={"mongodb"})
    readiness["mongodb"] = answers(False)

    async with client(app) as http:
        response = await http.get("/readyz")

    assert response.status_code == 503


async def test_metrics_are_in_prometheus_text_format() -> None:
    MESSAGES_TOTAL.labels(queue="ops.test", outcome="acked").inc()
    async with client(ops_app({}, required=())) as http:
        response = await http.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'reelflow_messages_total{outcome="acked",queue="ops.test"}' in response.text


async def test_serve_ops_answers_on_its_port_until_stopped() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()  # connections wait in the backlog until the server accepts them
    port = sock.getsockname()[1]
    stop = asyncio.Event()
    server = asyncio.create_task(
        serve_ops(ops_app({}, required=()), "127.0.0.1", port, stop, sock=sock)
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            response = await http.get("/healthz")
        assert response.json() == {"status": "ok"}
    finally:
        stop.set()
        await asyncio.wait_for(server, timeout=DEADLINE_S)
        sock.close()


async def readyz(app: object) -> tuple[int, dict[str, object]]:
    async with client(app) as http:
        response = await http.get("/readyz")
    return response.status_code, response.json()


async def test_a_first_link_is_required_until_it_succeeded_then_only_reported() -> None:
    readiness: dict[str, Check] = {"rabbitmq": answers(True), "mongodb": answers(True)}
    required = {"mongodb"}
    link = FirstLink("rabbitmq", readiness, required)
    app = ops_app(readiness, required=required)
    assert await readyz(app) == (503, {"status": "unavailable", "checks": CHECKS_DOWN})

    link.linked(answers(True))
    assert await readyz(app) == (200, {"status": "ok", "checks": CHECKS_UP})
    link.linked(answers(False))  # an outage after the link: the connection's check says so
    assert await readyz(app) == (200, {"status": "degraded", "checks": CHECKS_DOWN})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def first_link(clock: Clock) -> tuple[FirstLink, dict[str, Check], object]:
    """A ``FirstLink`` on ``clock`` (a 10 s grace) beside a MongoDB that answers; its checks
    and its app."""
    readiness: dict[str, Check] = {"mongodb": answers(True)}
    required = {"mongodb"}
    link = FirstLink("rabbitmq", readiness, required, grace_s=10.0, clock=clock)
    return link, readiness, ops_app(readiness, required=required)


async def test_a_broker_only_unreachable_is_required_for_the_grace_then_only_reported() -> None:
    """A replica that starts in an outage joins its Service, degraded, after the grace."""
    clock = Clock()
    link, _, app = first_link(clock)
    link.failed(AMQPConnectionError(111, "Connect call failed"))
    clock.now = 9.9
    assert await readyz(app) == (503, {"status": "unavailable", "checks": CHECKS_DOWN})

    clock.now = 10.0
    assert await readyz(app) == (200, {"status": "degraded", "checks": CHECKS_DOWN})
    link.linked(answers(True))
    assert await readyz(app) == (200, {"status": "ok", "checks": CHECKS_UP})


async def test_a_broker_that_refused_the_login_is_required_past_the_grace_until_linked() -> None:
    clock = Clock()
    link, _, app = first_link(clock)
    link.failed(ProbableAuthenticationError("ACCESS_REFUSED - Login was refused"))
    link.failed(AMQPConnectionError(111, "Connect call failed"))  # still the wrong password
    clock.now = 60.0
    assert await readyz(app) == (503, {"status": "unavailable", "checks": CHECKS_DOWN})

    link.linked(answers(True))  # the secret fixed: the link's next attempt
    assert await readyz(app) == (200, {"status": "ok", "checks": CHECKS_UP})


async def test_a_probe_that_took_the_waiting_check_before_the_link_decides_nothing_after() -> None:
    clock = Clock()
    link, readiness, app = first_link(clock)
    waiting = readiness["rabbitmq"]  # a probe's, in the grace
    link.linked(answers(False))  # linked, then an outage
    assert await waiting() is False  # that probe's check runs only now

    assert await readyz(app) == (200, {"status": "degraded", "checks": CHECKS_DOWN})


async def test_a_link_that_gave_up_after_the_grace_is_required_again() -> None:
    clock = Clock()
    link, _, app = first_link(clock)
    clock.now = 10.0
    assert (await readyz(app))[0] == 200

    async def gives_up() -> None:
        raise ChannelPreconditionFailed(406, "PRECONDITION_FAILED - inequivalent arg")

    task = asyncio.create_task(gives_up())
    link.watch(task)
    await asyncio.gather(task, return_exceptions=True)

    assert await readyz(app) == (503, {"status": "unavailable", "checks": CHECKS_DOWN})


async def test_a_link_task_that_crashed_is_required_again_for_good() -> None:
    readiness: dict[str, Check] = {"mongodb": answers(True)}
    required = {"mongodb"}
    link = FirstLink("rabbitmq", readiness, required)
    app = ops_app(readiness, required=required)
    link.linked(answers(True))

    async def gives_up() -> None:
        raise ValueError("not an outage: retried no more")

    task = asyncio.create_task(gives_up())
    link.watch(task)
    await asyncio.gather(task, return_exceptions=True)  # its callbacks ran, watch's first

    assert await readyz(app) == (503, {"status": "unavailable", "checks": CHECKS_DOWN})


async def test_a_link_task_cancelled_at_shutdown_leaves_readiness_as_it_was() -> None:
    readiness: dict[str, Check] = {"mongodb": answers(True)}
    required = {"mongodb"}
    link = FirstLink("rabbitmq", readiness, required)
    app = ops_app(readiness, required=required)
    link.linked(answers(True))

    async def holds() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(holds())
    link.watch(task)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert await readyz(app) == (200, {"status": "ok", "checks": CHECKS_UP})
