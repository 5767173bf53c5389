"""The Runware REST client: submit a video task, ask where tasks stand.

It never retries and never resubmits: a retryable error goes back to the caller,
who tries again with the same task UUID (a duplicate answers ``conflictTaskUUID``,
which :meth:`RunwareClient.submit_video` reports as ``already_submitted``).

HTTP goes through aiohttp, not httpx: every clip costs a submit and at least one
poll, and measured on the same loopback server an httpx request took 1.0-1.4 ms
of CPU, an aiohttp one 0.15-0.2 ms.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import certifi

from reelflow_common.logging import get_logger
from reelflow_common.metrics import (
    RUNWARE_REQUEST_SECONDS,
    RUNWARE_REQUESTS_TOTAL,
    RunwareOutcome,
)
from reelflow_common.runware.errors import (
    ErrorCategory,
    RunwareError,
    RunwareRequestError,
    RunwareTransportError,
    is_retryable_status,
    not_mentioned,
)
from reelflow_common.runware.models import SubmitResult, TaskState, VideoRequest
from reelflow_common.runware.parsing import (
    build_poll_task,
    build_video_task,
    error_entries,
    failure_from_entry,
    parse_task_states,
    request_level_errors,
)
from reelflow_common.settings import RunwareSettings
from reelflow_common.tracing import SpanKind, mark_error, span

_CONFLICT = "conflictTaskUUID"
#: the largest answer read: a batch of 100 task states is a few tens of KiB
MAX_ANSWER_BYTES = 4 * 1024 * 1024


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    """The body, or a transport error past :data:`MAX_ANSWER_BYTES` (a broken proxy or server)."""
    raw = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        raw += chunk
        if len(raw) > MAX_ANSWER_BYTES:
            raise aiohttp.ClientPayloadError(f"answer over {MAX_ANSWER_BYTES} bytes")
    return bytes(raw)


def proxy_for(url: str) -> str | None:
    """The proxy ``HTTP(S)_PROXY`` / ``NO_PROXY`` name for ``url``, read once.

    As httpx did. Not aiohttp's ``trust_env``: that also reads ``~/.netrc`` on
    every request, and an entry there for Runware's host (or a ``default``)
    makes aiohttp refuse every request that carries our Authorization header.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)


log = get_logger(__name__)


class _Answer:
    """One HTTP answer: its status and its JSON body (empty when unreadable)."""

    def __init__(self, status: int, body: Mapping[str, Any], readable: bool) -> None:
        self.status = status
        self.body = body
        self.readable = readable

    def whole_request_error(self, task_uuid: str | None = None) -> RunwareRequestError:
        """The error for a request that failed as a whole (status or unscoped error)."""
        entries = request_level_errors(self.body) or error_entries(self.body)
        if entries:
            failure = failure_from_entry(entries[0])
            return RunwareRequestError(
                failure.message or f"Runware refused the request (HTTP {self.status})",
                code=failure.code,
                http_status=self.status,
                task_uuid=task_uuid,
                parameter=failure.parameter,
                allowed_values=failure.allowed_values,
            )
        # No error entry: a bare status, an HTML page of a proxy or a load balancer. That is
        # not Runware's word on the request (a bare 404 is no "task not found"), so it counts
        # as an outage, and asking again is safe with our own task UUIDs.
        if not self.readable:
            return RunwareRequestError(
                f"Runware answered HTTP {self.status} without a JSON object",
                code="invalidResponse",
                category=ErrorCategory.SERVER_ERROR,
                http_status=self.status,
                task_uuid=task_uuid,
            )
        return RunwareRequestError(
            f"Runware answered HTTP {self.status} without an error entry",
            code="invalidResponse",
            category=ErrorCategory.SERVER_ERROR,
            http_status=self.status,
            task_uuid=task_uuid,
        )


