"""A header is read as text, or not at all, by every consumer alike."""

from __future__ import annotations

from typing import Any

import pytest

from reelflow_common.broker.headers import header_text


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"project_id": "p1"}, "p1"),
        ({"project_id": b"p1"}, "p1"),
        ({"project_id": b"\xff"}, None),
        ({"project_id": 7}, None),
        ({}, None),
        (None, None),
    ],
)
def test_a_header_is_read_as_text_or_not_at_all(
    headers: dict[str, Any] | None, expected: str | None
) -> None:
    assert header_text(headers, "project_id") == expected
