"""Every HTTP request to Runware is counted by outcome and timed (the error-rate alert's input)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from reelflow_common.runware import RunwareClient, RunwareError
from tests.runware.helpers import answering, client_settings, refusing_url, video


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


def submits(outcome: str) -> float:
    labels = {"task_type": "videoInference", "outcome": outcome}
    return REGISTRY.get_sample_value("reelflow_runware_requests_total", labels) or 0.0


CONFLICT = {"code": "conflictTaskUUID", "message": "exists"}


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        # A resubmit after a lost answer: Runware has the task (either of §3.2's shapes).
        ({"errors": [CONFLICT]}, "conflict"),
        (
            {"data": [{"taskType": "videoInference", "status": "error", "error": CONFLICT}]},
            "conflict",
        ),
        # A conflict beside another error, or a 400 of another kind, is a refusal.
        ({"errors": [CONFLICT, {"code": "invalidPositivePrompt"}]}, "http_4xx"),
        ({"errors": [{"code": "insufficientCredits"}]}, "http_4xx"),
    ],
)
async def test_a_resubmit_runware_answers_with_a_conflict_is_not_counted_as_an_error(
    body: dict[str, object], outcome: str
) -> None:
    request = video()
    if "data" in body:
        body = {"data": [{**body["data"][0], "taskUUID": request.task_uuid}]}  # type: ignore[index]
    before = {name: submits(name) for name in ("conflict", "http_4xx")}

    async with (
        answering(400, json.dumps(body).encode(), JSON) as url,
        RunwareClient.open(client_settings(url, "key")) as client,
    ):
        with contextlib.suppress(RunwareError):
            await client.submit_video(request)

    after = {name: submits(name) for name in ("conflict", "http_4xx")}
    assert after == {name: count + (name == outcome) for name, count in before.items()}
