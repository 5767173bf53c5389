"""The embedded SecantusDB's updates rewrite only the index entries whose keys changed.

Stock secantusdb deletes and rewrites every index's entries (and re-checks every
unique index) for each document an update changes: see
:mod:`reelflow_devtools.secantusd_index_diff`. The fix must leave the index tables
exactly as the stock server leaves them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reelflow_common.store.documents import PROJECT_INDEXES
from reelflow_devtools import secantusd_index_diff
from tests.fixtures.secantus_stores import opened_stores

pytestmark = pytest.mark.integration

DB, COLL = "reelflow", "projects"
T0 = datetime(2026, 12, 2, tzinfo=UTC)
#: beside reelflow's own: what its indexes do not exercise
OTHER_INDEXES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("tags", {"tags": 1}, {}),
    ("sparse_label", {"label": 1}, {"sparse": True}),
    ("title_ci", {"title": 1}, {"collation": {"locale": "en", "strength": 2}}),
    # membership moves while the key stays
    ("generating", {"tenant_id": 1}, {"partialFilterExpression": {"status": "generating"}}),
]
#: what the fix wraps: restored after each test, as the rest of this process expects
WRAPPED = (
    "_update_matching_single_txn",
    "_unique_conflict",
    "_delete_index_entries",
    "_write_index_entries",
    "_validate_geo_indexes",
)


def _project(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "_id": f"p{n}",
        "tenant_id": "t1",
        "status": "queued",
        "created_at": T0 + timedelta(seconds=n),
        "due_at": T0 + timedelta(minutes=5),
        "title": "Abc",
        "tags": ["a", "b"],
        "clips": {},
        **fields,
    }


def _open(path: Path) -> Any:
    from secantus import storage

    store = storage.Storage(str(path))
    for model in PROJECT_INDEXES:
        spec = dict(model.document)
        name, key = spec.pop("name"), dict(spec.pop("key"))
        store.create_index(DB, COLL, name, key, spec)
    for name, key, options in OTHER_INDEXES:
        store.create_index(DB, COLL, name, key, options)
    store.insert(
        DB,
        COLL,
        [
            _project(1, idempotency_key="k1"),
            _project(2),
            _project(3, tenant_id="t2", idempotency_key="k1"),
        ],
    )
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
    monkeypatch.setattr(storage, "apply_update", storage.apply_update)

    def install() -> None:
        assert secantusd_index_diff.install()

    return install


def _spy_on_rewrites(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    """Record which indexes each unique check, delete and write of ``projects`` is given."""
    from secantus import storage

    seen: list[tuple[str, list[str]]] = []

    def spy(kind: str, original: Any) -> Any:
        def method(self: Any, db: str, coll: str, doc: Any, indexes: Any, *a: Any, **k: Any) -> Any:
            if coll == COLL:
                seen.append((kind, sorted(index[0] for index in indexes)))
            return original(self, db, coll, doc, indexes, *a, **k)

        return method

    for kind, name in [
        ("check", "_unique_conflict"),
        ("delete", "_delete_index_entries"),
        ("write", "_write_index_entries"),
    ]:
        monkeypatch.setattr(storage.Storage, name, spy(kind, getattr(storage.Storage, name)))
    return seen


def test_an_update_rewrites_only_the_indexes_whose_keys_changed(
    stores: Callable[[str], Any],
    install_fix: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = stores("spy")
    seen = _spy_on_rewrites(monkeypatch)
    install_fix()

    # a clip's change: no indexed field moves (due_at's $min keeps the earlier lease)
    store.update_matching(
        DB,
        COLL,
        {"_id": "p1", "status": {"$in": ["queued"]}},
        {"$set": {"clips.0": {"state": "submitted"}}, "$min": {"due_at": T0 + timedelta(hours=1)}},
    )
    assert seen == [("check", []), ("delete", []), ("write", [])]

    seen.clear()
    store.update_matching(DB, COLL, {"_id": "p1"}, {"$set": {"status": "generating"}})
    rewritten = ["generating", "reconcile_due", "tenant_status_newest"]
    assert seen == [("check", rewritten), ("delete", rewritten), ("write", rewritten)]
    found = store.find_matching(
        DB, COLL, {"tenant_id": "t1", "status": "generating"}, hint="tenant_status_newest"
    )
    assert [doc["_id"] for doc in found] == ["p1"]
    assert (
        store.find_matching(DB, COLL, {"status": "queued", "_id": "p1"}, hint="reconcile_due") == []
    )
    found = store.find_matching(
        DB, COLL, {"tenant_id": "t1", "status": "generating"}, hint="generating"
    )
    assert [doc["_id"] for doc in found] == ["p1"]


def test_a_duplicate_an_update_makes_is_still_refused(
    stores: Callable[[str], Any], install_fix: Callable[[], None]
) -> None:
    from secantus import storage

    store = stores("unique")
    install_fix()

    # p2 enters the partial unique index with p1's key
    with pytest.raises(storage.IndexConflict):
        store.update_matching(DB, COLL, {"_id": "p2"}, {"$set": {"idempotency_key": "k1"}})
    # p3 (key k1 in tenant t2) moves to p1's tenant: the key is p3's own, the tenant changed
    with pytest.raises(storage.IndexConflict):
        store.update_matching(DB, COLL, {"_id": "p3"}, {"$set": {"tenant_id": "t1"}})
    # p1 leaves the partial index: its key is free again
    store.update_matching(DB, COLL, {"_id": "p1"}, {"$set": {"idempotency_key": 7}})
    store.update_matching(DB, COLL, {"_id": "p2"}, {"$set": {"idempotency_key": "k1"}})
    with pytest.raises(storage.IndexConflict):
        store.update_matching(DB, COLL, {"_id": "p1"}, {"$set": {"idempotency_key": "k1"}})
    found = store.find_matching(
        DB, COLL, {"tenant_id": "t1", "idempotency_key": "k1"}, hint="tenant_idempotency_key"
    )
    assert [doc["_id"] for doc in found] == ["p2"]


#: (filter, update): every way an update can move (or not move) an index's keys
UPDATES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"_id": "p1"}, {"$set": {"clips.0": {"state": "submitted"}}}),
    ({"_id": "p1"}, {"$set": {"status": "generating"}}),
    ({"_id": "p2"}, {"$set": {"idempotency_key": "k1"}}),  # refused: duplicate
    ({"_id": "p2"}, {"$set": {"idempotency_key": 5}}),  # still outside the partial index
    ({"_id": "p2"}, {"$set": {"idempotency_key": "k2"}}),  # enters it
    ({"_id": "p1"}, {"$unset": {"idempotency_key": ""}}),  # leaves it
    ({"_id": "p3"}, {"$set": {"tenant_id": "t1"}}),  # k1 is free in t1 now
    ({"_id": "p2"}, {"$set": {"idempotency_key": "k1"}}),  # refused: p3's now
    ({"_id": "p1"}, {"$set": {"title": "ABC"}}),  # the same key under the collation
    ({"_id": "p1"}, {"$set": {"title": "Abd"}}),
    ({"_id": "p1"}, {"$push": {"tags": "c"}}),
    ({"_id": "p2"}, {"$set": {"tags": ["b", "a"]}}),  # the same elements, another array
    ({"_id": "p1"}, {"$set": {"label": "x"}}),  # enters the sparse index
    ({"_id": "p1"}, {"$unset": {"label": ""}}),
    ({"_id": "p1"}, {"$min": {"due_at": T0 + timedelta(hours=1)}}),  # nothing changes
    ({"_id": "p1"}, {"$set": {"copy_due_at": T0, "status": "succeeded"}}),
    ({"_id": "p9"}, {"$set": {"tenant_id": "t1", "idempotency_key": "k2"}}),  # upsert, refused
    ({"_id": "p8"}, {"$set": {"tenant_id": "t1", "idempotency_key": "k8"}}),  # upsert
    ({"_id": "p8"}, {"$set": {"idempotency_key": "k9"}}),
]


def _apply_all(
    store: Any, updates: list[tuple[dict[str, Any], dict[str, Any]]] = UPDATES
) -> list[tuple[str, dict[str, Any]]]:
    """Each update's outcome, and the tables after it."""
    from secantus import storage

    after = []
    for filter, update in updates:
        try:
            store.update_matching(DB, COLL, filter, update, upsert=filter["_id"] in ("p8", "p9"))
        except storage.IndexConflict as refused:
            outcome = f"refused: {refused}"
        else:
            outcome = "done"
        after.append((outcome, _tables(store)))
    return after


