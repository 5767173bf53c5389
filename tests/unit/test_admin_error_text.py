"""What reelflow-admin says of a failed connection never holds the URL's password."""

from __future__ import annotations

from reelflow_common.admin.cli import _why

URL = "amqp://guest:p%40ss@rabbit:5672/"


def test_the_password_is_masked_as_decoded_and_as_written_in_the_url() -> None:
    said = _why(RuntimeError(f"cannot reach {URL}, login p@ss refused"), URL)

    assert "p@ss" not in said
    assert "p%40ss" not in said
    assert said == "RuntimeError: cannot reach amqp://guest:***@rabbit:5672/, login *** refused"
