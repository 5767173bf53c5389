"""A body's values are counted before it is parsed: no valid body is ever refused for it, and every
model a body is read into bounds them."""

from __future__ import annotations

import enum
import json
from datetime import datetime
from typing import Annotated, Any, Literal

import pytest
from fastapi import FastAPI
from pydantic import Field

from reelflow_api.app import create_app
from reelflow_api.json_values import more_separators_than
from reelflow_api.middleware import require_bounded_bodies
from reelflow_api.schemas import CreateProjectIn, SceneIn
from reelflow_api.settings import Settings
from reelflow_common.client_json import ClientJson, most_separators


def test_the_most_a_create_body_holds_is_read_from_its_model() -> None:
    # A scene: 7 members (7 ':' and 6 ','); the body: 3 members, 50 scenes.
    assert most_separators(SceneIn) == 13
    assert most_separators(CreateProjectIn) == 2 + 3 + 49 + 50 * 13


class Colour(enum.Enum):
    RED = "red"


class Inner(ClientJson):
    a: int
    b: str | None = None


class Outer(ClientJson):
    """Every type a field may take: 8 members, lists bounded where they are declared."""

    text: str
    number: float | None = None
    flag: bool = False
    kind: Literal["x", "y", 3] = "x"
    inner: Inner
    inners: list[Inner] = Field(default=[], max_length=2)
    tags: Annotated[list[str], Field(max_length=3)] = []
    grid: list[Annotated[list[int], Field(max_length=4)]] = Field(default=[], max_length=2)


def test_every_json_type_a_field_may_take_is_bounded() -> None:
    inner = 2 + 1  # a ':' per member, a ',' between them
    assert most_separators(Inner) == inner
    # Its 8 members; inner; 2 inners and a comma; 3 tags, 2 commas; 2 rows of 4 ints and a comma.
    assert most_separators(Outer) == 8 + 7 + inner + (2 * inner + 1) + 2 + (2 * 3 + 1)


@pytest.mark.parametrize(
    ("annotation", "says"),
    [
        pytest.param(dict[str, int], "dict[str, int]", id="dict"),
        pytest.param(Any, "typing.Any", id="any"),
        pytest.param(Colour, "Colour", id="enum"),
        pytest.param(datetime, "datetime", id="datetime"),
        pytest.param(list[int], "list[int] without a max_length", id="list-without-max-length"),
        pytest.param(Literal[Colour.RED], "a Literal of [<Colour.RED", id="literal-of-an-enum"),
        pytest.param(
            Annotated[list[Annotated[list[int], Field(min_length=1)]], Field(max_length=2)],
            "list[int] without a max_length",
            id="inner-list-without-max-length",
        ),
    ],
)
def test_a_field_of_any_other_type_is_refused_by_name(annotation: Any, says: str) -> None:
    # Such a field switched the count off for its whole route, unseen.
    class Body(ClientJson):
        title: str
        field: annotation = None

    with pytest.raises(TypeError, match=r"^Body\.field: .*") as refused:
        most_separators(Body)
    assert says in str(refused.value)


def test_every_route_that_reads_a_body_bounds_its_values() -> None:
    require_bounded_bodies(create_app(Settings()).router.routes)


class Loose(ClientJson):
    tags: list[str]


def test_an_app_with_a_body_nothing_bounds_is_refused_when_built() -> None:
    app = FastAPI()

    @app.post("/loose")
    async def loose(body: Loose) -> None: ...

    @app.post("/raw")
    async def raw(body: dict[str, int]) -> None: ...

    with pytest.raises(TypeError, match=r"Loose\.tags: list"):
        require_bounded_bodies(app.router.routes[-2:-1])
    with pytest.raises(TypeError, match="/raw: its body is no model"):
        require_bounded_bodies(app.router.routes[-1:])


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
