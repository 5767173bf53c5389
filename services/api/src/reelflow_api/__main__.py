"""``reelflow-api``: serve the REST API with uvicorn."""

from __future__ import annotations

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
    )


if __name__ == "__main__":
    run()
