"""uvicorn's access line of a probe or a scrape answered 2xx is dropped; every other one is kept."""

from __future__ import annotations

import logging

import pytest

from reelflow_common.logging import QuietProbes, configure_logging
from reelflow_common.ops import OPS_PATHS
from reelflow_common.settings import LogSettings


def access_line(path: str, status: int) -> logging.LogRecord:
    """The record uvicorn's access logger makes of one request."""
    return logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", path, "1.1", status),
        None,
    )


@pytest.mark.parametrize(
    ("path", "status", "written"),
    [
        ("/healthz", 200, False),
        ("/readyz", 200, False),
        ("/metrics", 200, False),
        ("/readyz", 503, True),  # a pod not ready: worth its line
        ("/metrics?x=1", 200, True),  # not a probe's exact path
        ("/v1/projects", 200, True),
        ("/v1/projects", 401, True),
    ],
)
def test_only_a_probes_or_scrapes_2xx_is_dropped(path: str, status: int, written: bool) -> None:
    assert QuietProbes(OPS_PATHS).filter(access_line(path, status)) is written


def test_configuring_logging_again_installs_the_filter_once() -> None:
    configure_logging(LogSettings(), service="api")
    configure_logging(LogSettings(), service="api")

    filters = logging.getLogger("uvicorn.access").filters
    assert [type(kept) for kept in filters] == [QuietProbes]
