"""Every HTTP request to Runware is counted by outcome and timed (the error-rate alert's input)."""

from __future__ import annotations

import contextlib

import httpx
import pytest
from prometheus_client import REGISTRY

from reelflow_common.runware import RunwareClient, RunwareError
from tests.runware.helpers import client_settings


def counted(outcome: str) -> float:
    labels = {"task_type": "getResponse", "outcome": outcome}
    return REGISTRY.get_sample_value("reelflow_runware_requests_total", labels) or 0.0


def timed() -> float:
    labels = {"task_type": "getResponse"}
    return REGISTRY.get_sample_value("reelflow_runware_request_seconds_count", labels) or 0.0


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (httpx.Response(200, json={"data": []}), "ok"),
        (httpx.Response(401, json={"errors": [{"code": "invalidApiKey"}]}), "http_4xx"),
        (httpx.Response(503, text="<html>busy</html>"), "http_5xx"),
        (None, "transport_error"),
    ],
)
async def test_each_request_is_counted_by_outcome_and_timed(
    answer: httpx.Response | None, outcome: str
) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        if answer is None:
            raise httpx.ConnectError("refused", request=request)
        return answer

    http = httpx.AsyncClient(transport=httpx.MockTransport(reply))
    client = RunwareClient(client_settings("http://runware.test", "key"), http)
    before, before_timed = counted(outcome), timed()

    # What each answer means is the business of the client's other tests.
    async with http:
        with contextlib.suppress(RunwareError):
            await client.get_response("0b5a6c8e-5d2a-4b8f-9f0e-1a2b3c4d5e6f")

    assert counted(outcome) == before + 1
    assert timed() == before_timed + 1
