"""This process's limit of open files: each socket is one.

A notifier holding 10,000 WebSockets (the API's figure per replica) needs more than the
soft limit of 1,024 that many container runtimes and shells give; the hard limit is
usually far above it, and a process may raise its soft limit up to its hard one.
"""

from __future__ import annotations

import resource
import sys

#: what is asked for where the hard limit is "unlimited" (ten notifiers' worth of sockets)
_WITHOUT_A_HARD_LIMIT = 100_000


def raise_open_files(wanted: int | None = None) -> int:
    """Raise the soft limit of open files to ``wanted`` (at most the hard limit; the hard
    limit itself when None), never lowering it; returns the soft limit now in force
    (``sys.maxsize`` for none)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:  # macOS: a kernel cap below it refuses "unlimited"
        target = wanted or _WITHOUT_A_HARD_LIMIT
    else:
        target = hard if wanted is None else min(wanted, hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return _count(soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):  # a kernel's nr_open below the hard limit: keep ours
        return _count(soft)
    return _count(target)


def _count(limit: int) -> int:
    return sys.maxsize if limit == resource.RLIM_INFINITY else limit
