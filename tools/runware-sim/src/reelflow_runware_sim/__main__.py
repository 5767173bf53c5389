"""`reelflow-runware-sim`: run the simulator until SIGINT or SIGTERM."""

import argparse
import asyncio
import logging
import signal
from types import FrameType
from typing import Any

from .config import SimConfig, SimSettings
from .server import SimServer


def parse_args(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line flags that were given; the rest comes from `RUNWARE_SIM_*` variables."""
    parser = argparse.ArgumentParser(
        prog="reelflow-runware-sim",
        description="A local simulator of Runware's REST API for video inference.",
        epilog="Every setting can also be set as RUNWARE_SIM_<NAME>, e.g. RUNWARE_SIM_DROP_RATE.",
    )
    parser.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8090; 0 picks a free one)")
    parser.add_argument("--speedup", type=float, help="simulated seconds per real second")
    parser.add_argument("--seed", type=int, help="seed for reproducible latencies and faults")
    parser.add_argument("--public-url", help="base URL of videoURLs (default: the listening URL)")
    parser.add_argument(
        "--state-file",
        help="keep tasks across restarts in this file (default: in memory only)",
    )
    parser.add_argument("--log-level", help="uvicorn and simulator log level (default warning)")
    given = vars(parser.parse_args(argv))
    return {name: value for name, value in given.items() if value is not None}


async def main(config: SimConfig) -> None:
    """Serve until a signal, after printing the URL on one line for scripts to read."""
    server = SimServer(config)
    await server.start()
    print(f"runware simulator listening on {server.url}", flush=True)
    await server.wait()


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def run() -> None:
    """Console-script entry point."""
    config = SimSettings(**parse_args())
    logging.basicConfig(level=config.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    # uvicorn shuts down gracefully on these, then re-raises the signal to the handler it
    # found: make that an exit with status 0 rather than death by signal or a traceback.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_cleanly)
    asyncio.run(main(config))


if __name__ == "__main__":
    run()