class RunwareClient:
    """Async client for Runware's REST API (``POST {base_url}/v1``)."""

    def __init__(
        self, settings: RunwareSettings, http: aiohttp.ClientSession | None = None
    ) -> None:
        self._settings = settings
        self._url = f"{settings.runware_base_url.rstrip('/')}/v1"
        self._owns_http = http is None
        # Made at the first request: an aiohttp session belongs to a running event loop.
        self._http = http
        self._in_flight = asyncio.Semaphore(settings.runware_max_in_flight)
        self._proxy = proxy_for(self._url)

    def __repr__(self) -> str:
        return f"RunwareClient(url={self._url!r})"

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: RunwareSettings) -> AsyncIterator[RunwareClient]:
        """A client that owns its HTTP connection pool; fails at once without an API key."""
        _api_key(settings)
        client = cls(settings)
        try:
            yield client
        finally:
            await client.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool if this client created it."""
        if self._owns_http and self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                # Runware sets no cookie worth keeping; the jar would only cost time.
                cookie_jar=aiohttp.DummyCookieJar(),
                # An idle connection is dropped before a server's usual 5 s keep-alive ends,
                # not reused just as the server closes it.
                connector=aiohttp.TCPConnector(
                    limit=self._settings.runware_max_in_flight,
                    keepalive_timeout=4.0,
                    ssl=_tls_context(),
                ),
                # The proxy is resolved once (``proxy_for``); no netrc, no per-request env reads.
                trust_env=False,
            )
        return self._http

    async def submit_video(self, request: VideoRequest) -> SubmitResult:
        """Submit one async ``videoInference`` task under the caller's task UUID."""
        outcome = (await self.submit_videos([request]))[request.task_uuid]
        if isinstance(outcome, RunwareError):
            raise outcome
        return outcome

    async def submit_videos(
        self, requests: Sequence[VideoRequest]
    ) -> dict[str, SubmitResult | RunwareError]:
        """Submit async ``videoInference`` tasks in one HTTP request; each task's outcome.

        Runware processes each task of a request on its own, and scopes an error to
        its task (docs/RUNWARE.md §1.3, §1.4). No answer or a struggling server's
        (408, 429, 5xx) is every task's, as it would be for each alone. A task the
        answer does not settle by name (an error naming no task settles none) gets a
        retryable error: submitting it again with its task UUID is safe, never
        bought twice.
        """
        unique = list({request.task_uuid: request for request in requests}.values())
        task_uuids = [request.task_uuid for request in unique]
        tasks = [build_video_task(request) for request in unique]
        try:
            answer = await self._post(tasks, "videoInference", task_uuids)
        except RunwareTransportError as exc:
            if len(task_uuids) == 1:
                return {task_uuids[0]: exc}
            return {task_uuid: exc.about(task_uuid) for task_uuid in task_uuids}
        states = parse_task_states(answer.body)
        return {
            task_uuid: _submitted(answer, states, task_uuid, alone=len(task_uuids) == 1)
            for task_uuid in task_uuids
        }

    async def get_response(self, task_uuid: str) -> TaskState:
        """Where one task stands; raises when Runware cannot tell (see :meth:`get_responses`)."""
        outcome = (await self.get_responses([task_uuid]))[task_uuid]
        if isinstance(outcome, RunwareError):
            raise outcome
        return outcome

    async def get_responses(self, task_uuids: Iterable[str]) -> dict[str, TaskState | RunwareError]:
        """Where each task stands, or why Runware could not say.

        A finished-with-error task is a :class:`TaskState` with ``status="error"``;
        an unknown task, a refused request or a lost answer is a :class:`RunwareError`.
        Up to ``runware_poll_batch_size`` tasks share one HTTP request; chunks run concurrently.
        """
        unique = list(dict.fromkeys(task_uuids))
        size = self._settings.runware_poll_batch_size
        chunks = [unique[start : start + size] for start in range(0, len(unique), size)]
        results = await asyncio.gather(*(self._poll_chunk(chunk) for chunk in chunks))
        merged: dict[str, TaskState | RunwareError] = {}
        for result in results:
            merged.update(result)
        return merged

    async def _poll_chunk(self, task_uuids: list[str]) -> dict[str, TaskState | RunwareError]:
        tasks = [build_poll_task(task_uuid) for task_uuid in task_uuids]
        try:
            answer = await self._post(tasks, "getResponse", task_uuids)
        except RunwareTransportError as exc:
            return dict.fromkeys(task_uuids, exc)
        if is_retryable_status(answer.status):
            # A struggling server's body is not trusted for any task in the request.
            return {task_uuid: answer.whole_request_error(task_uuid) for task_uuid in task_uuids}
        states = parse_task_states(answer.body)
        outcomes: dict[str, TaskState | RunwareError] = {}
        for task_uuid in task_uuids:
            state = states.get(task_uuid)
            if state is None:
                outcomes[task_uuid] = self._missing(answer, task_uuid)
            elif state.error is not None and state.error.category is ErrorCategory.NOT_FOUND:
                outcomes[task_uuid] = state.error.to_error(task_uuid, http_status=answer.status)
            else:
                outcomes[task_uuid] = state
        return outcomes

    @staticmethod
    def _missing(answer: _Answer, task_uuid: str) -> RunwareError:
        if request_level_errors(answer.body) or not 200 <= answer.status < 300:
            return answer.whole_request_error(task_uuid)
        if not answer.readable:
            return answer.whole_request_error(task_uuid)
        # Runware said nothing about the task; asking again later is the only sensible reading.
        return not_mentioned(task_uuid, http_status=answer.status)

    async def _post(
        self, tasks: list[dict[str, Any]], task_type: str, task_uuids: list[str]
    ) -> _Answer:
        """One HTTP request under the in-flight bound, logged once, transport errors typed."""
        headers = {
            "Authorization": f"Bearer {_api_key(self._settings)}",
            "Content-Type": "application/json",
        }
        body = json.dumps(tasks, separators=(",", ":")).encode()
        timeout = self._settings.runware_timeout_s
        task_uuid = task_uuids[0] if len(task_uuids) == 1 else None
        about: dict[str, Any] = {"task_type": task_type}
        if task_uuid is not None:
            about["task_uuid"] = task_uuid
        else:
            about["task_uuids"] = task_uuids
        attributes = {"http.request.method": "POST", "runware.task_type": task_type}
        async with self._in_flight:
            started = time.perf_counter()
            with span(f"runware {task_type}", kind=SpanKind.CLIENT, attributes=attributes) as sent:
                try:
                    # The whole exchange, the body read included, within the timeout.
                    async with (
                        asyncio.timeout(timeout),
                        self._session().post(
                            self._url,
                            data=body,
                            headers=headers,
                            allow_redirects=False,
                            proxy=self._proxy,
                        ) as response,
                    ):
                        status = response.status
                        raw = await _read_bounded(response)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    _count_request(task_type, "transport_error", started)
                    log.warning(
                        "runware_call_failed",
                        **about,
                        error=type(exc).__name__,
                        duration_ms=_ms_since(started),
                    )
                    raise _transport_error(exc, task_uuid) from exc
                sent.set_attribute("http.response.status_code", status)
                if status >= 400:
                    mark_error(sent, f"HTTP {status}")
        answer = _read(status, raw)
        _count_request(task_type, _outcome(answer), started)
        _log_answer(answer, task_type, about, _ms_since(started))
        return answer


