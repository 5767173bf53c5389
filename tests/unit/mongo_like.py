"""A few lines of MongoDB update and filter semantics, for testing the pure builders without I/O.

Only what the store's builders use: equality, ``$in``, ``$ne`` and ``$exists`` on
dotted paths in filters; ``$set``, ``$unset``, ``$inc``, ``$min``, ``$push`` with
``$each``/``$slice``, ``$addToSet`` and ``$pull`` (of one value) in updates.
Like MongoDB, an update that names one path twice, or a path and its parent, is
refused (``UpdateConflict``) instead of applied in some order.
Integration tests run the same builders on a real database; this lets the unit
tests follow a document through many changes.
"""

from __future__ import annotations

import copy
from typing import Any

Document = dict[str, Any]
_MISSING = object()


def _get(doc: Document, path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _parent(doc: Document, path: str) -> tuple[Document, str]:
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
    return node, last


def matches(doc: Document, query: Document) -> bool:
    for path, wanted in query.items():
        value = _get(doc, path)
        if isinstance(wanted, dict) and any(key.startswith("$") for key in wanted):
            for operator, argument in wanted.items():
                if operator == "$in" and (value is _MISSING or value not in argument):
                    return False
                if operator == "$exists" and (value is not _MISSING) != argument:
                    return False
                if operator == "$ne" and value == argument:
                    return False
        elif wanted is None:
            if value is not _MISSING and value is not None:
                return False
        elif value is _MISSING or value != wanted:
            return False
    return True


_OPERATORS = ("$set", "$unset", "$inc", "$min", "$push", "$addToSet", "$pull")


class UpdateConflict(ValueError):
    """Two paths of one update are equal or one is the parent of the other."""


def check_conflicts(update: Document) -> None:
    """Raise ``UpdateConflict`` where MongoDB would ("... would create a conflict at ...")."""
    unknown = set(update) - set(_OPERATORS)
    if unknown:
        raise ValueError(f"mongo_like does not know {sorted(unknown)}")
    seen: list[tuple[str, str]] = []
    for operator in _OPERATORS:
        for path in update.get(operator, {}):
            for other_operator, other in seen:
                if path == other or path.startswith(other + ".") or other.startswith(path + "."):
                    raise UpdateConflict(
                        f"{operator} {path!r} conflicts with {other_operator} {other!r}"
                    )
            seen.append((operator, path))


def apply(doc: Document, update: Document) -> Document:
    """``doc`` after ``update`` (a new document; ``doc`` is left as it was)."""
    check_conflicts(update)
    after = copy.deepcopy(doc)
    for path, value in update.get("$set", {}).items():
        node, last = _parent(after, path)
        node[last] = copy.deepcopy(value)
    for path in update.get("$unset", {}):
        node, last = _parent(after, path)
        node.pop(last, None)
    for path, amount in update.get("$inc", {}).items():
        node, last = _parent(after, path)
        node[last] = node.get(last, 0) + amount
    for path, value in update.get("$min", {}).items():
        node, last = _parent(after, path)
        if node.get(last) is None or value < node[last]:
            node[last] = value
    for path, spec in update.get("$push", {}).items():
        node, last = _parent(after, path)
        items = node.setdefault(last, []) + copy.deepcopy(spec["$each"])
        if "$slice" in spec:
            items = items[spec["$slice"] :]
        node[last] = items
    for path, value in update.get("$addToSet", {}).items():
        node, last = _parent(after, path)
        if value not in node.setdefault(last, []):
            node[last].append(value)
    for path, value in update.get("$pull", {}).items():
        node, last = _parent(after, path)
        if isinstance(node.get(last), list):
            node[last] = [item for item in node[last] if item != value]
    return after


def find_one_and_update(doc: Document, query: Document, update: Document) -> Document | None:
    """The document after the update, or None when ``query`` does not match."""
    if not matches(doc, query):
        return None
    return apply(doc, update)
