"""The embedded SecantusDB reads a collection's index catalog once per write transaction.

Stock secantusdb walks its index catalog table seven times or more for one
update: see :mod:`reelflow_devtools.secantusd_index_catalog`. The fix must leave
every outcome as the stock server's, whatever changes the catalog between
(and during) writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
import pytest

from reelflow_common.store.documents import PROJECT_INDEXES
from reelflow_devtools import secantusd_index_catalog
from tests.fixtures.secantus_stores import opened_stores

pytestmark = pytest.mark.integration

DB, COLL = "reelflow", "projects"
T0 = datetime(2026, 12, 2, tzinfo=UTC)
#: what the fix wraps: restored after each test, as the rest of this process expects
WRAPPED = (
    "_iter_indexes",
    "_batch_transaction",
    "_maybe_mark_multikey",
    *secantusd_index_catalog.WRITERS,
)


def _project(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "_id": f"p{n}",
        "tenant_id": "t1",
        "status": "queued",
        "created_at": T0 + timedelta(seconds=n),
        "due_at": T0 + timedelta(minutes=5),
        "email": f"e{n}",
        "clips": {"0": {"status": "queued"}},
        **fields,
    }


def _open(path: Path) -> Any:
    from secantus import storage

    store = storage.Storage(str(path))
    for model in PROJECT_INDEXES:
        spec = dict(model.document)
        name, key = spec.pop("name"), dict(spec.pop("key"))
        store.create_index(DB, COLL, name, key, spec)
    store.insert(DB, COLL, [_project(1, idempotency_key="k1"), _project(2), _project(3)])
    return store


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    with opened_stores(tmp_path, _open) as open_store:
        yield open_store


@pytest.fixture
def install_fix(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    from secantus import storage

    for name in WRAPPED:
        monkeypatch.setattr(storage.Storage, name, getattr(storage.Storage, name))

    def install() -> None:
        assert secantusd_index_catalog.install()

    return install


def _update(filter: dict[str, Any], update: Any, **options: Any) -> Callable[[Any], Any]:
    def run(store: Any) -> Any:
        result = store.update_matching(DB, COLL, filter, update, return_post_images=True, **options)
        result.pop("upserted_id", None)
        images = result.pop("post_images", None) or []
        return result, [bson.encode(image) for image in images]

    return run


def _call(method: str, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
    def run(store: Any) -> Any:
        return getattr(store, method)(*args, **kwargs)

    return run


def _insert(*documents: dict[str, Any]) -> Callable[[Any], Any]:
    return _call("insert", DB, COLL, list(documents), ordered=False)


#: what a client does between and with its writes: catalog changes among them
STEPS: list[Callable[[Any], Any]] = [
    _update({"_id": "p1", "status": {"$in": ["queued"]}}, {"$set": {"clips.0.status": "done"}}),
    _call("create_index", DB, COLL, "email_1", {"email": 1}, {"unique": True}),
    _update({"_id": "p2"}, {"$set": {"email": "e1"}}),  # refused: the new unique index
    _insert(_project(4, email="e1")),  # refused as well
    _call("drop_index", DB, COLL, "email_1"),
    _update({"_id": "p2"}, {"$set": {"email": "e1"}}),  # accepted now
    _call("create_index", DB, COLL, "email_1", {"email": 1}, {"unique": True}),  # duplicates
    _call("create_index", DB, COLL, "tags_1", {"tags": 1}),
    # the first document makes tags multikey in the write's own transaction
    _update({"tenant_id": "t1"}, {"$set": {"tags": ["a", "b"]}}, multi=True),
    _call("find_matching", DB, COLL, {"tags": "a"}, sort={"_id": 1}),
    _update({"_id": "p3"}, {"$set": {"tags": "c"}}),
    _call("find_matching", DB, COLL, {"tags": "c"}, hint="tags_1"),
    _call("set_index_options", DB, COLL, "tags_1", prepareUnique=True),
    _update({"_id": "p3"}, {"$set": {"tags": "a"}}),  # refused: a new duplicate
    _call("set_index_options", DB, COLL, "tags_1", prepareUnique=False),
    _update({"_id": "p3"}, {"$set": {"tags": "a"}}),
    _call("set_index_expiry", DB, COLL, "tags_1", 60),
    _call(
        "create_index",
        DB,
        COLL,
        "succeeded",
        {"tenant_id": 1},
        {"unique": True, "partialFilterExpression": {"status": "succeeded"}},
    ),
    _update({"_id": "p1"}, {"$set": {"status": "succeeded"}}),
    _update({"_id": "p2"}, {"$set": {"status": "succeeded"}}),  # refused: partial unique
    _update({"_id": "p9", "tenant_id": "t1"}, {"$set": {"status": "succeeded"}}, upsert=True),
    _call("rename_collection", DB, COLL, DB, "renamed"),
    _insert(_project(5, status="succeeded"), _project(6, status="succeeded")),  # a new collection
    _call("list_indexes", DB, COLL),
    _call("list_indexes", DB, "renamed"),
    _call("drop_collection", DB, COLL),
    _call("rename_collection", DB, "renamed", DB, COLL),
    _update({"_id": "p3"}, {"$set": {"status": "succeeded"}}),  # refused: p1 holds t1
    _call("drop_all_indexes", DB, COLL),
    _update({"_id": "p3"}, {"$set": {"status": "succeeded"}}),
    _insert(_project(7, email="e1")),
    _call("delete_matching", DB, COLL, {"_id": "p7"}),
    _call("drop_database", DB),
    _insert(_project(8)),
    _call("create_index", DB, COLL, "email_1", {"email": 1}, {"unique": True}),
    _update({"_id": "p8"}, {"$set": {"email": "e9"}}),
]


def _run(step: Callable[[Any], Any], store: Any) -> Any:
    try:
        return ("done", step(store))
    except Exception as refused:
        return ("refused", type(refused).__name__, str(refused))


def _tables(store: Any) -> dict[str, Any]:
    from secantus import storage

    return {
        table: store._collect_prefix(table, (DB,))
        for table in (storage._IDX_TABLE, storage._IDX_ENTRIES_TABLE, storage._UNIQ_TABLE)
    } | {
        "documents": [
            store.find_matching(DB, coll, {}, sort={"_id": 1}) for coll in (COLL, "renamed")
        ]
    }


def _apply_all(store: Any) -> list[tuple[Any, dict[str, Any]]]:
    return [(_run(step, store), _tables(store)) for step in STEPS]


def test_every_write_and_catalog_change_ends_as_on_the_stock_server(
    stores: Callable[[str], Any], install_fix: Callable[[], None]
) -> None:
    stock = _apply_all(stores("stock"))
    install_fix()
    fixed = _apply_all(stores("fixed"))

    assert [outcome[0] for outcome, _ in stock].count("refused") == 6
    for n, (after, stock_after) in enumerate(zip(fixed, stock, strict=True)):
        assert after == stock_after, n


def test_a_write_walks_the_catalog_once(
    stores: Callable[[str], Any],
    install_fix: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from secantus import storage

    store = stores("count")
    walks: list[str] = []
    walk = storage.Storage._iter_indexes

    def counted(self: Any, db: str, coll: str) -> Any:
        walks.append(coll)
        return walk(self, db, coll)

    monkeypatch.setattr(storage.Storage, "_iter_indexes", counted)
    install_fix()

    # reelflow's hot path: a guarded findAndModify of one clip
    update = _update(
        {"_id": "p1", "status": {"$in": ["queued"]}},
        {"$set": {"clips.0.status": "submitted"}, "$min": {"due_at": T0}},
    )
    update(store)

    assert walks == [COLL]


def test_a_flag_set_in_the_transaction_is_read_back(
    stores: Callable[[str], Any], install_fix: Callable[[], None]
) -> None:
    store = stores("flag")
    store.create_index(DB, COLL, "tags_1", {"tags": 1})
    install_fix()
    indexes = store._all_indexes(DB, COLL)

    with store._coll_lock(DB, COLL), store._batch_transaction():
        assert "tags_1" not in store._multikey_index_names(DB, COLL)
        store._maybe_mark_multikey(DB, COLL, {"tags": ["a"]}, indexes, set())
        assert "tags_1" in store._multikey_index_names(DB, COLL)
