"""The embedded SecantusDB's updates copy only the parts of the document they change.

Stock secantusdb deep-copies the whole stored document for every operator
update: see :mod:`reelflow_devtools.secantusd_update_copy`. The fix must leave
every outcome (stored bytes, post-images, errors) exactly as the stock server's.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bson
import pytest

from reelflow_devtools import secantusd_update_copy
from tests.fixtures.secantus_stores import opened_stores

pytestmark = pytest.mark.integration

DB, COLL = "reelflow", "projects"
T0 = datetime(2026, 12, 2, tzinfo=UTC)


def _project(n: int) -> dict[str, Any]:
    return {
        "_id": f"p{n}",
        "tenant_id": "t1",
        "status": "generating",
        "due_at": T0,
        "tags": ["a", "b"],
        "scores": [3, 1, 2],
        "items": [{"k": "a", "n": 1}, {"k": "b", "n": 2}],
        "clips": {
            str(scene): {"status": "queued", "attempts": 0, "result": {"url": None}}
            for scene in range(3)
        },
        "meta": {"deep": {"deeper": {"x": 1}}, "list": [[1, 2], [3]]},
    }


#: (filter, update, options): every kind of path an update names
UPDATES: list[tuple[dict[str, Any], Any, dict[str, Any]]] = [
    # reelflow's own: one clip's fields, a guard in the filter, a lease by $min
    (
        {"_id": "p1", "status": {"$in": ["generating"]}},
        {
            "$set": {"clips.0.status": "submitted", "clips.0.task_uuid": "u1"},
            "$inc": {"clips.0.attempts": 1},
            "$min": {"due_at": T0.replace(hour=1)},
        },
        {},
    ),
    ({"_id": "p1"}, {"$set": {"clips.1": {"status": "succeeded"}}}, {}),
    ({"_id": "p1"}, {"$set": {"meta.deep.deeper.y": 2, "meta.new.path": [1]}}, {}),
    ({"_id": "p1"}, {"$unset": {"clips.2.result": "", "missing.path": ""}}, {}),
    ({"_id": "p1"}, {"$inc": {"clips.0.attempts": 2, "counter": 1}}, {}),
    ({"_id": "p1"}, {"$mul": {"clips.0.attempts": 3}}, {}),
    ({"_id": "p1"}, {"$max": {"due_at": T0.replace(hour=2)}, "$min": {"clips.0.attempts": -1}}, {}),
    ({"_id": "p1"}, {"$push": {"tags": "c", "meta.list.0": 9}}, {}),
    ({"_id": "p1"}, {"$push": {"scores": {"$each": [5, 0], "$sort": 1, "$slice": 4}}}, {}),
    ({"_id": "p1"}, {"$addToSet": {"tags": {"$each": ["a", "z"]}}}, {}),
    ({"_id": "p1"}, {"$pull": {"items": {"k": "a"}}, "$pop": {"scores": 1}}, {}),
    ({"_id": "p1"}, {"$pullAll": {"tags": ["z"]}}, {}),
    ({"_id": "p1"}, {"$rename": {"clips.1": "done.1", "meta.deep": "meta.moved"}}, {}),
    ({"_id": "p1"}, {"$set": {"tags.1": "B", "scores.7": 1}}, {}),  # array element, padding
    ({"_id": "p1", "items.k": "b"}, {"$set": {"items.$.n": 20}}, {}),  # positional
    ({"_id": "p2"}, {"$inc": {"items.$[].n": 1}}, {}),
    (
        {"_id": "p2"},
        {"$set": {"items.$[big].k": "big"}},
        {"array_filters": [{"big.n": {"$gte": 3}}]},
    ),
    ({"_id": "p2"}, {"$bit": {"clips.0.attempts": {"or": 5}}}, {}),
    ({"_id": "p2"}, {"$setOnInsert": {"never": 1}, "$set": {"status": "succeeded"}}, {}),
    ({"_id": "p2"}, {"$set": {"status": "succeeded"}}, {}),  # nothing changes
    ({"_id": "p2"}, {"$set": {"nan": float("nan"), "zero": -0.0}}, {}),
    ({"_id": "p2"}, {"$set": {"zero": 0.0}}, {}),
    # refused: each must leave the document as the stock server leaves it
    ({"_id": "p2"}, {"$set": {"clips.0": 1, "clips.0.status": "x"}}, {}),  # conflicting paths
    ({"_id": "p2"}, {"$inc": {"status": 1}}, {}),  # not a number
    ({"_id": "p2"}, {"$set": {"status.inner": 1}}, {}),  # a field under a string
    ({"_id": "p2"}, {"$set": {"_id": "other"}}, {}),  # immutable
    ({"_id": "p2"}, {"$push": {"status": 1}}, {}),  # not an array
    ({"_id": "p2"}, {"$set": {"items.$.n": 1}}, {}),  # no positional match
    ({"_id": "p2"}, {"$nosuch": {"a": 1}}, {}),
    # the paths the fix does not plan: upserts, replacements, pipelines, many documents
    ({"_id": "p9"}, {"$set": {"clips.0.status": "queued"}, "$inc": {"n": 1}}, {"upsert": True}),
    ({"_id": "p3"}, {"status": "replaced", "clips": {}}, {}),
    ({"_id": "p1"}, [{"$set": {"copied": "$status"}}], {}),
    (
        {"tenant_id": "t1"},
        {"$set": {"clips.0.status": "failed"}, "$inc": {"v": 1}},
        {"multi": True},
    ),
]


def _open(path: Path) -> Any:
    from secantus import storage

    store = storage.Storage(str(path))
    store.insert(DB, COLL, [_project(1), _project(2), _project(3)])
    return store


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    with opened_stores(tmp_path, _open) as open_store:
        yield open_store


@pytest.fixture
def install_fix(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    from secantus import storage
    from secantus import update as update_module

    monkeypatch.setattr(storage, "apply_update", storage.apply_update)
    monkeypatch.setattr(update_module, "copy", update_module.copy)

    def install() -> None:
        assert secantusd_update_copy.install()

    return install


def _outcome(store: Any, filter: dict[str, Any], update: Any, options: dict[str, Any]) -> Any:
    try:
        result = store.update_matching(DB, COLL, filter, update, return_post_images=True, **options)
    except Exception as refused:
        return ("refused", type(refused).__name__, str(refused), getattr(refused, "code", None))
    result.pop("upserted_id", None)  # an ObjectId when the upsert mints one
    images = result.pop("post_images", None) or []
    return ("done", result, [bson.encode(image) for image in images])


def _stored(store: Any) -> list[bytes]:
    """Every document's stored bytes, in ``_id`` order."""
    documents = store.find_matching(DB, COLL, {}, sort={"_id": 1})
    return [bson.encode(document) for document in documents]


