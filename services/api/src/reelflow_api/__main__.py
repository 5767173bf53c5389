"""``reelflow-api``: serve the REST API with uvicorn."""

from __future__ import annotations

from reelflow_api.main import main
from reelflow_common.lifecycle import run_service


def run() -> None:
    run_service(main())


if __name__ == "__main__":
    run()