def _submitted(
    answer: _Answer, states: Mapping[str, TaskState], task_uuid: str, *, alone: bool
) -> SubmitResult | RunwareError:
    """What a submit answer says of one of its tasks (``alone``: the request's only one).

    Of several tasks, one is settled only by what the answer says of it by name: a
    conflict or an error naming it, or an acknowledgement (unless it is a capacity
    answer). An error that names no task (a bad key, or one bad task's error without
    its UUID: whose?) settles none of them: each is submitted again, alone, where the
    answer can only be about it.
    """
    entries = error_entries(answer.body)
    if alone:
        mine = [e for e in entries if e.get("taskUUID") in (task_uuid, None)]
    else:
        mine = [e for e in entries if e.get("taskUUID") == task_uuid]
    state = states.get(task_uuid)
    # In ``errors`` or as an item of ``data`` with a nested error (§3.2's two shapes).
    conflict = state is not None and state.error is not None and state.error.code == _CONFLICT
    if conflict or any(entry.get("code") == _CONFLICT for entry in mine):
        return SubmitResult(task_uuid=task_uuid, already_submitted=True)
    if is_retryable_status(answer.status):
        return answer.whole_request_error(task_uuid)
    if state is not None and state.error is not None:
        return state.error.to_error(task_uuid, http_status=answer.status)
    if alone:
        if request_level_errors(answer.body) or not answer.readable:
            return answer.whole_request_error(task_uuid)
        if not 200 <= answer.status < 300:
            return answer.whole_request_error(task_uuid)
        # The ack may be empty ({"data": []}); a 2xx without errors means accepted.
        return SubmitResult(task_uuid=task_uuid)
    if state is not None:
        return SubmitResult(task_uuid=task_uuid)
    if states or entries:
        return not_mentioned(task_uuid, http_status=answer.status)
    if not answer.readable or not 200 <= answer.status < 300:
        return answer.whole_request_error(task_uuid)  # no word from Runware: retried
    return SubmitResult(task_uuid=task_uuid)  # an empty ack of the whole request


