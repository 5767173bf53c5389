"""Prefixed names, each work queue's ladder, what counts as an outage: no broker needed."""

from __future__ import annotations

import re

from reelflow_common.errors import InvalidMessage, TransientError
from reelflow_common.settings import TopologySettings
from reelflow_common.topology import (
    BACKSTOP_DELIVERY_LIMIT,
    CHECK_CLIP,
    HINTED_CHECK,
    RETRY_JITTER,
    SUBMIT_CLIP,
    Topology,
)
from reelflow_common.transient import is_transient
from tests import ROOT


def test_topology_prefixes_every_name() -> None:
    topology = Topology.from_settings(TopologySettings(amqp_prefix="t1."))

    assert topology.events_exchange == "t1.reelflow.events"
    assert topology.queue(CHECK_CLIP) == "t1.poller.check_clip"
    assert topology.dead_letter_queue(CHECK_CLIP) == "t1.poller.check_clip.dlq"
    assert topology.wait_queue(CHECK_CLIP, 20000) == "t1.poller.check_clip.wait.20000ms"


def test_topology_gives_each_work_queue_its_ladder() -> None:
    settings = TopologySettings(
        retry_initial_delay_s=1,
        retry_max_delay_s=4,
        poll_initial_delay_s=10,
        poll_backoff=1.5,
        poll_max_delay_s=20,
    )
    topology = Topology.from_settings(settings)

    assert topology.ladders[SUBMIT_CLIP] == (1000, 2000, 4000)
    assert topology.ladders[HINTED_CHECK] == (1000, 2000, 4000)
    assert topology.ladders[CHECK_CLIP] == (10000, 15000, 20000)
    assert topology.wait_queue_for(CHECK_CLIP, 17) == "poller.check_clip.wait.15000ms"


def test_only_outages_are_transient() -> None:
    from aio_pika.exceptions import AMQPConnectionError
    from pymongo.errors import AutoReconnect, DuplicateKeyError, ServerSelectionTimeoutError

    assert is_transient(TransientError("runware down"))
    assert is_transient(AutoReconnect("primary stepped down"))
    assert is_transient(ServerSelectionTimeoutError("no server"))
    assert is_transient(AMQPConnectionError("broker gone"))
    assert not is_transient(DuplicateKeyError("dup"))
    assert not is_transient(InvalidMessage("garbage"))
    assert not is_transient(KeyError("bug"))


def test_topology_takes_the_queue_limits_and_keeps_the_broker_limit_as_a_backstop() -> None:
    settings = TopologySettings(max_deliveries=3, work_queue_max_length=7, wait_queue_max_length=9)

    topology = Topology.from_settings(settings)

    assert (topology.max_deliveries, topology.delivery_limit) == (3, BACKSTOP_DELIVERY_LIMIT)
    assert (topology.work_queue_max_length, topology.wait_queue_max_length) == (7, 9)
    assert topology.retry.rungs_ms() == topology.ladders[SUBMIT_CLIP]


def test_the_architecture_retry_table_shows_the_ladders_as_built() -> None:
    """ARCHITECTURE.md's one retry table: each ladder's rungs and jitter, as the code has them."""
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = doc.split("### Retries and delays", 1)[1].split("\n#", 1)[0]
    rows = {
        line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("|")
    }
    topology = Topology.from_settings(TopologySettings.model_construct())  # the defaults

    for message, work_queue in (("SubmitClip", SUBMIT_CLIP), ("CheckClip", CHECK_CLIP)):
        row = rows[f"`{message}` (`{work_queue}`)"]
        shown = re.search(r"rungs ([\d., ]+) s", row)
        assert shown is not None, row
        rungs = [float(rung) for rung in shown[1].split(", ")]
        assert rungs == [ms / 1000 for ms in topology.ladders[work_queue]], message
        jitter = topology.backoffs[work_queue].jitter
        assert (f"jitter {jitter:g}" in row) if jitter else ("no jitter" in row), message
    assert f"jitter {RETRY_JITTER:g}" in rows["`SubmitClip` (`submitter.submit_clip`)"]
    assert topology.backoffs[HINTED_CHECK] == topology.backoffs[SUBMIT_CLIP]
    assert "retry ladder" in rows["`CheckHintedTasks` (`poller.check_hinted`)"]
    assert str(BACKSTOP_DELIVERY_LIMIT) in section
