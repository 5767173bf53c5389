"""Lines of one event that a flood could repeat thousands of times: at most one per name
(a key, a tenant, a replica) per period, the next saying how many it left out.

The counters beside such lines count every occurrence; the lines say who and when.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from reelflow_common.logging import get_logger

#: a name seen again within this many seconds of its last line is not logged again
EVERY_S = 10.0
#: names remembered for that; past it, those not seen within the period are forgotten
MAX_NAMES = 1024

log = get_logger(__name__)


class SampledLog:
    """``event`` lines at ``level``, at most one per name per ``every_s``; each line has
    ``not_logged``, the occurrences of its name left out since the line before."""

    def __init__(
        self,
        event: str,
        *,
        level: str = "info",
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._event = event
        self._level = level
        self._every_s = every_s
        self._clock = clock
        #: when each name's last line was logged, and the occurrences left out since
        self._last: dict[str, tuple[float, int]] = {}

    def emit(self, name: str, **fields: Any) -> None:
        now = self._clock()
        last = self._last.get(name)
        if last is not None and now - last[0] < self._every_s:
            self._last[name] = (last[0], last[1] + 1)
            return
        if last is None and len(self._last) >= MAX_NAMES:
            self._last = {
                known: seen for known, seen in self._last.items() if now - seen[0] < self._every_s
            }
            if len(self._last) >= MAX_NAMES:
                self._last.clear()
        self._last[name] = (now, 0)
        getattr(log, self._level)(self._event, **fields, not_logged=0 if last is None else last[1])