def _log_answer(answer: _Answer, task_type: str, about: dict[str, Any], took_ms: int) -> None:
    """One line per answer: a 2xx at debug (a submit's at info), a refusal at warning with
    Runware's error code, and a conflict (a resubmit of a task Runware has) at info."""
    if 200 <= answer.status < 300:
        level = log.info if task_type == "videoInference" else log.debug
        level("runware_call_finished", **about, status_code=answer.status, duration_ms=took_ms)
        return
    codes = _error_codes(answer.body)
    if codes == [_CONFLICT]:  # the same test as _outcome's "conflict"
        # What resubmitting with the same task UUID is for: the task is Runware's already.
        log.info(
            "runware_task_already_submitted",
            **about,
            status_code=answer.status,
            error_code=_CONFLICT,
            duration_ms=took_ms,
        )
        return
    found: dict[str, Any] = {}
    if codes:
        found["error_code"] = codes[0]
        if len(codes) > 1:
            found["error_codes"] = codes
    entries = error_entries(answer.body)
    if entries:
        found["error"] = failure_from_entry(entries[0]).message[:200]
    log.warning(
        "runware_call_failed", **about, status_code=answer.status, **found, duration_ms=took_ms
    )


def _error_codes(body: Mapping[str, Any]) -> list[str]:
    """Runware's error codes in an answer, each once: its ``errors`` and its items' ``error``."""
    entries = list(error_entries(body))
    data = body.get("data")
    if isinstance(data, list):
        entries += [
            item["error"]
            for item in data
            if isinstance(item, Mapping) and isinstance(item.get("error"), Mapping)
        ]
    codes = (entry.get("code") for entry in entries)
    return list(dict.fromkeys(code for code in codes if isinstance(code, str) and code))


def _outcome(answer: _Answer) -> RunwareOutcome:
    """How the request ended, for reelflow_runware_requests_total.

    A 4xx every error of which is ``conflictTaskUUID`` (at the top or in a task's item) is a
    resubmit of a task Runware has, as after a lost answer: ``conflict``, not an error.
    """
    if answer.status < 400:
        return "ok"
    if answer.status >= 500:
        return "http_5xx"
    return "conflict" if _error_codes(answer.body) == [_CONFLICT] else "http_4xx"


def _count_request(task_type: str, outcome: RunwareOutcome, started: float) -> None:
    RUNWARE_REQUESTS_TOTAL.labels(task_type=task_type, outcome=outcome).inc()
    RUNWARE_REQUEST_SECONDS.labels(task_type=task_type).observe(time.perf_counter() - started)


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _api_key(settings: RunwareSettings) -> str:
    key = settings.runware_api_key
    if key is None or not key.get_secret_value():
        raise RunwareRequestError(
            "no Runware API key configured (set REELFLOW_RUNWARE_API_KEY or RUNWARE_API_KEY)",
            code="missingApiKey",
        )
    return key.get_secret_value()


def _tls_context() -> ssl.SSLContext:
    """Verified TLS with the CAs httpx used: ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set,
    else certifi's bundle (not whatever the image's system store holds)."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    return ssl.create_default_context(cafile=certifi.where())


def _read(status: int, raw: bytes) -> _Answer:
    try:
        body = json.loads(raw)
    except ValueError:  # not JSON, or not UTF-8
        return _Answer(status, {}, readable=False)
    if not isinstance(body, Mapping):
        return _Answer(status, {}, readable=False)
    return _Answer(status, body, readable=True)


def _transport_error(exc: Exception, task_uuid: str | None) -> RunwareTransportError:
    timed_out = isinstance(exc, TimeoutError)  # aiohttp's own timeouts are TimeoutErrors too
    return RunwareTransportError(
        f"no answer from Runware: {type(exc).__name__}",
        code="timeout" if timed_out else "connectionError",
        category=ErrorCategory.TIMEOUT if timed_out else ErrorCategory.CONNECTION,
        task_uuid=task_uuid,
    )
