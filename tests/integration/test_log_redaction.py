"""No secret that travels in a URL reaches a log line: the API served for real, a canary secret.

A canary secret is configured, a webhook is delivered to it, and every line the
process's log handler wrote is searched for it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from reelflow_api.main import server_config
from reelflow_api.settings import Settings
from reelflow_common.logging import configure_logging, get_logger
from reelflow_common.settings import LogSettings
from tests.waiting import DEADLINE_S, READY_DEADLINE_S, eventually

pytestmark = pytest.mark.integration

CANARY = f"canary-{uuid.uuid4().hex}"


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # pytest owns the process's signal handlers


async def test_the_webhook_secret_and_a_video_signature_are_in_no_log_line(
    settings_for: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    settings: Settings = settings_for(
        Settings,
        http_host="127.0.0.1",
        webhook_secret=SecretStr(CANARY),
        public_base_url="https://reelflow.test",
        log_format="json",
    )
    configure_logging(settings, service="api")  # as the api's run() does
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _Server(server_config(settings))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started, "the api serving")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            await eventually(_ready(http), "the api ready", READY_DEADLINE_S)
            body = {"data": [{"taskUUID": str(uuid.uuid4()), "status": "success"}]}
            hint = await http.post(
                f"/v1/webhooks/runware/{CANARY}", params={"project_id": "p-1"}, json=body
            )
            probe = await http.post(f"/v1/webhooks/runware/{CANARY}x", params={"project_id": "p"})
            video = await http.get(
                "/v1/videos/videos/p/0/t.mp4", params={"expires": 1, "signature": CANARY}
            )
            # Starlette decodes a name: this is the signature to the route too.
            encoded = await http.get(f"/v1/videos/videos/p/0/t.mp4?expires=1&%73ignature={CANARY}")
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, DEADLINE_S)
        sock.close()

    assert (hint.status_code, probe.status_code, video.status_code) == (202, 404, 404)
    assert encoded.status_code == 404  # a wrong signature, not a missing one (422)
    logged = capsys.readouterr().err
    access = [line for line in logged.splitlines() if "/v1/webhooks/runware/" in line]
    assert len(access) >= 2  # the access log did log both deliveries
    assert all("/v1/webhooks/runware/***" in line for line in access)
    assert any("/v1/videos/" in line and "&signature=***" in line for line in logged.splitlines())
    assert any("/v1/videos/" in line and "&%73ignature=***" in line for line in logged.splitlines())
    assert CANARY not in logged


async def test_probes_and_scrapes_answered_2xx_leave_no_access_line(
    settings_for: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """A kubelet probes every 5-10 s and Prometheus scrapes: a line each, ~26,000 a day a pod."""
    settings: Settings = settings_for(Settings, http_host="127.0.0.1", log_format="json")
    configure_logging(settings, service="api")  # as the api's run() does
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _Server(server_config(settings))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started, "the api serving")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            await eventually(_ready(http), "the api ready", READY_DEADLINE_S)
            answers = [(await http.get(path)).status_code for path in ("/healthz", "/metrics")]
            refused = await http.get("/v1/projects")
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, DEADLINE_S)
        sock.close()

    assert answers == [200, 200]
    assert refused.status_code == 401
    access = [line for line in capsys.readouterr().err.splitlines() if "uvicorn.access" in line]
    assert any('"GET /v1/projects HTTP/1.1\\" 401' in line for line in access), access
    for path in ("/healthz", "/readyz", "/metrics"):  # a 503 of /readyz before ready stays
        assert not any(f'GET {path} HTTP/1.1\\" 2' in line for line in access), path


def _ready(http: httpx.AsyncClient) -> Callable[[], Any]:
    async def ready() -> bool:
        # every check true: the webhook's publish needs the broker linked
        return bool((await http.get("/readyz")).json()["status"] == "ok")

    return ready


def test_a_secret_in_an_exceptions_text_is_redacted_in_its_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A traceback is formatted last, after the line's own fields were redacted: an error that
    names a URL (an HTTP client's, a broker's) must not carry its secret into the log."""
    configure_logging(LogSettings(log_format="json"), service="poller")
    url = f"https://reelflow.test/v1/webhooks/runware/{CANARY}?signature={CANARY}"
    try:
        raise RuntimeError(f"could not reach {url}")
    except RuntimeError as error:
        get_logger("tests.redaction").error("request_failed", exc_info=error)
        logging.getLogger("tests.redaction.stdlib").exception("stdlib request failed")

    logged = capsys.readouterr().err
    assert logged.count("RuntimeError: could not reach") == 2  # both tracebacks were logged
    assert "/v1/webhooks/runware/***?signature=***" in logged
    assert CANARY not in logged
