"""The api's cancel of a project: every clip not yet terminal cancelled, each with one
guarded write built from the clip as read (read again, a bounded few times, while it moves)."""

from __future__ import annotations

from reelflow_common.messages import Event
from reelflow_common.store.collection import REPAIR_ATTEMPTS
from reelflow_common.store.leases import new_token
from reelflow_common.store.models import ClipState, Outcome, Project
from reelflow_common.store.reads import ProjectReads
from reelflow_common.store.transitions import cancellation
from reelflow_common.store.writes import ProjectWrites


class ProjectCancel(ProjectReads, ProjectWrites):
    """A tenant's cancel of a project."""

    async def cancel(
        self, project_id: str, *, tenant_id: str, correlation_id: str | None = None
    ) -> Outcome | None:
        """Cancel every clip not yet terminal. None when the tenant has no such project."""
        project = await self.get(project_id, tenant_id=tenant_id)
        if project is None:
            return None
        events: list[Event] = []
        busy: list[int] = []
        for clip in project.clips:
            cancelled = await self._cancel_clip(project_id, tenant_id, clip, correlation_id)
            if cancelled is None:
                busy.append(clip.scene_index)
            else:
                events += cancelled
        if not events:
            return Outcome(project=project, events=[], busy=busy)
        return Outcome(project=await self._must_get(project_id), events=events, busy=busy)

    async def _cancel_clip(
        self, project_id: str, tenant_id: str, clip: ClipState, correlation_id: str | None
    ) -> list[Event] | None:
        """Cancel one clip as read; read again while it moves (submitted, its lease renewed
        or re-armed), a bounded few times: the last try moves its lease as last read. Its
        events ([]: it had ended, or is gone); None when it moved at every try, still open
        (``Outcome.busy``)."""
        for tries in range(REPAIR_ATTEMPTS):
            if clip.status.is_terminal:
                return []  # it ended meanwhile, which is what cancelling wanted anyway
            write = cancellation.cancel(
                project_id,
                tenant_id,
                clip,
                now=self._now(),
                correlation_id=correlation_id,
                log_size=self._log_size,
                lease_as_read=tries < REPAIR_ATTEMPTS - 1,
                follow_token=new_token(),
            )
            # No message stands behind a cancel: a charge it settles is owed until the settle
            # sweep sees it made (only where the clip holds one as read).
            write = self._owing(write, clip)
            applied = await self._apply(write, project_id)
            if applied is not None:
                return applied
            found = await self._read_clip(project_id, clip.scene_index, tenant_id=tenant_id)
            if found is None:
                return []
            clip = found
        return [] if clip.status.is_terminal else None

    async def _must_get(self, project_id: str) -> Project:
        project = await self.get(project_id)
        assert project is not None  # projects are never deleted
        return project
