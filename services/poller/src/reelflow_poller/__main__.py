"""``reelflow-poller``."""

from __future__ import annotations

from reelflow_common.lifecycle import run_service
from reelflow_poller.main import main


def run() -> None:
    run_service(main())


if __name__ == "__main__":
    run()
