"""Clips by how they ended (``reelflow_clips_finished_total``), counted where the end is
written: by the one writer whose guarded update moved the clip out of ``pending``.

Every change of a clip's status pushes a ``clip.updated`` with its move between count
buckets in the same update (:mod:`eventlog`), and only an update that applied reaches
:func:`count_ends`. So a duplicate, a late answer or a redelivery (its update does not
apply) counts nothing, and neither does a re-publish. An ended clip a retry queues again
and that ends again counts again; a late video that turns a failed clip into a success
(failed to completed, not from ``pending``) does not: the clip had ended.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reelflow_common.domain import ClipStatus
from reelflow_common.metrics import CLIPS_FINISHED_TOTAL
from reelflow_common.runware.errors import KNOWN_CODES, ErrorCategory
from reelflow_common.store.eventlog import StoredEvent, unpacked

#: the codes reelflow itself fails a clip with (the ceiling, the tenant's budget, Runware
#: away too long, and what the client and the tracking policy name an answer by)
OWN_CODES = frozenset(
    {
        "timedOut",
        "budgetExceeded",
        "runwareUnavailable",
        "taskFailed",
        "taskFailedOrNotFound",
        "missingResult",
        "invalidResponse",
        "connectionError",
    }
)
#: the ``code`` label values of a failed clip besides ``other``: a bounded set. A Runware
#: code not known by name is ``other`` (the clip's error and the ``clip_failed`` and
#: ``clip_submit_failed`` log lines say which); an error without a code, which the submitter
#: names by its category (``validation``, ``quota``...), keeps that.
FINISHED_CODES = KNOWN_CODES | OWN_CODES | frozenset(category.value for category in ErrorCategory)
OTHER = "other"

#: each status a clip ends in, with the ``code`` label it starts at 0 with (a counter with no
#: series reads "No data" on a healthy system)
_INITIAL = {ClipStatus.SUCCESS: "", ClipStatus.FAILED: OTHER, ClipStatus.CANCELLED: ""}


def initialise() -> None:
    """Export a series of each status at 0 (prometheus_client: ``labels()`` without ``inc``)."""
    for status, code in _INITIAL.items():
        CLIPS_FINISHED_TOTAL.labels(status=status.value, code=code)


def code_label(status: ClipStatus, error: Mapping[str, Any] | None) -> str:
    """The ``code`` label of a clip that ended so: its error's code if known, else ``other``;
    empty but for a failed clip."""
    if status is not ClipStatus.FAILED:
        return ""
    code = (error or {}).get("code")
    return code if code in FINISHED_CODES else OTHER


def count_ends(pushed: Sequence[StoredEvent]) -> None:
    """Count the clips the events of one applied update ended (moved out of ``pending``)."""
    for stored in pushed:
        event = unpacked(stored)
        delta = event.get("delta")
        if not delta or delta.get("from") != "pending" or delta.get("to") == "pending":
            continue
        clip = event["clip"]
        status = ClipStatus(clip["status"])
        if status.is_terminal:
            label = code_label(status, clip.get("error"))
            CLIPS_FINISHED_TOTAL.labels(status=status.value, code=label).inc()


initialise()