def _apply_all(store: Any) -> list[tuple[Any, list[bytes]]]:
    return [(_outcome(store, *update), _stored(store)) for update in UPDATES]


def test_every_update_ends_as_on_the_stock_server(
    stores: Callable[[str], Any], install_fix: Callable[[], None]
) -> None:
    stock = _apply_all(stores("stock"))
    install_fix()
    fixed = _apply_all(stores("fixed"))

    refused = [
        outcome for (outcome, _), _ in zip(stock, UPDATES, strict=True) if outcome[0] != "done"
    ]
    assert len(refused) == 7
    for update, after, stock_after in zip(UPDATES, fixed, stock, strict=True):
        assert after == stock_after, update


def test_an_update_shares_what_it_does_not_change(install_fix: Callable[[], None]) -> None:
    from secantus import storage

    install_fix()
    stored = _project(1)
    before = copy.deepcopy(stored)
    new = storage.apply_update(
        stored,
        {"$set": {"clips.0.status": "submitted"}, "$inc": {"clips.0.attempts": 1}},
        positional_matches={},
    )

    assert new["clips"]["1"] is stored["clips"]["1"]
    assert new["meta"] is stored["meta"]
    assert new["clips"]["0"] is not stored["clips"]["0"]
    assert new["clips"]["0"] == {"status": "submitted", "attempts": 1, "result": {"url": None}}
    assert stored == before  # the stored document is left as it was


#: what the random updates name: top-level, nested, under arrays, missing
PATHS = [
    "status",
    "clips.0.status",
    "clips.1.result.url",
    "clips.2",
    "meta.deep.deeper.x",
    "meta.list.1",
    "tags",
    "tags.0",
    "items.1.n",
    "new.nested.field",
]
VALUES: list[Any] = [None, 1, 2.5, "a", ["x", 1], {"k": "v", "n": [1]}, T0]


def _random_update(rnd: random.Random) -> dict[str, Any]:
    path = rnd.choice(PATHS)
    op = rnd.choice(["$set", "$unset", "$inc", "$push", "$min", "$max", "$rename", "$addToSet"])
    if op == "$unset":
        return {op: {path: ""}}
    if op == "$inc":
        return {op: {path: rnd.choice([1, -2, 0.5])}}
    if op == "$rename":
        return {op: {path: rnd.choice(["moved", "meta.moved", "clips.9"])}}
    second = rnd.choice(PATHS)
    update = {op: {path: rnd.choice(VALUES)}}
    if not second.startswith(path) and not path.startswith(second):
        update["$set"] = {**update.get("$set", {}), second: rnd.choice(VALUES)}
    return update


@pytest.mark.parametrize("seed", range(3))
def test_random_updates_end_as_on_the_stock_server(
    seed: int, stores: Callable[[str], Any], install_fix: Callable[[], None]
) -> None:
    rnd = random.Random(seed)
    updates: list[tuple[dict[str, Any], Any, dict[str, Any]]] = [
        ({"_id": f"p{rnd.randint(1, 3)}"}, _random_update(rnd), {}) for _ in range(80)
    ]
    stock_store = stores("stock")
    stock = [(_outcome(stock_store, *update), _stored(stock_store)) for update in updates]
    install_fix()
    fixed_store = stores("fixed")
    fixed = [(_outcome(fixed_store, *update), _stored(fixed_store)) for update in updates]

    assert any(outcome[0] == "done" for outcome, _ in stock)
    for update, after, stock_after in zip(updates, fixed, stock, strict=True):
        assert after == stock_after, update
