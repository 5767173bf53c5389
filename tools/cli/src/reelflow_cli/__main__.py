"""``reelflow``: run the command line."""

from __future__ import annotations

from reelflow_cli.app import app


def run() -> None:
    app()


if __name__ == "__main__":
    run()
