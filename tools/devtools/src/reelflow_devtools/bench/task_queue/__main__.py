"""``python -m reelflow_devtools.bench.task_queue api|worker``."""

from __future__ import annotations

import sys

import uvicorn

from reelflow_common.lifecycle import run_service
from reelflow_devtools.bench.task_queue.api import create_app
from reelflow_devtools.bench.task_queue.config import Config
from reelflow_devtools.bench.task_queue.worker import run_until_sigterm


def main(argv: list[str] | None = None) -> None:
    role = (sys.argv[1:] if argv is None else argv)[:1]
    config = Config.from_env()
    if role == ["api"]:
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(config),
                host="127.0.0.1",
                port=config.port,
                log_level="warning",
                access_log=False,
            )
        )
        server.run()
    elif role == ["worker"]:
        # On uvloop, as reelflow's workers (uvicorn picks uvloop for both apis).
        run_service(run_until_sigterm(config))
    else:
        raise SystemExit("usage: python -m reelflow_devtools.bench.task_queue api|worker")


if __name__ == "__main__":
    main()
