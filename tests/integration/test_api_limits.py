"""The API in-process: bodies that are too large or not text, and backing-service failures.

Every answer is problem+json: 413 for a body over the limit, 422 for JSON text
that holds a lone surrogate or is not UTF-8, 503 with ``Retry-After`` for any MongoDB, RabbitMQ
or HTTP failure behind a route, 500 for a bug.
"""

from __future__ import annotations

import codecs
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any, cast

import httpx
import pytest
import pytest_asyncio
from aio_pika.exceptions import AMQPConnectionError, ChannelInvalidStateError
from pydantic import SecretStr
from pymongo.errors import (
    AutoReconnect,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
    WriteConcernError,
)

from reelflow_api.app import READ_BATCH
from reelflow_api.deps import AppState
from reelflow_common.batching import Batcher
from reelflow_common.errors import TransientError
from reelflow_common.store import ApiKeyStore, ProjectStore
from reelflow_common.topology import HINTED_CHECK, SUBMIT_CLIP
from tests.integration.api_helpers import Api, assert_problem, isolated_api

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

MAX_BODY = 4096
SECRET = "hook-secret-limits"
LONE_HIGH = r'"\ud800"'
LONE_LOW = r'"x\udc00y"'


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(amqp_url: str, mongo_url: str) -> AsyncIterator[Api]:
    async with isolated_api(
        amqp_url,
        mongo_url,
        max_body_bytes=MAX_BODY,
        public_base_url="https://reelflow.test",
        webhook_secret=SecretStr(SECRET),
    ) as api:
        yield api


@pytest_asyncio.fixture(loop_scope="module")
async def auth(api: Api) -> dict[str, str]:
    return await api.tenant()


def json_headers(auth: dict[str, str]) -> dict[str, str]:
    return auth | {"Content-Type": "application/json"}


def project_body(prompt_json: str) -> bytes:
    return ('{"scenes": [{"prompt": ' + prompt_json + "}]}").encode()


# --- body size ----------------------------------------------------------------


async def test_a_declared_length_over_the_limit_is_413_at_once(
    api: Api, auth: dict[str, str]
) -> None:
    body = project_body('"' + "p" * MAX_BODY + '"')

    response = await api.client.post("/v1/projects", content=body, headers=json_headers(auth))

    problem = assert_problem(response, 413)
    assert str(MAX_BODY) in problem["detail"]
    assert await api.drain(SUBMIT_CLIP) == []


async def test_a_streamed_body_is_413_once_its_bytes_pass_the_limit(
    api: Api, auth: dict[str, str]
) -> None:
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):  # 100 KB in all, with no Content-Length to go by
            sent.append(1)
            yield b" " * 1024

    response = await api.client.post("/v1/projects", content=chunks(), headers=json_headers(auth))

    assert_problem(response, 413)
    assert len(sent) < 100, "the whole body was read before it was refused"


async def test_every_route_limits_its_body(api: Api, auth: dict[str, str]) -> None:
    big = b"x" * (MAX_BODY + 1)
    answers = [
        await api.client.post(f"/v1/webhooks/runware/{SECRET}?project_id=p", content=big),
        await api.client.post(f"/v1/projects/{uuid.uuid4()}/cancel", content=big, headers=auth),
        await api.client.request("GET", "/v1/projects", content=big, headers=auth),
    ]

    for response in answers:
        assert_problem(response, 413)


async def test_a_body_within_the_limit_is_accepted(api: Api, auth: dict[str, str]) -> None:
    response = await api.client.post(
        "/v1/projects", content=project_body('"a fox"'), headers=json_headers(auth)
    )

    assert response.status_code == 202, response.text
    assert len(await api.drain(SUBMIT_CLIP)) == 1


# --- text that is not text ---------------------------------------------------------


@pytest.mark.parametrize("prompt", [LONE_HIGH, LONE_LOW], ids=["high", "low"])
async def test_a_lone_surrogate_in_a_project_is_a_422(
    api: Api, auth: dict[str, str], prompt: str
) -> None:
    response = await api.client.post(
        "/v1/projects", content=project_body(prompt), headers=json_headers(auth)
    )

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["body"]
    assert "surrogate" in problem["detail"]
    assert await api.drain(SUBMIT_CLIP) == []


