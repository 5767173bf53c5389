"""The embedded SecantusDB's one-sided index ranges scan only their bound's type.

Stock secantusdb scans a single-field index from its first entry for ``$lt`` (to
its last for ``$gt``), reading every document without the field: see
:mod:`reelflow_devtools.secantusd_range_bracket`. The fix must find exactly what
the stock server finds. The sweeps' marks are indexed sparse since (no entry for
a document without the mark), which spares them that scan on the stock server too;
``mark`` here is indexed dense, as they were before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import Decimal128, Int64, MaxKey, MinKey, ObjectId, Timestamp

from reelflow_common.store.documents import PROJECT_INDEXES
from reelflow_common.store.transitions.markers import ATTEMPTS_DUE, COPY_DUE, SETTLE_DUE
from reelflow_devtools import secantusd_range_bracket
from tests.fixtures.secantus_stores import opened_stores

pytestmark = pytest.mark.integration

DB, COLL = "reelflow", "projects"
T0 = datetime(2026, 12, 3, tzinfo=UTC)
#: projects no sweep is due for: none of the marks at all
SETTLED = 300
#: the sweeps' marks (indexed sparse), and one indexed dense as they were before
MARKS = (ATTEMPTS_DUE, COPY_DUE, SETTLE_DUE)
DENSE_MARK = "mark"
#: the values ``v`` takes (one document each), every type a comparison could meet
VALUES: list[Any] = [
    None,
    MinKey(),
    MaxKey(),
    -5,
    0,
    2.5,
    Int64(7),
    Decimal128("4.5"),
    float("nan"),
    "",
    "a",
    "b",
    True,
    False,
    ObjectId("65f000000000000000000001"),
    ObjectId("65f000000000000000000009"),
    T0 - timedelta(hours=1),
    T0,
    T0 + timedelta(hours=1),
    Timestamp(5, 1),
    Timestamp(9, 1),
    [T0 - timedelta(hours=2), 3],
    ["a", 9],
    {"at": T0},
    [],
]
#: one-sided bounds the fix brackets, and those it leaves to the server
BOUNDS: list[Any] = [
    T0,
    3,
    2.5,
    Decimal128("3"),
    float("nan"),
    "a",
    True,
    ObjectId("65f000000000000000000005"),
    Timestamp(7, 1),
    None,
    MinKey(),
    MaxKey(),
    [T0],
    {"at": T0},
]


def _open(path: Path) -> Any:
    from secantus import storage

    store = storage.Storage(str(path))
    for model in PROJECT_INDEXES:
        spec = dict(model.document)
        name, key = spec.pop("name"), dict(spec.pop("key"))
        store.create_index(DB, COLL, name, key, spec)
    store.create_index(DB, COLL, "mark_1", {DENSE_MARK: 1}, {})
    store.create_index(DB, COLL, "v_1", {"v": 1}, {})
    store.create_index(DB, COLL, "w_-1", {"w": -1}, {})  # left to the server's own code
    settled = [{"_id": f"s{n}", "status": "completed"} for n in range(SETTLED)]
    due = [
        {"_id": f"d{n}", "status": "generating"}
        | {mark: T0 + timedelta(minutes=n) for mark in (*MARKS, DENSE_MARK)}
        for n in range(-2, 3)
    ]
    typed = [{"_id": f"v{n}", "v": value, "w": value} for n, value in enumerate(VALUES)]
    store.insert(DB, COLL, settled + due + typed)
    return store


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    with opened_stores(tmp_path, _open) as open_store:
        yield open_store


@pytest.fixture
def install_fix(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    from secantus import storage

    name = "_lookup_id_keys_via_leading_field"
    monkeypatch.setattr(storage.Storage, name, getattr(storage.Storage, name))

    def install() -> None:
        assert secantusd_range_bracket.install()

    return install


def _decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many documents each read fetched through an index (one entry per read)."""
    from secantus import storage

    counts: list[int] = []
    original = storage.Storage._docs_by_recordids

    def counted(self: Any, db: str, coll: str, recordids: Any, *args: Any, **kwargs: Any) -> Any:
        counts.append(len(recordids))
        return original(self, db, coll, recordids, *args, **kwargs)

    monkeypatch.setattr(storage.Storage, "_docs_by_recordids", counted)
    return counts


def _ids(store: Any, filter: dict[str, Any]) -> list[str]:
    return sorted(doc["_id"] for doc in store.find_matching(DB, COLL, filter))


def test_a_query_of_a_dense_mark_reads_only_the_projects_that_have_the_field(
    stores: Callable[[str], Any],
    install_fix: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = stores("reads")
    install_fix()
    decoded = _decoded(monkeypatch)

    due = _ids(store, {DENSE_MARK: {"$lt": T0}})

    assert due == ["d-1", "d-2"]
    # stock: every settled project too (indexed as null, before every date)
    assert sum(decoded) <= 5, decoded


@pytest.mark.parametrize("mark", MARKS)
def test_a_sweeps_query_reads_only_the_marked_projects_on_the_stock_server(
    stores: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch, mark: str
) -> None:
    from secantus import storage

    store = stores("sparse")
    stock = storage.Storage._lookup_id_keys_via_leading_field
    assert not getattr(stock, secantusd_range_bracket.PATCHED, False)
    decoded = _decoded(monkeypatch)

    # the query of ``ProjectCollection._due_by``
    due = store.find_matching(
        DB, COLL, {mark: {"$lt": T0}}, sort={mark: 1}, limit=10, projection={mark: 1}
    )
    sparse_reads = sum(decoded)
    decoded.clear()
    _ids(store, {DENSE_MARK: {"$lt": T0}})

    assert [doc["_id"] for doc in due] == ["d-2", "d-1"]
    assert sparse_reads <= 5, sparse_reads
    assert sum(decoded) > SETTLED  # the same marks, indexed dense: every project read


@pytest.mark.parametrize("op", ["$lt", "$lte", "$gt", "$gte"])
def test_the_fix_finds_what_the_stock_server_finds(
    stores: Callable[[str], Any], install_fix: Callable[[], None], op: str
) -> None:
    stock, fixed = stores("stock"), stores("fixed")
    queries = [{field: {op: bound}} for field in ("v", "w") for bound in BOUNDS]
    queries += [{field: {op: T0}} for field in (*MARKS, DENSE_MARK)]
    expected = {repr(query): _ids(stock, query) for query in queries}
    install_fix()

    assert {repr(query): _ids(fixed, query) for query in queries} == expected
