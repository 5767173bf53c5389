"""Polling tasks: progress to success, both failure shapes, unknown tasks, batching, the bound."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest

from reelflow_common.runware import (
    ErrorCategory,
    RunwareClient,
    RunwareError,
    RunwareTaskError,
    TaskState,
    is_task_not_found,
)
from reelflow_common.runware.client import MAX_ANSWER_BYTES, proxy_for
from tests.runware.helpers import answering, client_settings, sim_and_client, video
from tests.waiting import DEADLINE_S


async def test_a_task_is_processing_then_succeeds_with_a_video_and_its_cost() -> None:
    async with sim_and_client() as (sim, client):
        # The simulator's clock stands still until the test moves it: no race with real time.
        now = [1000.0]
        sim.state.clock = lambda: now[0]
        request = video("a paper boat on a river [sim:latency=40]")
        await client.submit_video(request)

        now[0] += 20
        halfway = await client.get_response(request.task_uuid)
        now[0] += 21
        finished = await client.get_response(request.task_uuid)

        assert halfway == TaskState(task_uuid=request.task_uuid, status="processing", progress=50)
        assert finished.status == "success"
        assert finished.video_url is not None
        assert finished.video_url.endswith(f"/video/{finished.video_uuid}.mp4")
        truth = await sim.task(request.task_uuid)
        assert finished.cost == pytest.approx(truth["cost"])
        assert finished.seed is not None


@pytest.mark.parametrize("shape", ["errors", "data"])
async def test_a_failed_generation_is_an_error_state_in_either_shape(shape: str) -> None:
    async with sim_and_client(failure_shape=shape) as (_sim, client):
        request = video("a storm [sim:fail=timeoutProvider] [sim:latency=0]")
        await client.submit_video(request)

        state = await client.get_response(request.task_uuid)

        assert state.status == "error"
        assert state.error is not None
        assert state.error.code == "timeoutProvider"
        assert state.error.retryable


async def test_an_unknown_task_is_a_not_found_error() -> None:
    async with sim_and_client() as (_sim, client):
        unknown = str(uuid.uuid4())

        with pytest.raises(RunwareTaskError) as caught:
            await client.get_response(unknown)

        assert caught.value.category is ErrorCategory.NOT_FOUND
        assert caught.value.task_uuid == unknown
        assert not caught.value.retryable


@pytest.mark.parametrize(("batch", "expected_posts"), [(1, 7), (3, 3)])
async def test_polls_share_http_requests_up_to_the_batch_size(
    batch: int, expected_posts: int
) -> None:
    overrides = {"runware_poll_batch_size": batch}
    async with sim_and_client(client_overrides=overrides) as (sim, client):
        requests = [video() for _ in range(6)]
        for request in requests:
            await client.submit_video(request)
        unknown = str(uuid.uuid4())
        before = await sim.stats()

        outcomes = await client.get_responses([r.task_uuid for r in requests] + [unknown])

        after = await sim.stats()
        assert after["requests"] - before["requests"] == expected_posts
        assert all(
            isinstance(outcomes[r.task_uuid], TaskState)
            and outcomes[r.task_uuid].status == "processing"  # type: ignore[union-attr]
            for r in requests
        )
        assert isinstance(outcomes[unknown], RunwareError)


async def test_a_capacity_answer_fails_each_polled_task_with_a_retryable_error() -> None:
    async with sim_and_client(rate_503=1.0) as (_sim, client):
        uuids = [str(uuid.uuid4()) for _ in range(2)]

        outcomes = await client.get_responses(uuids)

        for task_uuid in uuids:
            outcome = outcomes[task_uuid]
            assert isinstance(outcome, RunwareError)
            assert outcome.retryable
            assert outcome.http_status == 503


class _Gate:
    """Real HTTP, but every request waits at a gate (a trace hook), so concurrency can be
    counted."""

    def __init__(self, gate: asyncio.Event, watch_for: int) -> None:
        self._gate = gate
        self._watch_for = watch_for
        self.reached = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0
        self.requests = 0

    def trace(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()
        config.on_request_start.append(self._started)
        config.on_request_end.append(self._ended)
        config.on_request_exception.append(self._ended)
        return config

    async def _started(self, _session: object, _context: SimpleNamespace, _params: object) -> None:
        self.requests += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.in_flight >= self._watch_for:
            self.reached.set()
        await self._gate.wait()

    async def _ended(self, _session: object, _context: SimpleNamespace, _params: object) -> None:
        self.in_flight -= 1


async def test_no_more_requests_are_in_flight_than_configured() -> None:
    gate = asyncio.Event()
    transport = _Gate(gate, watch_for=2)
    async with (
        aiohttp.ClientSession(trace_configs=[transport.trace()]) as http,
        sim_and_client(http=http, client_overrides={"runware_max_in_flight": 2}) as (_, client),
    ):
        uuids = [str(uuid.uuid4()) for _ in range(6)]
        polls = asyncio.create_task(client.get_responses(uuids))

        await asyncio.wait_for(transport.reached.wait(), timeout=DEADLINE_S)
        # Give the other four polls every chance to slip past the bound before opening the gate.
        for _ in range(50):
            await asyncio.sleep(0)
        assert transport.in_flight == 2
        gate.set()
        outcomes = await polls

    assert transport.most_in_flight == 2
    assert transport.requests == 6
    assert set(outcomes) == set(uuids)


@pytest.mark.parametrize(
    ("status", "content", "content_type"),
    [
        (404, b"", "text/plain"),
        (404, b"<html><body>404 Not Found</body></html>", "text/html"),
        (404, b'{"message": "no such route"}', "application/json"),
        (200, b"{}", "application/json"),
        (502, b"<html>Bad Gateway</html>", "text/html"),
    ],
    ids=["bare-404", "html-404", "404-without-error-entries", "empty-200", "html-502"],
)
async def test_an_answer_that_is_not_runwares_word_is_an_outage_never_task_not_found(
    status: int, content: bytes, content_type: str
) -> None:
    task_uuid = str(uuid.uuid4())
    async with (
        answering(status, content, content_type) as url,
        RunwareClient.open(client_settings(url, "key")) as client,
    ):
        with pytest.raises(RunwareError) as caught:
            await client.get_response(task_uuid)

    assert not is_task_not_found(caught.value)
    assert caught.value.retryable
    assert caught.value.category is not ErrorCategory.NOT_FOUND


async def test_runwares_own_not_found_entry_is_task_not_found() -> None:
    task_uuid = str(uuid.uuid4())
    body = (
        b'{"errors": [{"code": "taskFailedOrNotFound", "message": "gone", "taskUUID": "'
        + task_uuid.encode()
        + b'"}]}'
    )
    async with (
        answering(400, body, "application/json") as url,
        RunwareClient.open(client_settings(url, "key")) as client,
    ):
        with pytest.raises(RunwareError) as caught:
            await client.get_response(task_uuid)

    assert is_task_not_found(caught.value)


async def test_a_netrc_entry_for_runwares_host_does_not_break_the_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # aiohttp's trust_env would read it and refuse every request carrying our bearer key.
    netrc = tmp_path / "netrc"
    netrc.write_text("default login someone password something\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    body = b'{"data": [{"taskType": "getResponse", "taskUUID": "t1", "status": "processing"}]}'
    async with (
        answering(200, body, "application/json") as url,
        RunwareClient.open(client_settings(url, "key")) as client,
    ):
        state = await client.get_response("t1")

    assert state.status == "processing"


async def test_an_endless_answer_is_an_outage_not_memory_spent() -> None:
    huge = b"{" + b" " * (MAX_ANSWER_BYTES + 1) + b"}"
    async with (
        answering(200, huge, "application/json") as url,
        RunwareClient.open(client_settings(url, "key")) as client,
    ):
        with pytest.raises(RunwareError) as caught:
            await client.get_response("t1")

    assert caught.value.retryable


@pytest.mark.parametrize(
    ("env", "proxy"),
    [
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://proxy:3128"),
        ({"https_proxy": "http://proxy:3128", "NO_PROXY": "api.runware.ai"}, None),
        ({"HTTP_PROXY": "http://proxy:3128"}, None),
        ({}, None),
    ],
    ids=["https-proxy", "no-proxy-names-the-host", "only-http-proxy", "none"],
)
def test_the_proxy_comes_from_the_environment_as_httpx_took_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], proxy: str | None
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert proxy_for("https://api.runware.ai/v1") == proxy
