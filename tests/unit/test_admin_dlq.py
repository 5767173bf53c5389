"""``reelflow-admin dlq``'s names and records of dead letters: no broker needed."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aio_pika.abc import AbstractIncomingMessage

from reelflow_common.admin.dlq import BODY_SHOWN, dead_letter, work_queues
from reelflow_common.settings import TopologySettings
from reelflow_common.topology import CHECK_CLIP, STORE_VIDEO, WORK_QUEUES, Topology

TOPOLOGY = Topology.from_settings(TopologySettings(amqp_prefix="t1."))


def incoming(
    body: bytes, message_id: str | None = None, headers: dict[str, Any] | None = None
) -> AbstractIncomingMessage:
    message = SimpleNamespace(body=body, message_id=message_id, type=None, headers=headers or {})
    return cast(AbstractIncomingMessage, message)


@pytest.mark.parametrize(
    "name",
    [
        "poller.check_clip",
        "poller.check_clip.dlq",
        "t1.poller.check_clip",
        "t1.poller.check_clip.dlq",  # as dlq list prints it
    ],
)
def test_a_queue_is_taken_as_dlq_list_prints_it_or_as_its_work_queue(name: str) -> None:
    assert work_queues(TOPOLOGY, name) == (CHECK_CLIP,)


def test_an_unknown_queue_is_refused_with_the_names_that_are_valid() -> None:
    with pytest.raises(ValueError, match="unknown queue") as refused:
        work_queues(TOPOLOGY, "t2.poller.check_clip.dlq")

    message = str(refused.value)
    assert message.startswith("unknown queue 't2.poller.check_clip.dlq'; one of: ")
    assert ", ".join(WORK_QUEUES) in message
    assert ", ".join(f"t1.{work_queue}.dlq" for work_queue in WORK_QUEUES) in message
    assert work_queues(TOPOLOGY, None) == WORK_QUEUES
    assert work_queues(TOPOLOGY, f"t1.{STORE_VIDEO}.dlq") == (STORE_VIDEO,)


def test_a_dead_letter_is_named_by_its_id_or_without_one_by_its_body() -> None:
    assert dead_letter(incoming(b"{}", message_id="m1")).name == "m1"

    nameless = dead_letter(incoming(b"not json")).name
    assert nameless.startswith("sha256:")
    assert nameless == dead_letter(incoming(b"not json")).name
    assert nameless != dead_letter(incoming(b"not json either")).name


def test_a_list_shows_the_start_of_a_body_and_the_json_line_all_of_it() -> None:
    long_body = json.dumps({"prompt": "x" * (2 * BODY_SHOWN)}).encode()
    death = {"reason": "rejected", "queue": "t1.poller.check_clip", "count": 1}
    death["time"] = datetime(2026, 1, 2, tzinfo=UTC)
    letter = dead_letter(incoming(long_body, "m1", {"x-death": [death], "project_id": b"p1"}))

    assert letter.shown().endswith("…")
    assert len(letter.shown()) == BODY_SHOWN + 1
    record = json.loads(letter.as_json("t1.poller.check_clip.dlq"))
    assert record["body"] == long_body.decode()
    assert record["id"] == record["message_id"] == "m1"
    assert record["queue"] == "t1.poller.check_clip.dlq"
    assert record["reason"] == "rejected from t1.poller.check_clip (1x)"
    assert record["headers"]["project_id"] == "p1"
    assert record["headers"]["x-death"][0]["time"] == "2026-01-02T00:00:00+00:00"


def test_a_body_that_is_not_text_is_kept_in_base64() -> None:
    letter = dead_letter(incoming(b"\xff\xfe", "m1"))

    record = json.loads(letter.as_json("q"))

    assert "body" not in record
    assert base64.b64decode(record["body_base64"]) == b"\xff\xfe"
