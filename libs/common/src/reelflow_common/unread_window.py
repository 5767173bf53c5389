"""The window in which a clip's first submit reads nothing: pure arithmetic the submitter
and the api's cancel share.

The first handling of a clip's first submit, within ``submit_read_after_s`` of the clip
being queued (database clock), goes to Runware without reading the clip
(``reelflow_submitter.service.reads_before_submit``): a cancel inside that window may
still see the task bought, so the api's cancel counts such a clip in
``clips_may_be_billed`` (``reelflow_common.store.cancel.may_be_billed``). Both ask the
same question here, so the two cannot disagree on where the window ends. What else each
one asks (the submitter: a later submit, a retry's task, a copy; the cancel: a lease run
out, an outage's wait) stays with it.
"""

from __future__ import annotations

from datetime import datetime


def in_unread_window(queued_at: datetime, *, now: datetime, read_after_s: float) -> bool:
    """Whether ``now`` is within ``read_after_s`` of ``queued_at`` (bounds included): a first
    submit handled then reads nothing before it goes to Runware."""
    return (now - queued_at).total_seconds() <= read_after_s
