"""``reelflow-notifier``: serve the WebSocket API."""

from __future__ import annotations

import asyncio

from reelflow_notifier.main import main


def run() -> None:
    asyncio.run(main())


if __name__ == "__main__":
    run()
