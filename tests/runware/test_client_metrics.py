"""Every HTTP request to Runware is counted by outcome and timed (the error-rate alert's input)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from reelflow_common.runware import RunwareClient, RunwareError
from tests.runware.helpers import answering, client_settings, refusing_url


def counted(outcome: str) -> float:
    labels = {"task_type": "getResponse", "outcome": outcome}
    return REGISTRY.get_sample_value("reelflow_runware_requests_total", labels) or 0.0


def timed() -> float:
    labels = {"task_type": "getResponse"}
    return REGISTRY.get_sample_value("reelflow_runware_request_seconds_count", labels) or 0.0


JSON = "application/json"


@contextlib.asynccontextmanager
async def _runware(answer: tuple[int, bytes, str] | None) -> AsyncIterator[str]:
    """A server giving ``answer`` to every request, or (None) an address that refuses."""
    if answer is None:
        yield refusing_url()
        return
    async with answering(*answer) as url:
        yield url


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ((200, b'{"data": []}', JSON), "ok"),
        ((401, b'{"errors": [{"code": "invalidApiKey"}]}', JSON), "http_4xx"),
        ((503, b"<html>busy</html>", "text/html"), "http_5xx"),
        (None, "transport_error"),
    ],
)
async def test_each_request_is_counted_by_outcome_and_timed(
    answer: tuple[int, bytes, str] | None, outcome: str
) -> None:
    before, before_timed = counted(outcome), timed()

    # What each answer means is the business of the client's other tests.
    async with (
        _runware(answer) as url,
        RunwareClient.open(client_settings(url, "key")) as client,
    ):
        with contextlib.suppress(RunwareError):
            await client.get_response("0b5a6c8e-5d2a-4b8f-9f0e-1a2b3c4d5e6f")

    assert counted(outcome) == before + 1
    assert timed() == before_timed + 1
