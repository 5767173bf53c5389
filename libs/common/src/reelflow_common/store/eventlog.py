"""Reading the capped event log a project document keeps: pure functions, no I/O."""

from __future__ import annotations

from reelflow_common.messages import ClipUpdated, Event, ProjectFinished
from reelflow_common.mongo import Document
from reelflow_common.store.documents import event_from_document


def replay_after(seq: int, stored: list[Document], after_seq: int) -> list[Event] | None:
    """The events after ``after_seq`` of a project now at ``seq``.

    None when they cannot all be given: some have dropped out of the capped log,
    or ``after_seq`` is not a sequence number this project ever had.
    """
    if after_seq < 0 or after_seq > seq:
        return None
    wanted = [event for event in map(event_from_document, stored) if event.seq > after_seq]
    if after_seq < seq and (not wanted or wanted[0].seq != after_seq + 1):
        return None
    return wanted


def about_clip(stored: list[Document], task_uuid: str) -> list[Event]:
    """The events about a clip, each followed by the ``project.finished`` it caused."""
    events = [event_from_document(doc) for doc in stored]
    clip_seqs = {
        event.seq
        for event in events
        if isinstance(event, ClipUpdated) and event.task_uuid == task_uuid
    }
    return [
        event
        for event in events
        if event.seq in clip_seqs
        or (isinstance(event, ProjectFinished) and event.seq - 1 in clip_seqs)
    ]
