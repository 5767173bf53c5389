"""Every service starts while RabbitMQ or MongoDB is down, says what it waits for, and carries on.

RabbitMQ is cut off by a TCP relay in front of the shared broker (never the
broker itself); MongoDB is a free port where nothing listens, until an
embedded SecantusDB is started on it.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import ExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from reelflow_api.settings import Settings as ApiSettings
from reelflow_common.broker import amqp_channel
from reelflow_common.domain import ClipRequest
from reelflow_common.ops import FIRST_LINK_GRACE_S, FirstLink
from reelflow_common.store import ApiKeyStore, NewProject, Project, ProjectStore, TaskSucceeded
from reelflow_common.topology import CHECK_CLIP, SUBMIT_CLIP, Topology
from reelflow_devtools.embedded_mongo import embedded_mongo
from reelflow_devtools.ports import free_port
from reelflow_notifier.fanout import fanout
from reelflow_notifier.settings import Settings as NotifierSettings
from reelflow_poller.main import main as poller_main
from reelflow_poller.settings import Settings as PollerSettings
from reelflow_runware_sim.testing import RunningSimulator
from reelflow_submitter.main import main as submitter_main
from reelflow_submitter.settings import Settings as SubmitterSettings
from tests.integration.api_helpers import Api, assert_problem, finish, running_api
from tests.integration.notifier_helpers import client, receive, running_notifier
from tests.integration.worker_helpers import FAST_LADDERS, running, runware_settings
from tests.relay import TcpProxy
from tests.waiting import DEADLINE_S, eventually, eventually_returns

pytestmark = pytest.mark.integration

#: SecantusDB takes a few seconds to start on a busy machine
MONGO_START_S = 60.0

Main = Callable[..., Awaitable[None]]


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[TcpProxy]:
    """A relay to the shared broker, down until the test brings it back."""
    target = urlsplit(amqp_url)
    async with TcpProxy(target.hostname or "127.0.0.1", target.port or 5672) as relay:
        relay.go_down()
        yield relay


def via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host).geturl()


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def running_worker(main: Main, settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """``main(settings)`` in a task; a client for its operations port. Stops it on exit."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    stop = asyncio.Event()
    try:
        async with (
            running(main(settings, stop=stop, sock=sock), stop) as task,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=DEADLINE_S) as ops,
        ):

            async def answering() -> bool:
                assert not task.done(), "the worker exited while it should wait"
                try:
                    await ops.get("/healthz")
                except httpx.TransportError:
                    return False
                return True

            await eventually(answering, "the operations port answering")
            yield ops
        assert task.exception() is None
    finally:
        sock.close()


async def checks(ops: httpx.AsyncClient) -> tuple[int, dict[str, bool]]:
    response = await ops.get("/readyz")
    return response.status_code, response.json()["checks"]


async def until_checks(ops: httpx.AsyncClient, status: int, expected: dict[str, bool]) -> None:
    async def reached() -> bool:
        return await checks(ops) == (status, expected)

    await eventually(reached, f"/readyz {status} with {expected}")


@asynccontextmanager
async def mongodb_later(port: int, storage: Path) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """A function that starts SecantusDB on ``port``; it is stopped on exit.

    In a thread both ways: starting and stopping it blocks, and the service under
    test shares this event loop.
    """
    with ExitStack() as stack:

        async def start() -> None:
            await asyncio.to_thread(stack.enter_context, embedded_mongo(storage, port=port))

        try:
            yield start
        finally:
            await asyncio.to_thread(stack.close)


async def poison(amqp_url: str, topology: Topology, work_queue: str) -> bytes:
    """Publish an unparseable message to ``work_queue``; what its DLQ gets once it is consumed."""
    body = b"{not json"
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=topology.queue(work_queue),
        )
    return body


async def dead_lettered(amqp_url: str, topology: Topology, work_queue: str) -> bytes | None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        dlq = await channel.get_queue(topology.dead_letter_queue(work_queue), ensure=False)
        message = await dlq.get(no_ack=True, fail=False)
        return message.body if message else None


# --- workers -----------------------------------------------------------------------


