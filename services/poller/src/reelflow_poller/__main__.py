"""``reelflow-poller``."""

from __future__ import annotations

import asyncio

from reelflow_poller.main import main


def run() -> None:
    asyncio.run(main())


if __name__ == "__main__":
    run()