async def test_a_lone_surrogate_in_a_webhook_is_a_422(api: Api) -> None:
    body = '{"data": [{"taskUUID": ' + LONE_HIGH + ', "status": "success"}]}'

    response = await api.client.post(
        f"/v1/webhooks/runware/{SECRET}",
        params={"project_id": "p-1"},
        content=body.encode(),
        headers={"Content-Type": "application/json"},
    )

    assert_problem(response, 422)
    assert await api.drain(HINTED_CHECK) == []


async def test_a_surrogate_pair_is_text_and_accepted(api: Api, auth: dict[str, str]) -> None:
    response = await api.client.post(
        "/v1/projects", content=project_body(r'"a fox \ud83e\udd8a"'), headers=json_headers(auth)
    )

    assert response.status_code == 202, response.text
    received = await api.drain(SUBMIT_CLIP)
    assert received[0].body["request"]["prompt"] == "a fox \N{FOX FACE}"
    stored = await api.projects.get(received[0].body["project_id"], with_requests=True)
    assert stored is not None
    assert stored.requests is not None
    assert stored.requests[0].prompt == "a fox \N{FOX FACE}"


async def test_an_escaped_backslash_before_u_d800_is_plain_text(
    api: Api, auth: dict[str, str]
) -> None:
    response = await api.client.post(
        "/v1/projects", content=project_body(r'"path \\ud800"'), headers=json_headers(auth)
    )

    assert response.status_code == 202, response.text
    await api.drain(SUBMIT_CLIP)


@pytest.mark.parametrize(
    "encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]
)
@pytest.mark.parametrize("prompt", ['"a cat"', LONE_HIGH], ids=["valid", "lone-surrogate"])
async def test_a_body_json_would_read_as_utf16_or_utf32_is_a_422(
    api: Api, auth: dict[str, str], encoding: str, prompt: str
) -> None:
    # json.loads reads these too (told by a byte order mark, or by NUL bytes among the first
    # four); the checks before it read the bytes as UTF-8, and a lone surrogate passed them.
    body = project_body(prompt).decode().encode(encoding)

    response = await api.client.post("/v1/projects", content=body, headers=json_headers(auth))

    problem = assert_problem(response, 422)
    msg = (
        "not UTF-8: its first bytes (a byte order mark, or NUL bytes) make it"
        f" {encoding.upper()}; send JSON text encoded as UTF-8 (RFC 8259)"
    )
    assert problem["errors"] == [{"loc": ["body"], "msg": msg}]
    assert await api.drain(SUBMIT_CLIP) == []


async def test_a_webhook_in_utf16_is_a_422(api: Api) -> None:
    body = '{"data": [{"taskUUID": "' + str(uuid.uuid4()) + '", "status": "success"}]}'

    response = await api.client.post(
        f"/v1/webhooks/runware/{SECRET}",
        params={"project_id": "p-1"},
        content=body.encode("utf-16"),
        headers={"Content-Type": "application/json"},
    )

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["msg"].startswith("not UTF-8:")
    assert await api.drain(HINTED_CHECK) == []


@pytest.mark.parametrize("charset", ["utf-16", "iso-8859-1", "no-such-charset"])
async def test_a_json_body_sent_with_a_charset_other_than_utf8_is_a_422(
    api: Api, auth: dict[str, str], charset: str
) -> None:
    headers = auth | {"Content-Type": f"application/json; charset={charset}"}

    # ASCII, the same bytes in any of them: the client says it sent what it did not.
    response = await api.client.post(
        "/v1/projects", content=project_body('"a cat"'), headers=headers
    )

    problem = assert_problem(response, 422)
    msg = (
        f"sent as charset={charset}; send JSON text encoded as UTF-8 (RFC 8259),"
        " with no charset or charset=utf-8"
    )
    assert problem["errors"] == [{"loc": ["body"], "msg": msg}]
    assert await api.drain(SUBMIT_CLIP) == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(project_body('"a cat"'), "application/json; charset=UTF-8", id="utf-8"),
        pytest.param(project_body('"a cat"'), "application/json; charset=us-ascii", id="ascii"),
        pytest.param(codecs.BOM_UTF8 + project_body('"a cat"'), "application/json", id="utf-8-bom"),
    ],
)
async def test_utf8_json_is_read_with_a_utf8_charset_or_a_byte_order_mark(
    api: Api, auth: dict[str, str], body: bytes, content_type: str
) -> None:
    response = await api.client.post(
        "/v1/projects", content=body, headers=auth | {"Content-Type": content_type}
    )

    assert response.status_code == 202, response.text
    assert len(await api.drain(SUBMIT_CLIP)) == 1


