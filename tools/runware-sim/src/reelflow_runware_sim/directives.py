"""Test hooks written into a prompt, so one request can hold fast, slow and failing scenes.

A directive is `[sim:NAME]` or `[sim:NAME=VALUE]` anywhere in `positivePrompt`:

| directive | effect |
|---|---|
| `[sim:latency=2.5]` | finish after 2.5 *simulated* seconds (divided by speedup like any latency) |
| `[sim:fail]`, `[sim:fail=CODE]` | end in error with CODE (default `timeoutProvider`) |
| `[sim:fail=once]` | `timeoutProvider` for the first task with this prompt, success after |
| `[sim:hang]` | never finish |
| `[sim:drop]` | accept the task but lose the answer to its first submit |
| `[sim:webhook=drop]`, `[sim:webhook=duplicate]` | never deliver / deliver twice |

Directives override the random draws and the configured fault rates for that task.
"""

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Literal

_DIRECTIVE = re.compile(r"\[sim:([a-z-]+)(?:=([^\]]*))?\]")


class DirectiveError(ValueError):
    """A `[sim:...]` directive the simulator does not understand."""


@dataclass(frozen=True)
class Directives:
    """The directives found in one prompt."""

    latency: float | None = None
    fail: str | None = None
    #: with `[sim:fail=once]`, a digest of the whole prompt: how later tasks know it failed
    fail_once: str | None = None
    hang: bool = False
    drop: bool = False
    webhook: Literal["drop", "duplicate"] | None = None


def parse_directives(prompt: str) -> Directives:
    """Read the `[sim:...]` directives of a prompt; raise DirectiveError on a bad one."""
    latency: float | None = None
    fail: str | None = None
    fail_once: str | None = None
    hang = drop = False
    webhook: Literal["drop", "duplicate"] | None = None
    for match in _DIRECTIVE.finditer(prompt):
        name, value = match.group(1), match.group(2)
        if name == "latency":
            latency = _seconds(value)
        elif name == "fail" and value == "once":
            fail_once = hashlib.sha256(prompt.encode()).hexdigest()
        elif name == "fail":
            fail = value or "timeoutProvider"
        elif name == "hang" and value is None:
            hang = True
        elif name == "drop" and value is None:
            drop = True
        elif name == "webhook" and value == "drop":
            webhook = "drop"
        elif name == "webhook" and value == "duplicate":
            webhook = "duplicate"
        else:
            raise DirectiveError(f"unknown simulator directive {match.group(0)}")
    return Directives(
        latency=latency, fail=fail, fail_once=fail_once, hang=hang, drop=drop, webhook=webhook
    )


def _seconds(value: str | None) -> float:
    try:
        seconds = float(value or "")
    except ValueError:
        raise DirectiveError(f"[sim:latency=...] needs seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise DirectiveError(f"[sim:latency=...] needs seconds >= 0, got {value!r}")
    return seconds
