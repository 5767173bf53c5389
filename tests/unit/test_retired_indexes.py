"""Dropping the indexes an earlier release made: gone already is fine, an outage is
waited out by the caller, any other refusal is logged and the start goes on."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.errors import AutoReconnect, ExecutionTimeout, OperationFailure
from structlog.testing import capture_logs

from reelflow_common.mongo import drop_retired_indexes


class Indexes:
    """A collection's ``drop_index``, answering each name as told."""

    name = "projects"

    def __init__(self, answers: dict[str, Exception | None]) -> None:
        self.answers = answers
        self.dropped: list[str] = []

    async def drop_index(self, name: str) -> None:
        answer = self.answers[name]
        if answer is not None:
            raise answer
        self.dropped.append(name)


def _drop(collection: Indexes, names: list[str]) -> Any:
    return drop_retired_indexes(collection, names)  # type: ignore[arg-type]


async def test_an_index_gone_already_is_skipped_and_the_others_are_dropped() -> None:
    collection = Indexes(
        {
            "a": OperationFailure("index not found with name [a]", code=27),
            "b": None,
            "c": OperationFailure("ns not found", code=26),
        }
    )
    with capture_logs() as lines:
        await _drop(collection, ["a", "b", "c"])

    assert collection.dropped == ["b"]
    assert [(line["event"], line["index"]) for line in lines] == [("retired_index_dropped", "b")]


async def test_a_refusal_is_logged_and_the_start_goes_on() -> None:
    collection = Indexes(
        {
            "a": OperationFailure("an index build is currently running", code=12587),
            "b": None,
        }
    )
    with capture_logs() as lines:
        await _drop(collection, ["a", "b"])

    assert collection.dropped == ["b"]
    refused = [line for line in lines if line["event"] == "retired_index_not_dropped"]
    assert [(line["collection"], line["index"]) for line in refused] == [("projects", "a")]
    assert "index build" in refused[0]["error"]


async def test_an_outage_is_raised_for_the_start_to_wait_out() -> None:
    collection = Indexes({"a": AutoReconnect("connection refused"), "b": None})

    with pytest.raises(AutoReconnect):
        await _drop(collection, ["a", "b"])

    assert collection.dropped == []


async def test_a_refusal_that_is_an_outage_is_raised_not_logged() -> None:
    """An ``OperationFailure`` that ``is_transient`` calls an outage: the drop ran out of the
    client's ``timeoutMS`` (MaxTimeMSExpired, code 50; a server shutting down or stepping
    down reaches here as ``NotPrimaryError``, an ``AutoReconnect``, above)."""
    timed_out = ExecutionTimeout("operation exceeded time limit", code=50)
    collection = Indexes({"a": timed_out, "b": None})

    with capture_logs() as lines, pytest.raises(ExecutionTimeout):
        await _drop(collection, ["a", "b"])

    assert collection.dropped == []
    assert lines == []