async def test_a_poller_started_while_mongodb_is_down_becomes_ready_when_it_comes_back(
    settings_for: Callable[..., Any],
    amqp_url: str,
    runware_sim: RunningSimulator,
    tmp_path: Path,
) -> None:
    mongo_port = free_port()  # nothing listens here yet
    settings: PollerSettings = settings_for(
        PollerSettings,
        mongo_url=SecretStr(f"mongodb://127.0.0.1:{mongo_port}/?directConnection=true"),
        mongo_timeout_s=0.5,
        **FAST_LADDERS,
        **runware_settings(runware_sim),
    )
    topology = Topology.from_settings(settings)
    async with (
        mongodb_later(mongo_port, tmp_path) as start_mongodb,
        running_worker(poller_main, settings) as ops,
    ):
        assert (await ops.get("/healthz")).status_code == 200
        await until_checks(ops, 503, {"rabbitmq": True, "mongodb": False})

        await start_mongodb()
        await until_checks(ops, 200, {"rabbitmq": True, "mongodb": True})
        sent = await poison(amqp_url, topology, CHECK_CLIP)
        got = await eventually_returns(
            lambda: dead_lettered(amqp_url, topology, CHECK_CLIP), "a dead letter"
        )
        assert got == sent  # consuming: the poller carried on


async def test_a_submitter_started_while_rabbitmq_is_down_becomes_ready_when_it_comes_back(
    settings_for: Callable[..., Any],
    amqp_url: str,
    broker: TcpProxy,
    runware_sim: RunningSimulator,
) -> None:
    settings: SubmitterSettings = settings_for(
        SubmitterSettings,
        amqp_url=SecretStr(via(amqp_url, broker.port)),
        **FAST_LADDERS,
        **runware_settings(runware_sim),
    )
    topology = Topology.from_settings(settings)
    async with running_worker(submitter_main, settings) as ops:
        assert (await ops.get("/healthz")).status_code == 200
        await until_checks(ops, 503, {"rabbitmq": False, "mongodb": True})

        broker.come_back()
        await until_checks(ops, 200, {"rabbitmq": True, "mongodb": True})
        sent = await poison(amqp_url, topology, SUBMIT_CLIP)
        got = await eventually_returns(
            lambda: dead_lettered(amqp_url, topology, SUBMIT_CLIP), "a dead letter"
        )
        assert got == sent


async def test_a_worker_stopped_while_it_waits_returns_at_once(
    settings_for: Callable[..., Any],
    amqp_url: str,
    broker: TcpProxy,
    runware_sim: RunningSimulator,
) -> None:
    settings: PollerSettings = settings_for(
        PollerSettings,
        amqp_url=SecretStr(via(amqp_url, broker.port)),
        **runware_settings(runware_sim),
    )
    async with running_worker(poller_main, settings) as ops:
        await until_checks(ops, 503, {"rabbitmq": False, "mongodb": True})
    # running_worker set stop and found the task finished without an error.


# --- the api and the notifier --------------------------------------------------------


async def test_the_api_is_unready_until_its_first_link_then_ready_degraded_in_an_outage(
    settings_for: Callable[..., Any],
    amqp_url: str,
    broker: TcpProxy,
    mongo_db: Any,
    amqp_connection: Any,
) -> None:
    settings: ApiSettings = settings_for(
        ApiSettings,
        amqp_url=SecretStr(via(amqp_url, broker.port)),
        public_base_url="https://reelflow.test",
        webhook_secret=SecretStr("s3cret"),
        wait_check_interval_s=0.05,
    )
    async with running_api(settings, mongo_db, amqp_connection, wait_until_ready=False) as api:
        # Unready until its first link: a new replica takes no request before it, and one
        # that never links (wrong credentials, a conflicting topology) holds its rollout up.
        await until_checks(api.client, 503, {"rabbitmq": False, "mongodb": True})
        assert (await api.client.get("/readyz")).json()["status"] == "unavailable"
        broker.come_back()
        await until_checks(api.client, 200, {"rabbitmq": True, "mongodb": True})
        assert (await api.client.get("/readyz")).json()["status"] == "ok"
        tenant_id, auth = await api.new_tenant()
        linked = await api.create(auth)
        assert linked.status_code == 202
        assert [m.body["project_id"] for m in await api.drain()] == [
            linked.json()["project_id"]
        ] * 2

        # An outage after the link: ready (it stays in its Service), MongoDB is what it
        # requires now.
        broker.go_down()
        await until_checks(api.client, 200, {"rabbitmq": False, "mongodb": True})
        assert (await api.client.get("/readyz")).json()["status"] == "degraded"

        # Stored, its clips' leases expired at once for the reconciler: still a 202.
        early = await api.create(auth)
        webhook = await api.client.post(
            "/v1/webhooks/runware/s3cret?project_id=p1",
            json={"data": [{"taskUUID": str(uuid.uuid4()), "status": "success"}]},
        )
        assert early.status_code == 202
        problem = assert_problem(webhook, 503)
        assert webhook.headers["retry-after"]
        assert "unavailable" in problem["detail"]
        stored = await api.projects.get(early.json()["project_id"])
        assert stored is not None
        # A lease normally runs lease_s (600 s) from the create; these ran out at once.
        ends = [clip.lease.until - stored.created_at for clip in stored.clips if clip.lease]
        assert len(ends) == len(stored.clips)
        assert all(end < timedelta(seconds=settings.lease_s / 10) for end in ends)
        read = await api.client.get(f"/v1/projects/{stored.id}", headers=auth)
        assert read.status_code == 200
        # No event can wake a ?wait= (no broker): its re-reads answer it.
        waiting = asyncio.create_task(api.create(auth, wait=DEADLINE_S))
        waited = await eventually_returns(
            lambda: another_project(api, tenant_id, linked.json()["project_id"], stored.id),
            "the waiting project stored",
        )
        for clip in waited.clips:
            await finish(api, waited.id, clip.task_uuid)
        answered = await asyncio.wait_for(waiting, DEADLINE_S)
        assert (answered.status_code, answered.json()["all_complete"]) == (200, True)

        broker.come_back()
        await until_checks(api.client, 200, {"rabbitmq": True, "mongodb": True})
        assert (await api.client.get("/readyz")).json()["status"] == "ok"


