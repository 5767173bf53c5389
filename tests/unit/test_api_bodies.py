"""Every request body the API reads into a model is read by one rule: strict JSON types."""

from __future__ import annotations

from collections.abc import Iterator

from reelflow_common.client_json import ClientJson
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
