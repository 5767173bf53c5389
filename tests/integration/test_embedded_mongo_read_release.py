"""The embedded SecantusDB's index fetch lets go of the document page it read.

Stock secantusdb leaves each thread's cursor on the last document it read, which
keeps a hazard pointer on that page: every ``findAndModify`` queued for the
collection's lock then blocks the eviction of the hot project's page (see
:mod:`reelflow_devtools.secantusd_read_release`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from reelflow_common.mongo import Document
from reelflow_devtools import secantusd_read_release
from reelflow_devtools.embedded_mongo import embedded_mongo
from reelflow_devtools.secantusd import WITHOUT_FIX

pytestmark = pytest.mark.integration


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    from secantus import storage

    opened = storage.Storage(str(tmp_path / "data"))
    try:
        opened.insert("reelflow", "projects", [{"_id": f"p{n}", "n": n} for n in range(3)])
        yield opened
    finally:
        opened.close()


def _documents_cursor_position(store: Any) -> list[Any] | None:
    """Where this thread's cursor on the documents of ``projects`` stands; None: nowhere."""
    import wiredtiger
    from secantus import storage

    cursor = store._tls.cursors[(storage._doc_table_for("reelflow", "projects"), True)]
    try:
        return list(cursor.get_key())
    except wiredtiger.WiredTigerError:  # "requires key be set": not positioned
        return None


def test_an_index_fetch_leaves_no_cursor_on_the_page_it_read(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from secantus import storage

    # the fix is a class patch: undone after the test, as the rest of this process expects
    monkeypatch.setattr(storage.Storage, "_docs_by_recordids", storage.Storage._docs_by_recordids)
    assert secantusd_read_release.install()

    found = store.find_matching("reelflow", "projects", {"_id": "p1", "n": {"$gte": 0}})

    assert found == [{"_id": "p1", "n": 1}]
    assert _documents_cursor_position(store) is None


def test_the_dev_database_runs_with_every_fix(tmp_path: Path) -> None:
    log = tmp_path / "mongo.log"
    with embedded_mongo(tmp_path / "data", log_path=log) as url:
        client: MongoClient[Document] = MongoClient(url)
        try:
            client.reelflow.projects.insert_one({"_id": "p1"})
            assert client.reelflow.projects.find_one({"_id": "p1"}) == {"_id": "p1"}
            pid = int(client.admin.command("serverStatus")["pid"])
            command_line = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        finally:
            client.close()

    assert b"reelflow_devtools.secantusd" in command_line
    assert WITHOUT_FIX not in log.read_text()