class Clock:
    """A monotonic clock the test moves: a ``FirstLink``'s grace passes when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def moved_by(clock: Clock) -> Callable[..., FirstLink]:
    """``FirstLink`` on ``clock``, for an app to build its own with."""

    def build(*args: Any, **kwargs: Any) -> FirstLink:
        return FirstLink(*args, clock=clock, **kwargs)

    return build


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{parts.username or 'guest'}:{password}@{host}").geturl()


async def test_an_api_started_in_an_outage_is_ready_degraded_once_its_grace_has_passed(
    settings_for: Callable[..., Any],
    amqp_url: str,
    broker: TcpProxy,
    mongo_db: Any,
    amqp_connection: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A replica that (re)starts while RabbitMQ is unreachable (a drain, an OOM kill, a
    scale-out) joins the Service, degraded, after the grace: an outage must not shrink the
    front door to the replicas that happened to link before it."""
    clock = Clock()
    monkeypatch.setattr("reelflow_api.app.FirstLink", moved_by(clock))
    settings: ApiSettings = settings_for(
        ApiSettings, amqp_url=SecretStr(via(amqp_url, broker.port))
    )
    async with running_api(settings, mongo_db, amqp_connection, wait_until_ready=False) as api:
        await until_checks(api.client, 503, {"rabbitmq": False, "mongodb": True})

        clock.now = FIRST_LINK_GRACE_S
        await until_checks(api.client, 200, {"rabbitmq": False, "mongodb": True})
        assert (await api.client.get("/readyz")).json()["status"] == "degraded"
        broker.come_back()
        await until_checks(api.client, 200, {"rabbitmq": True, "mongodb": True})
        assert (await api.client.get("/readyz")).json()["status"] == "ok"


def refused_login(lines: list[MutableMapping[str, Any]]) -> bool:
    return any(
        line["event"] == "waiting_for_dependency"
        and line["error"].startswith("ProbableAuthenticationError")
        for line in lines
    )


