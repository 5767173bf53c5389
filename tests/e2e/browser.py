"""Debian's Chromium driven by Playwright, for the dashboard's tests.

Playwright's wheel brings its driver; browsers are never downloaded: the tests
launch the system's ``/usr/bin/chromium`` (Debian package ``chromium``). Without
it the browser tests are skipped, with a line that says how to install it, except
under CI (``CI`` set), where ``.ci/run`` installs it and a missing browser is an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = "install it with: sudo apt-get install chromium"
#: screenshots go here (Playwright's usual output folder; ignored by git)
OUTPUT_DIR = Path("test-results/browser")


def require_chromium() -> None:
    """Skip the calling module without Chromium; under CI, fail instead."""
    if CHROMIUM.exists():
        return
    message = f"browser tests need Chromium at {CHROMIUM}; {INSTALL_HINT}"
    if os.environ.get("CI"):
        raise RuntimeError(message + " (.ci/run installs it)")
    pytest.skip(message, allow_module_level=True)


@contextmanager
def chromium() -> Iterator[Browser]:
    """The system's Chromium under Playwright, closed on exit.

    Start it after any ``asyncio.run`` of the test: Playwright's loop then owns the thread.
    Without Chromium the test is skipped (under CI: fails), as :func:`require_chromium` says.
    """
    require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Console:
    """Every console error and uncaught exception of a page."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _on_page_error(self, error: Error) -> None:
        self.errors.append(f"uncaught: {error.message}")

    def unexpected(self, allowed: Iterable[str] = ()) -> list[str]:
        """The errors that match none of the ``allowed`` patterns (regular expressions)."""
        patterns = [re.compile(pattern) for pattern in allowed]
        return [e for e in self.errors if not any(p.search(e) for p in patterns)]


def failed_load(status: int) -> str:
    """The line Chromium logs for an HTTP error answer to fetch(): the page's own doing."""
    return rf"^Failed to load resource: the server responded with a status of {status}\b"


#: what Chromium logs for each refused connection while the notifier is down
WEBSOCKET_REFUSED = r"^WebSocket connection to 'ws://[^']+/v1/ws\?ticket=[^']+' failed"
