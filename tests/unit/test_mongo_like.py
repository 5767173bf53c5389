"""``mongo_like`` refuses the update path conflicts MongoDB refuses.

So a unit test of the store's builders cannot pass on an update the database rejects.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.mongo_like import UpdateConflict, apply

CONFLICTING: list[dict[str, Any]] = [
    {"$set": {"clips.0": {}}, "$unset": {"clips.0.error": ""}},
    {"$set": {"clips.0.error": "x"}, "$unset": {"clips.0": ""}},
    {"$set": {"counts.done": 1}, "$inc": {"counts.done": 1}},
    {"$inc": {"seq": 1}, "$min": {"seq": 0}},
    {"$push": {"events": {"$each": [1]}}, "$set": {"events.3": 1}},
    {"$addToSet": {"tags": "a"}, "$pull": {"tags": "b"}},
    {"$set": {"a": 1, "a.b.c": 2}},
]

FREE: list[dict[str, Any]] = [
    {"$set": {"clips.0.status": "done", "clips.1.status": "done"}, "$unset": {"clips.0.error": ""}},
    {"$set": {"clips.1": {}}, "$unset": {"clips.10.error": ""}},
    {"$set": {"a.b": 1}, "$inc": {"a.bc": 1}, "$min": {"ab": 0}},
    {"$inc": {"seq": 2}, "$push": {"events": {"$each": [1, 2], "$slice": -64}}},
]


@pytest.mark.parametrize("update", CONFLICTING)
def test_an_update_naming_a_path_twice_or_with_its_parent_is_refused(
    update: dict[str, Any],
) -> None:
    with pytest.raises(UpdateConflict):
        apply({}, update)


@pytest.mark.parametrize("update", FREE)
def test_an_update_of_disjoint_paths_is_applied(update: dict[str, Any]) -> None:
    apply({"clips": {}, "seq": 0, "events": []}, update)


def test_an_unknown_operator_is_refused_rather_than_ignored() -> None:
    with pytest.raises(ValueError, match=r"\$max"):
        apply({}, {"$max": {"seq": 1}})