async def test_an_api_the_broker_refuses_stays_unready_past_the_grace(
    settings_for: Callable[..., Any],
    amqp_url: str,
    mongo_db: Any,
    amqp_connection: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Wrong credentials (``ACCESS_REFUSED``) are no outage: the replica must hold its rollout
    up rather than serve without a broker it will never reach."""
    clock = Clock()
    monkeypatch.setattr("reelflow_api.app.FirstLink", moved_by(clock))
    refused = SecretStr(with_password(amqp_url, "not-the-password"))
    settings: ApiSettings = settings_for(ApiSettings, amqp_url=refused)
    with capture_logs() as lines:
        async with running_api(settings, mongo_db, amqp_connection, wait_until_ready=False) as api:
            await eventually(lambda: refused_login(lines), "the broker refused the login")
            clock.now = FIRST_LINK_GRACE_S

            # Waited for: MongoDB's check is a live ping, which a loaded machine can time out.
            await until_checks(api.client, 503, {"rabbitmq": False, "mongodb": True})


async def test_a_notifier_started_in_an_outage_is_ready_degraded_once_its_grace_has_passed(
    settings_for: Callable[..., Any],
    amqp_url: str,
    broker: TcpProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr("reelflow_notifier.app.FirstLink", moved_by(clock))
    settings = notifier_settings(settings_for, amqp_url, broker)
    async with (
        running_notifier(settings, wait_until_ready=False) as notifier,
        httpx.AsyncClient(base_url=notifier.http_url, timeout=DEADLINE_S) as ops,
    ):
        await until_checks(ops, 503, {"rabbitmq": False, "mongodb": True})

        clock.now = FIRST_LINK_GRACE_S
        await until_checks(ops, 200, {"rabbitmq": False, "mongodb": True})
        assert (await ops.get("/readyz")).json()["status"] == "degraded"


async def another_project(api: Api, tenant_id: str, *known: str) -> Project | None:
    """The tenant's newest project other than the ``known`` ones, once it is stored."""
    page, _cursor = await api.projects.list(tenant_id)
    return next((project for project in page if project.id not in known), None)


def notifier_settings(
    settings_for: Callable[..., Any], amqp_url: str, broker: TcpProxy
) -> NotifierSettings:
    """A notifier's settings, its broker behind the relay."""
    settings: NotifierSettings = settings_for(
        NotifierSettings,
        amqp_url=SecretStr(via(amqp_url, broker.port)),
        http_host="127.0.0.1",
        http_port=0,
    )
    return settings


async def test_the_notifier_is_unready_until_its_first_link_then_ready_degraded_in_an_outage(
    settings_for: Callable[..., Any], amqp_url: str, broker: TcpProxy
) -> None:
    settings = notifier_settings(settings_for, amqp_url, broker)
    async with (
        running_notifier(settings, wait_until_ready=False) as notifier,
        httpx.AsyncClient(base_url=notifier.http_url, timeout=DEADLINE_S) as ops,
    ):
        assert (await ops.get("/healthz")).status_code == 200
        # Unready until its first link (its fan-out queue declared and consumed).
        await until_checks(ops, 503, {"rabbitmq": False, "mongodb": True})
        assert (await ops.get("/readyz")).json()["status"] == "unavailable"

        broker.come_back()
        await until_checks(ops, 200, {"rabbitmq": True, "mongodb": True})
        assert (await ops.get("/readyz")).json()["status"] == "ok"

        # Ready in an outage after the link: sockets open and get their snapshots from
        # MongoDB, and catch up once the broker is back.
        broker.go_down()
        await until_checks(ops, 200, {"rabbitmq": False, "mongodb": True})
        assert (await ops.get("/readyz")).json()["status"] == "degraded"


async def test_a_notifier_whose_broker_went_away_still_stops_when_asked(
    settings_for: Callable[..., Any], amqp_url: str, broker: TcpProxy
) -> None:
    # Found by make chaos: the fan-out's consumer cancel waited for the broker to
    # come back, so a notifier told to stop during an outage never stopped.
    settings = notifier_settings(settings_for, amqp_url, broker)
    broker.come_back()
    async with (
        running_notifier(settings) as notifier,  # stopping it is bounded: it fails past that
        httpx.AsyncClient(base_url=notifier.http_url, timeout=DEADLINE_S) as ops,
    ):
        broker.go_down()
        await until_checks(ops, 200, {"rabbitmq": False, "mongodb": True})


async def test_a_notifier_without_its_broker_serves_sockets_that_catch_up_when_it_returns(
    settings_for: Callable[..., Any], amqp_url: str, broker: TcpProxy, mongo_db: Any
) -> None:
    """Why the notifier need not be unready without RabbitMQ: nothing is lost meanwhile.

    Changes are stored but their events never reach it (not at start, nor after a drop);
    once the broker answers, every socket catches up from the event log by itself.
    """
    settings = notifier_settings(settings_for, amqp_url, broker)
    api_keys = ApiKeyStore(mongo_db)
    key = await api_keys.issue_key(await api_keys.create_tenant("acme"))
    projects = ProjectStore(mongo_db)
    new = NewProject(
        tenant_id=(await api_keys.tenant_for_key(key)) or "",
        title="Trip to Lisbon",
        model="google:3@3",
        scenes=[ClipRequest(prompt="scene 0")],
    )
    project = (await projects.create(new)).project
    clip = project.clips[0]
    assert clip.lease is not None
    async with (
        running_notifier(settings, wait_until_ready=False) as notifier,
        httpx.AsyncClient(base_url=notifier.http_url, timeout=DEADLINE_S) as ops,
        client(f"{notifier.base_url}/v1/ws/projects/{project.id}", key=key) as ws,
    ):
        # Unready before its first link (out of its Service), yet a socket opened then
        # (the pod reached directly) is caught up too.
        await until_checks(ops, 503, {"rabbitmq": False, "mongodb": True})
        assert (await receive(ws))["type"] == "snapshot"
        await projects.mark_processing(project.id, 0, clip.task_uuid, token=clip.lease.token)

        broker.come_back()  # its first link
        caught_up = await receive(ws)
        assert (caught_up["type"], caught_up["seq"]) == ("clip.updated", 1)
        await until_checks(ops, 200, {"rabbitmq": True, "mongodb": True})

        broker.go_down()  # a drop after the link: the robust connection's reconnect
        await until_checks(ops, 200, {"rabbitmq": False, "mongodb": True})
        video = TaskSucceeded(video_url="https://cdn.example/0.mp4", cost=0.12)
        await projects.record(project.id, 0, clip.task_uuid, video)
        broker.come_back()
        seqs = [(await receive(ws))["seq"]]
        while seqs[-1] < (await projects.get(project.id) or project).seq:
            seqs.append((await receive(ws))["seq"])
        assert seqs == list(range(2, seqs[-1] + 1))


def failing_once(real: Callable[..., Any]) -> Callable[..., Any]:
    """``real``, but its first call fails as a broker dropped at that moment would."""
    calls = 0

    def call(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise aio_pika.exceptions.AMQPConnectionError("dropped halfway through the link")
        return real(*args, **kwargs)

    return call


async def test_an_api_whose_first_link_fails_halfway_links_on_the_next_attempt(
    settings_for: Callable[..., Any],
    mongo_db: Any,
    amqp_connection: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Connected, then dropped before its channels opened: it must not stay degraded for ever
    (ready, in its Service, every dispatch left to the reconciler and every webhook a 503)."""
    monkeypatch.setattr("reelflow_api.app.amqp_channel", failing_once(amqp_channel))
    settings: ApiSettings = settings_for(ApiSettings)
    async with running_api(settings, mongo_db, amqp_connection) as api:  # waits for "ok"
        created = await api.create(await api.tenant())

        assert created.status_code == 202
        assert len(await api.drain()) == 2


async def test_a_notifier_whose_first_link_fails_halfway_links_on_the_next_attempt(
    settings_for: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("reelflow_notifier.app.fanout", failing_once(fanout))
    settings: NotifierSettings = settings_for(NotifierSettings, http_host="127.0.0.1", http_port=0)
    async with (
        running_notifier(settings, wait_until_ready=False) as notifier,
        httpx.AsyncClient(base_url=notifier.http_url, timeout=DEADLINE_S) as ops,
    ):
        await until_checks(ops, 200, {"rabbitmq": True, "mongodb": True})


def refused(what: str) -> Callable[..., Any]:
    """A stand-in for ``what`` that fails as a declare RabbitMQ refuses does: not an outage,
    so the link gives up (``background_work_crashed``)."""

    async def call(*_args: Any, **_kwargs: Any) -> None:
        raise aio_pika.exceptions.ChannelPreconditionFailed(406, f"PRECONDITION_FAILED - {what}")

    return call


def crashed(lines: list[MutableMapping[str, Any]]) -> bool:
    return any(
        line["event"] == "background_work_crashed" and line["work"] == "amqp" for line in lines
    )


async def test_an_api_whose_link_gave_up_stays_unready(
    settings_for: Callable[..., Any],
    mongo_db: Any,
    amqp_connection: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A link that gave up retries no more: the replica must not serve without it for ever."""
    monkeypatch.setattr("reelflow_api.app.declare_topology", refused("inequivalent arg"))
    settings: ApiSettings = settings_for(ApiSettings)
    with capture_logs() as lines:
        async with running_api(settings, mongo_db, amqp_connection, wait_until_ready=False) as api:
            await eventually(lambda: crashed(lines), "the link given up")
            await until_checks(api.client, 503, {"rabbitmq": False, "mongodb": True})


async def test_a_notifier_whose_link_gave_up_stays_unready(
    settings_for: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("reelflow_notifier.app.declare_topology", refused("inequivalent arg"))
    settings: NotifierSettings = settings_for(NotifierSettings, http_host="127.0.0.1", http_port=0)
    with capture_logs() as lines:
        async with (
            running_notifier(settings, wait_until_ready=False) as notifier,
            httpx.AsyncClient(base_url=notifier.http_url, timeout=DEADLINE_S) as ops,
        ):
            await eventually(lambda: crashed(lines), "the link given up")
            await until_checks(ops, 503, {"rabbitmq": False, "mongodb": True})