async def test_bytes_that_are_not_utf8_are_a_4xx(api: Api, auth: dict[str, str]) -> None:
    body = b'{"scenes": [{"prompt": "\xed\xa0\x80"}]}'  # a surrogate, UTF-8 encoded

    response = await api.client.post("/v1/projects", content=body, headers=json_headers(auth))

    assert_problem(response, response.status_code)
    assert 400 <= response.status_code < 500


# --- backing services ------------------------------------------------------------------


class FailingStore:
    """The app's project store, except that reading a project raises ``error``."""

    def __init__(self, store: ProjectStore, error: BaseException) -> None:
        self._store = store
        self._error = error

    async def get(self, *_args: Any, **_kwargs: Any) -> None:
        raise self._error

    async def get_many(self, *_args: Any, **_kwargs: Any) -> None:
        raise self._error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@contextmanager
def failing_reads(api: Api, error: BaseException) -> Iterator[None]:
    state: AppState = api.app.state.reelflow
    failing = cast(ProjectStore, FailingStore(state.projects, error))
    api.app.state.reelflow = dataclasses.replace(
        state, projects=failing, project_reads=Batcher(failing.get_many, max_batch=READ_BATCH)
    )
    try:
        yield
    finally:
        api.app.state.reelflow = state


@pytest.mark.parametrize(
    "error",
    [
        ExecutionTimeout("operation exceeded time limit", 50),
        NetworkTimeout("timed out"),
        ServerSelectionTimeoutError("no primary"),
        AutoReconnect("primary stepped down"),
        WriteConcernError("waiting for replication timed out", 64),
        OperationFailure("interrupted at shutdown", 11600),
        AMQPConnectionError("broker gone"),
        ChannelInvalidStateError("channel closed"),
        httpx.ConnectError("connection refused"),
        TransientError("runware is down"),
        TimeoutError(),
    ],
    ids=lambda error: type(error).__name__,
)
async def test_a_backing_service_failure_is_a_503_with_retry_after(
    api: Api, auth: dict[str, str], error: BaseException
) -> None:
    with failing_reads(api, error):
        response = await api.client.get(f"/v1/projects/{uuid.uuid4()}", headers=auth)

    problem = assert_problem(response, 503)
    assert int(response.headers["retry-after"]) > 0
    assert "backing service" in problem["detail"]


class FailingKeys:
    """A key store whose every lookup raises ``error``."""

    def __init__(self, error: BaseException) -> None:
        self._error = error

    async def cached_grant(self, _key: str) -> None:
        raise self._error


async def test_a_key_lookup_that_fails_is_a_503(api: Api) -> None:
    # Looked up before the route runs, outside its exception handlers: the same 503 still.
    state: AppState = api.app.state.reelflow
    failing = cast(ApiKeyStore, FailingKeys(ServerSelectionTimeoutError("no primary")))
    api.app.state.reelflow = dataclasses.replace(state, api_keys=failing)
    try:
        response = await api.client.get("/v1/projects", headers={"Authorization": "Bearer rf_x"})
    finally:
        api.app.state.reelflow = state

    problem = assert_problem(response, 503)
    assert int(response.headers["retry-after"]) > 0
    assert "backing service" in problem["detail"]


async def test_a_bug_is_a_500_problem(api: Api, auth: dict[str, str]) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(api.app, raise_app_exceptions=False),
        base_url="http://api.test",
    ) as client:
        with failing_reads(api, KeyError("a bug")):
            response = await client.get(f"/v1/projects/{uuid.uuid4()}", headers=auth)

    problem: dict[str, Any] = assert_problem(response, 500)
    assert "a bug" not in problem["detail"]  # nothing of the internals leaks


async def test_a_webhook_the_full_result_queue_refuses_is_a_503(
    amqp_url: str, mongo_url: str
) -> None:
    async with isolated_api(
        amqp_url,
        mongo_url,
        work_queue_max_length=1,
        public_base_url="https://reelflow.test",
        webhook_secret=SecretStr(SECRET),
    ) as small:
        answers = [
            await small.client.post(
                f"/v1/webhooks/runware/{SECRET}",
                params={"project_id": "p-1"},
                json={"data": [{"taskUUID": str(uuid.uuid4()), "status": "success"}]},
            )
            for _ in range(3)
        ]

        # A quorum queue takes one message past its limit, then refuses.
        assert [answer.status_code for answer in answers[:2]] == [202, 202]
        assert_problem(answers[2], 503)
        assert answers[2].headers["retry-after"]
        assert len(await small.drain(HINTED_CHECK)) == 2
