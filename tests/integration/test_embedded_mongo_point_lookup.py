"""The embedded SecantusDB finds a write's document by ``_id``, whatever else the filter says.

Stock secantusdb scans the whole collection for such a write (every guarded
``findAndModify`` of reelflow's hot path): see
:mod:`reelflow_devtools.secantusd_point_lookup`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient, ReturnDocument

from reelflow_common.mongo import Document
from reelflow_devtools.embedded_mongo import embedded_mongo

pytestmark = pytest.mark.integration

DOCUMENTS = 3000
WRITES = 100


@pytest.fixture(scope="module")
def things(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MongoClient[Document], int]]:
    with embedded_mongo(tmp_path_factory.mktemp("point") / "data") as url:
        client: MongoClient[Document] = MongoClient(url)
        try:
            collection = client.point.things
            collection.create_index("status")
            collection.insert_many(
                [{"_id": f"t{n}", "status": "open", "n": 0} for n in range(DOCUMENTS)]
            )
            pid = int(client.admin.command("serverStatus")["pid"])
            yield client, pid
        finally:
            client.close()


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_guarded_find_and_modify_costs_what_an_update_by_id_costs(
    things: tuple[MongoClient[Document], int],
) -> None:
    client, pid = things
    collection = client.point.things
    started = _cpu_s(pid)
    for n in range(WRITES):
        collection.update_one({"_id": f"t{n}"}, {"$inc": {"n": 1}})
    by_id = _cpu_s(pid) - started
    started = _cpu_s(pid)
    for n in range(WRITES):
        collection.find_one_and_update(
            {"_id": f"t{n}", "status": {"$in": ["open"]}}, {"$inc": {"n": 1}}
        )
    guarded = _cpu_s(pid) - started
    # Scanning 3,000 documents per write costs ~10x an update by _id; a lookup ~1x.
    assert guarded < 3 * by_id + 0.2, (guarded, by_id)


def test_the_guard_still_decides(things: tuple[MongoClient[Document], int]) -> None:
    collection = things[0].point.things
    missed = collection.find_one_and_update(
        {"_id": "t2000", "status": "closed"}, {"$set": {"status": "x"}}
    )
    assert missed is None
    hit = collection.find_one_and_update(
        {"_id": "t2000", "status": "open"},
        {"$set": {"status": "closed"}},
        return_document=ReturnDocument.AFTER,
    )
    assert hit is not None
    assert hit["status"] == "closed"
    again = collection.find_one_and_update({"_id": "t2000", "status": "open"}, {"$inc": {"n": 1}})
    assert again is None
    several = collection.update_many(
        {"_id": {"$in": ["t2001", "t2002", "nope"]}, "status": "open"}, {"$set": {"n": 7}}
    )
    assert several.matched_count == 2
    assert collection.count_documents({"_id": "t2001", "n": 7, "status": "open"}) == 1
    gone = collection.delete_one({"_id": "t2003", "status": "closed"})
    assert gone.deleted_count == 0
    assert collection.delete_one({"_id": "t2003", "status": "open"}).deleted_count == 1
