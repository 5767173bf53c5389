"""A URL printed in a message names where it points, never its user part or options."""

from __future__ import annotations

import pytest

from reelflow_common.redact import MASK, url_location


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mongodb://u:secret@h1:27017,h2:27017/reelflow", "mongodb://h1:27017,h2:27017/reelflow"),
        ("mongodb://u:pa#ss@h1/db", "mongodb://h1/db"),  # PyMongo takes '#' unescaped
        ("mongodb://u:pa?ss@h1/db", "mongodb://h1/db"),
        ("mongodb://u:pa@ss@h1/db", "mongodb://h1/db"),
        ("mongodb://u:pa?ss@h1", MASK),  # no '/': the authority would end at the '?'
        ("mongodb://u:pa/ss@h1/db", MASK),
        (
            "mongodb+srv://u:p@cluster0.example.net/db?tlsCertificateKeyFilePassword=x",
            "mongodb+srv://cluster0.example.net/db",
        ),
        ("mongodb://h1/db?authMechanismProperties=AWS_SESSION_TOKEN:abc@def", MASK),
        ("amqp://guest:guest@127.0.0.1:5672/%2F", "amqp://127.0.0.1:5672/%2F"),
        ("mongodb://[::1]:27017", "mongodb://[::1]:27017"),
        ("not a url", MASK),
        ("mongodb://u:p@h 1/db", MASK),
    ],
)
def test_only_the_hosts_and_the_path_are_shown(url: str, shown: str) -> None:
    assert url_location(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "mongodb://u:pa#ss@h1/db",
        "mongodb://u:pa?ss@h1/db",
        "mongodb://u:pa@ss@h1/db",
        "mongodb://u:pass@h1/db?tlsCertificateKeyFilePassword=pass",
        "mongodb://u:pa?ss@h1",
        "mongodb://u:pa/ss@h1/db",
    ],
)
def test_no_part_of_a_password_is_shown(url: str) -> None:
    assert "pa" not in url_location(url).replace("path", "")
