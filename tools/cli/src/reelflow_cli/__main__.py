"""``reelflow``: run the command line."""

from __future__ import annotations

import sys

from reelflow_cli.app import app


def run() -> None:
    # Help for a pipe or a file is plain text: rich's panels draw boxes of line characters.
    if not sys.stdout.isatty():
        app.rich_markup_mode = None
    app()


if __name__ == "__main__":
    run()
