"""A project status's ETag: a digest of the body as sent, and If-None-Match as RFC 9110 reads it."""

from __future__ import annotations

from fastapi.responses import Response

from reelflow_api.conditional import etag_of, matches, revalidated

BODY = b'{"project_id":"p1","seq":3,"results":[{"stored_url":"/v1/videos/k?expires=900"}]}'


def test_the_etag_changes_with_any_byte_of_the_body_not_only_with_seq() -> None:
    # A stored_url's new window (or an attempt's history) changes the body, never seq.
    next_window = BODY.replace(b"expires=900", b"expires=1800")

    assert etag_of(BODY) == etag_of(bytes(BODY))
    assert etag_of(next_window) != etag_of(BODY)
    assert etag_of(BODY).startswith('W/"')
    assert etag_of(BODY).endswith('"')


def test_if_none_match_is_compared_weakly_in_a_list_or_as_a_wildcard() -> None:
    etag = etag_of(BODY)
    strong = etag.removeprefix("W/")

    assert matches(etag, etag)
    assert matches(strong, etag)  # the weak comparison: W/ or not, the same tag
    assert matches(f'"a", {etag} ,"b"', etag)
    assert matches("*", etag)
    assert not matches('W/"a"', etag)
    assert not matches("", etag)


def test_a_matching_request_gets_a_304_with_the_same_headers_and_no_body() -> None:
    etag = etag_of(BODY)

    full = revalidated(Response(BODY, media_type="application/json"), None)
    not_modified = revalidated(Response(BODY, media_type="application/json"), etag)

    assert (full.status_code, full.body) == (200, BODY)
    assert full.headers["etag"] == etag
    assert full.headers["cache-control"] == "private, no-cache"
    assert (not_modified.status_code, not_modified.body) == (304, b"")
    assert not_modified.headers["etag"] == etag
    assert not_modified.headers["cache-control"] == "private, no-cache"
    assert "content-length" not in not_modified.headers
