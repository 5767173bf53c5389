"""capture_logs() sees every module logger, however often logging was configured before."""

from __future__ import annotations

import structlog
from structlog.testing import capture_logs

from reelflow_common.logging import configure_logging
from reelflow_common.runware import client
from reelflow_common.settings import LogSettings


def test_a_logger_used_before_logging_was_configured_again_is_captured() -> None:
    configure_logging(LogSettings(), service="api")  # as an in-process service's main() does
    client.log.debug("used_once")
    configure_logging(LogSettings(), service="poller")  # a second service in the same test run

    with capture_logs() as logs:
        client.log.warning("captured")

    assert [line["event"] for line in logs] == ["captured"]


def test_lines_name_their_service_as_traces_and_scrape_jobs_do() -> None:
    configure_logging(LogSettings(), service="api")

    assert structlog.contextvars.get_contextvars()["service"] == "reelflow-api"
