"""No request parameter is checked against a pattern a person is never told in words."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from reelflow_api.validation import FORMATS
from reelflow_devtools.contracts import openapi_document


def patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        for value in node.values():
            yield from patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from patterns(value)


def test_every_pattern_in_the_openapi_document_has_a_format_said_in_words() -> None:
    checked = set(patterns(openapi_document()))

    assert checked, "the document checks no pattern: has this test lost its way?"
    assert checked <= FORMATS.keys(), (
        "give each pattern a TextFormat in reelflow_api.validation: a value that does not"
        " match is then told what it should be, not shown a regular expression"
    )
