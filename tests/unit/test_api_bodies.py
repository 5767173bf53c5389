"""Every request body the API reads into a model is read by one rule: strict JSON types."""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import reelflow_api.schemas
import reelflow_notifier.multiplex
from reelflow_common.client_json import ClientJson
from reelflow_devtools.contracts import openapi_document

#: what ``json.loads`` makes of a JSON document, which a strict model takes as it is
JSON_SCALARS = (str, int, float, bool, type(None))


def every_subclass(model: type[ClientJson]) -> Iterator[type[ClientJson]]:
    for subclass in model.__subclasses__():
        yield subclass
        yield from every_subclass(subclass)


def test_every_request_body_model_is_client_json() -> None:
    document = openapi_document()
    bodies = {
        media["schema"]["$ref"].rsplit("/", 1)[-1]
        for path in document["paths"].values()
        for operation in path.values()
        for media in operation.get("requestBody", {}).get("content", {}).values()
        if "$ref" in media["schema"]
    }

    assert bodies, "no request body refers to a model: has this test lost its way?"
    assert bodies <= {model.__name__ for model in every_subclass(ClientJson)}, (
        "derive each request body's model from reelflow_common.client_json.ClientJson"
    )


def test_every_client_json_field_takes_a_type_json_has() -> None:
    # FastAPI validates a body as the Python objects json.loads made of it, not as JSON text,
    # so a strict Enum, datetime, UUID, Decimal, tuple or set field would refuse every value
    # a client can send (a string, an array). Such a field needs a lax validator of its own.
    models = [reelflow_api.schemas.CreateProjectIn, reelflow_notifier.multiplex.Subscribe]
    assert set(models) <= set(every_subclass(ClientJson)), "a module no longer defines these?"

    foreign = [
        f"{model.__name__}.{name}: {found}"
        for model in every_subclass(ClientJson)
        for name, info in model.model_fields.items()
        for found in not_json(info.annotation)
    ]

    assert foreign == [], (
        "ClientJson fields take JSON's own types only (str, int, float, bool, None, list,"
        " dict with str keys, Literal of those, ClientJson models): strict mode refuses the"
        f" string or array a client sends for these: {'; '.join(foreign)}"
    )


def not_json(annotation: Any) -> Iterator[str]:
    """The parts of a field's type that are not JSON's own, as written."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is Any or annotation in (*JSON_SCALARS, list, dict):
        return
    if origin is Annotated:
        yield from not_json(args[0])
    elif origin is Literal:
        yield from (repr(value) for value in args if not isinstance(value, JSON_SCALARS))
    elif origin in (Union, types.UnionType, list):
        for arg in args:
            yield from not_json(arg)
    elif origin is dict:
        if args[0] is not str:
            yield f"dict keys of {args[0]!r}"
        yield from not_json(args[1])
    elif not (isinstance(annotation, type) and issubclass(annotation, ClientJson)):
        # A nested ClientJson model is checked as one of every_subclass(ClientJson).
        yield repr(annotation)
