"""The API's CORS settings: the extra request headers an operator allows are header names."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reelflow_api.settings import Settings


@pytest.mark.parametrize("name", ["*", "x bad", "x-trace:1", ""])
def test_an_extra_cors_header_that_is_not_a_header_name_is_refused_at_start(name: str) -> None:
    with pytest.raises(ValidationError, match="cors_allow_headers"):
        Settings(cors_allow_headers=[name])


def test_extra_cors_headers_are_taken_as_given() -> None:
    assert Settings(cors_allow_headers=["sentry-trace"]).cors_allow_headers == ["sentry-trace"]
    assert Settings().cors_allow_headers == []
