"""A fix to SecantusDB's server: an update copies only the parts of the document it changes.

Installed by :mod:`reelflow_devtools.secantusd`, the server the dev and test database runs.

Why. To apply an operator update (``$set``, ``$inc``, ``$push``…) secantusdb
0.7.0b3 deep-copies the whole stored document (``copy.deepcopy`` in
``update.apply_update``), then changes the copy. reelflow's project document
keeps every clip of the project (a 50-scene project: ~280 fields), and each clip
change is one such update of a few of its fields: ``py-spy record --gil`` of the
server under ``python -m reelflow_devtools.store_cost``, ``deepcopy`` 5 % of its
samples, growing with the project.

The fix: for the updates the storage layer makes of a stored document
(``apply_update`` as ``secantus.storage`` calls it, not an upsert's insert, not a
pipeline or a replacement) whose operators all name their fields in a document,
the copy is a copy-on-write one: the document itself and every document on the
path to a field the update names (``$rename``: both names) are copied one level
(a new dict with the same values); what the path reaches last, or an array, or
what precedes a positional part (``$``, ``$[]``, ``$[<id>]``), is deep-copied as
before. The update's own code then runs unchanged on that copy (the fix hands it
the copy where it asks ``copy.deepcopy`` for one), and an operator changes only
what its path reaches: the containers on the path, which are copies, and below
its end, which is a deep copy. Everything else is shared with the stored
document the server decoded, which nothing changes afterwards (it is read to
compare, to compute the old index keys and the oplog, then dropped). The
results are byte-for-byte those of the deep copy. Should the server's internals
differ (another version), nothing changes and :func:`install` says so.
"""

from __future__ import annotations

import copy
import threading
import types
from collections.abc import Mapping
from typing import Any

PATCHED = "_reelflow_update_copy"
_POSITIONAL_START = "$"

_current = threading.local()


class _Plan:
    """The document the next deep copy on this thread is of, and the paths its update names."""

    __slots__ = ("doc", "paths")

    def __init__(self, doc: dict[str, Any], paths: list[list[str]]) -> None:
        self.doc = doc
        self.paths = paths


class _Copier(types.ModuleType):
    """``secantus.update``'s ``copy`` module: the planned document's copy is copy-on-write."""

    def __init__(self) -> None:
        super().__init__("copy")
        self.__dict__.update(
            {
                name: getattr(copy, name)
                for name in dir(copy)
                if not name.startswith("__") and name != "deepcopy"
            }
        )
        setattr(self, PATCHED, True)

    def deepcopy(self, x: Any, memo: Any = None) -> Any:
        plan: _Plan | None = getattr(_current, "plan", None)
        if plan is not None and memo is None and x is plan.doc:
            _current.plan = None
            return copy_on_write(x, plan.paths)
        return copy.deepcopy(x, memo)


def install() -> bool:
    """Patch the update's copy; False (nothing changed) if the server's internals differ."""
    try:
        from secantus import storage
        from secantus import update as update_module
    except ImportError:
        return False
    if getattr(update_module, "copy", None) is not copy and not getattr(
        update_module.copy, PATCHED, False
    ):
        return False
    if not hasattr(storage, "apply_update") or not _copies_the_document(update_module):
        return False
    if getattr(update_module.copy, PATCHED, False):
        return True
    update_module.copy = _Copier()
    storage.apply_update = _planning(storage.apply_update)
    return True


def _copies_the_document(update_module: Any) -> bool:
    """Whether ``apply_update`` still makes its operator-update copy as ``copy.deepcopy(doc)``."""
    import inspect

    try:
        source = inspect.getsource(update_module.apply_update)
    except (OSError, TypeError):
        return False
    return "result = copy.deepcopy(doc)" in source


def _planning(original: Any) -> Any:
    def apply_update(doc: Any, update: Any, *args: Any, **kwargs: Any) -> Any:
        paths = None if args or kwargs.get("is_upsert") else updated_paths(doc, update)
        if paths is None:
            return original(doc, update, *args, **kwargs)
        outer = getattr(_current, "plan", None)
        _current.plan = _Plan(doc, paths)
        try:
            return original(doc, update, *args, **kwargs)
        finally:
            _current.plan = outer

    setattr(apply_update, PATCHED, True)
    return apply_update


def updated_paths(doc: Any, update: Any) -> list[list[str]] | None:
    """The paths an operator update names, split at their dots; None: copy all of it."""
    if type(doc) is not dict or not isinstance(update, Mapping) or not update:
        return None
    paths: list[list[str]] = []
    for op, fields in update.items():
        if not isinstance(op, str) or not op.startswith("$") or not isinstance(fields, Mapping):
            return None
        for field, value in fields.items():
            if not isinstance(field, str) or not field:
                return None
            paths.append(field.split("."))
            if op == "$rename":
                if not isinstance(value, str) or not value:
                    return None
                paths.append(value.split("."))
    return paths


def copy_on_write(doc: dict[str, Any], paths: list[list[str]]) -> dict[str, Any]:
    """``doc`` copied one level along each path, deep where a path ends or turns positional."""
    root = dict(doc)
    #: the dicts this copy made one level deep: their values may still be shared
    shallow = {id(root)}
    for path in paths:
        node = root
        for depth, part in enumerate(path):
            if part.startswith(_POSITIONAL_START) or part not in node:
                break  # nothing below to share: the operator creates it, in a copy
            child = node[part]
            last = depth == len(path) - 1 or path[depth + 1].startswith(_POSITIONAL_START)
            if type(child) is not dict or last:
                node[part] = copy.deepcopy(child)
                break
            if id(child) not in shallow:
                child = dict(child)
                node[part] = child
                shallow.add(id(child))
            node = child
    return root
