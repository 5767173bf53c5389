"""A body's values are counted before it is parsed: no valid body is ever refused for it."""

from __future__ import annotations

import json

import pytest

from reelflow_api.json_values import more_separators_than, most_separators
from reelflow_api.schemas import CreateProjectIn, SceneIn


def test_the_most_a_create_body_holds_is_read_from_its_model() -> None:
    # A scene: 7 members (7 ':' and 6 ','); the body: 3 members, 50 scenes.
    assert most_separators(SceneIn) == 13
    assert most_separators(CreateProjectIn) == 2 + 3 + 49 + 50 * 13


def test_the_largest_valid_create_body_is_not_over_and_one_more_member_is() -> None:
    # Every field of every scene, and strings full of separators, quotes and backslashes.
    text = ',:"\\' * 500
    scene = {
        "prompt": text,
        "negative_prompt": text,
        "duration": 5,
        "width": 1280,
        "height": 720,
        "seed": 7,
        "fps": 24,
    }
    body = {"title": text[:500], "model": "klingai:5@3", "scenes": [scene] * 50}
    most = most_separators(CreateProjectIn)
    assert most is not None
    CreateProjectIn.model_validate(body)  # valid: the count must take it

    assert not more_separators_than(json.dumps(body).encode(), most)
    assert not more_separators_than(json.dumps(body, indent=2).encode(), most)
    assert more_separators_than(json.dumps(body | {"x": 0}).encode(), most)


MIB = 1 << 20


# A deadline, not a performance assertion: the scan takes milliseconds, and a scan that is
# quadratic in these bodies took about an hour (this test's own pytest-timeout ends it).
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "start",
    [b'"\\', b'\\"'],
    ids=["quote-backslash", "backslash-quote"],
)
@pytest.mark.parametrize("end", [b"", b"\\"], ids=["at-the-end", "before-a-lone-backslash"])
def test_a_string_never_closed_is_read_to_the_end_in_one_pass(start: bytes, end: bytes) -> None:
    # Every quote after the first is escaped: the first string is never closed, so the
    # separators after it are in it.
    separators = b"," * 705
    body = start * ((MIB - len(separators) - len(end)) // len(start)) + separators + end

    assert not more_separators_than(body, 704)
    assert more_separators_than(separators + body, 704)
