"""``reelflow-api``: serve the REST API with uvicorn."""

from __future__ import annotations

import math

import uvicorn

from reelflow_api.app import create_app
from reelflow_api.settings import Settings
from reelflow_common.logging import configure_logging


def run() -> None:
    settings = Settings()
    configure_logging(settings, service="api")
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # our structlog set-up formats uvicorn's lines too
        proxy_headers=True,
        # Requests in flight (a ?wait= long poll among them) get the same bound as
        # the workers' messages, then are cancelled: SIGTERM never waits minutes.
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
    )


if __name__ == "__main__":
    run()