#: what the random updates set: equal keys of other types, arrays, collation-equal strings
VALUES: list[Any] = [
    None,
    1,
    1.0,
    "a",
    "A",
    "k1",
    "k1",
    "k2",
    "generating",
    ["a", "b"],
    ["b", "a"],
    [1, 1],
    {},
]
FIELDS = ["tenant_id", "status", "idempotency_key", "due_at", "title", "tags", "label", "clips.0"]


def _random_updates(seed: int, count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    rnd = random.Random(seed)
    updates: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for _ in range(count):
        field, value = rnd.choice(FIELDS), rnd.choice(VALUES)
        update = {"$unset": {field: ""}} if rnd.random() < 0.2 else {"$set": {field: value}}
        updates.append(({"_id": f"p{rnd.randint(1, 3)}"}, update))
    return updates


def _tables(store: Any) -> dict[str, Any]:
    from secantus import storage

    return {
        "entries": store._collect_prefix(storage._IDX_ENTRIES_TABLE, (DB, COLL)),
        "unique keys": store._collect_prefix(storage._UNIQ_TABLE, (DB, COLL)),
        "documents": store.find_matching(DB, COLL, {}, sort={"_id": 1}),
    }


def test_the_index_tables_are_what_the_stock_server_leaves(
    stores: Callable[[str], Any], install_fix: Callable[[], None]
) -> None:
    stock = _apply_all(stores("stock"))
    install_fix()
    fixed = _apply_all(stores("fixed"))

    assert [outcome for outcome, _ in stock].count("done") == len(UPDATES) - 3  # refusals
    for update, (outcome, tables), (stock_outcome, stock_tables) in zip(
        UPDATES, fixed, stock, strict=True
    ):
        assert outcome == stock_outcome, update
        assert tables == stock_tables, update


@pytest.mark.parametrize("seed", range(3))
def test_random_updates_leave_the_tables_as_the_stock_server_does(
    seed: int, stores: Callable[[str], Any], install_fix: Callable[[], None]
) -> None:
    updates = _random_updates(seed, 60)
    stock = _apply_all(stores("stock"), updates)
    install_fix()

    assert _apply_all(stores("fixed"), updates) == stock
