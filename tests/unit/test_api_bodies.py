"""Every request body the API reads into a model is read by one rule: strict JSON types."""

from __future__ import annotations

from collections.abc import Iterator

import reelflow_api.schemas
import reelflow_notifier.multiplex
from reelflow_common.client_json import ClientJson, most_separators
from reelflow_devtools.contracts import openapi_document


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
    # a client can send (a string, an array); and the api bounds a body's values before it
    # parses it. One walk decides both: the one that reads the bound.
    models = [reelflow_api.schemas.CreateProjectIn, reelflow_notifier.multiplex.Subscribe]
    assert set(models) <= set(every_subclass(ClientJson)), "a module no longer defines these?"

    foreign = []
    for model in every_subclass(ClientJson):
        if not model.__module__.startswith("reelflow_"):
            continue  # a test's own
        try:
            most_separators(model)
        except TypeError as exc:
            foreign.append(str(exc))

    assert foreign == [], (
        "ClientJson fields take JSON's own types only (str, int, float, bool, None, a Literal"
        " of those, ClientJson models, lists of them with a max_length): strict mode refuses"
        " the string or array a client sends for others, and nothing bounds a dict's or an"
        f" unbounded list's values: {'; '.join(foreign)}"
    )
