"""``reelflow-notifier``: serve the WebSocket API."""

from __future__ import annotations

from reelflow_common.lifecycle import run_service
from reelflow_notifier.main import main


def run() -> None:
    run_service(main())


if __name__ == "__main__":
    run()
