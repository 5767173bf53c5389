"""JSON schemas of what reelflow writes with ``exclude_none``, as its JSON holds it.

Pydantic's serialization schema of a member with a default says "may be absent, may be
``null``"; what reelflow writes (``model_dump(exclude_none=True)``: a project status, its
results, the WebSocket's messages) never holds a ``null`` and always holds a member whose
default is a value. Both contracts (the OpenAPI document and the AsyncAPI ones) are
reshaped by this one function, so they say the same of the same model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def as_written(schemas: dict[str, Any], *, read: Iterable[str] = ()) -> dict[str, Any]:
    """``schemas`` (by name) reshaped in place as written, but those named in ``read`` (the
    client's, as they are parsed): a member with a value by default is always there
    (``required``), one unset is left out, never ``null``. Returns ``schemas``."""
    skipped = set(read)
    for name, schema in schemas.items():
        if name in skipped:
            continue
        required: list[str] = schema.setdefault("required", [])
        optional = set(schema.get("properties", {})) - set(required)
        for member, spec in schema.get("properties", {}).items():
            # FastAPI's answers drop a default of None; pydantic's schemas keep it.
            default = spec.pop("default", None)
            if default is not None:
                required.append(member)
            elif member in optional and "anyOf" in spec:
                kinds = [kind for kind in spec.pop("anyOf") if kind != {"type": "null"}]
                if len(kinds) == 1:
                    spec.update(kinds[0])
                else:
                    spec["anyOf"] = kinds
        if not required:
            del schema["required"]
    return schemas
