"""The api and the notifier read an ``Authorization`` header's key one way: their per-key limits
count the key authentication looks up."""

from __future__ import annotations

import pytest
from starlette.types import Message
from starlette.websockets import WebSocket

import reelflow_api.bearer
import reelflow_notifier.auth
from reelflow_api.bearer import request_key
from reelflow_common.bearer import bearer_token
from reelflow_notifier.auth import presented_key


def test_both_services_read_the_header_with_the_one_reader() -> None:
    # Each had its own copy, which had to agree for the per-key budgets to hold.
    assert vars(reelflow_api.bearer)["bearer_token"] is bearer_token
    assert vars(reelflow_notifier.auth)["bearer_token"] is bearer_token


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Bearer rf_abc", "rf_abc"),
        ("bearer rf_abc", "rf_abc"),
        ("BEARER   rf_abc  ", "rf_abc"),
        ("Bearer", None),
        ("Bearer   ", None),
        ("Basic rf_abc", None),
        ("Bearerrf_abc", None),
        ("", None),
    ],
)
def test_a_header_names_the_same_key_to_the_api_and_the_notifier(
    header: str, key: str | None
) -> None:
    scope = {"type": "http", "headers": [(b"authorization", header.encode("latin-1"))]}
    socket = WebSocket(
        {"type": "websocket", "headers": scope["headers"], "query_string": b"token=other"},
        receive=_no_receive,
        send=_no_send,
    )

    assert request_key(scope) == key
    assert presented_key(socket) == key  # the header wins over ?token=, even when it names none


async def _no_receive() -> Message:
    raise AssertionError("not called")


async def _no_send(_message: Message) -> None:
    raise AssertionError("not called")
