"""The leases of the chains that follow clips and tasks: a chain's token, the renewal of its
lease, the expiry of chains that could not be started, and a given-up task Runware took
leased to a new chain (read, then written guarded on what was read)."""

from __future__ import annotations

import secrets
from datetime import datetime

from pymongo import UpdateOne

from reelflow_common.errors import TransientError
from reelflow_common.mongo import REREAD_ATTEMPTS
from reelflow_common.store.collection import ProjectCollection
from reelflow_common.store.models import Lease
from reelflow_common.store.transitions import chainleases, follows


def new_token() -> str:
    """A chain's token: unguessable, so a stale or forged message cannot take a clip over."""
    return secrets.token_hex(8)


class ChainLeases(ProjectCollection):
    """Leases of the chains on clips and on their ``attempts`` entries."""

    async def renew_lease(
        self,
        project_id: str,
        scene_index: int,
        *,
        token: str,
        until_was: datetime,
        until: datetime,
        task_uuid: str | None = None,
    ) -> bool:
        """Extend the lease of the chain of ``token``; False when that chain is stale.

        With the chain's ``task_uuid``: a chain whose task an earlier task's video replaced
        goes on under the task's ``attempts`` entry (a second write, only then): it follows
        the task if an earlier submit got it to Runware, or else ends the attempt; it never
        submits it again (``clip_task``).
        """
        write = chainleases.renew_lease(
            project_id, scene_index, token=token, until_was=until_was, until=until
        )
        found = await self._projects.update_one(write.filter, write.update)
        if found.matched_count == 1 or task_uuid is None:
            return found.matched_count == 1
        return await self.renew_attempt_lease(
            project_id, scene_index, task_uuid, token=token, until_was=until_was, until=until
        )

    async def renew_attempt_lease(
        self,
        project_id: str,
        scene_index: int,
        task_uuid: str,
        *,
        token: str,
        until_was: datetime,
        until: datetime,
    ) -> bool:
        """Extend the lease of the chain of ``token`` in ``attempts.<task_uuid>`` only (one
        write); False when that chain is stale there, or holds no lease there.

        A chain whose clip can hold no lease of it (cancelled or failed: the cancel moved a
        charged queued clip's lease there with its task) renews nothing else.
        """
        write = chainleases.renew_lease(
            project_id,
            scene_index,
            token=token,
            until_was=until_was,
            until=until,
            replaced_task=task_uuid,
        )
        found = await self._projects.update_one(write.filter, write.update)
        return found.matched_count == 1

    async def expire_leases(
        self, project_id: str, tokens: dict[int, str], *, tasks: dict[int, str] | None = None
    ) -> None:
        """Chains that could not be started (a publish failed): the reconciler takes them next.

        One round trip; each clip only while its lease still has the token given.
        ``tasks``: each scene's chain follows that task, whose lease may be in
        ``attempts.<task>`` (a replaced or given-up task): that lease expires too, under
        the same token (the attempts reconciler takes it next).
        """
        if not tokens:
            return
        now = self._now()
        writes = [
            chainleases.expire_lease(project_id, scene, token=token, now=now)
            for scene, token in tokens.items()
        ]
        writes += [
            chainleases.expire_lease(
                project_id, scene, token=tokens[scene], now=now, replaced_task=task_uuid
            )
            for scene, task_uuid in (tasks or {}).items()
            if scene in tokens
        ]
        await self._projects.bulk_write(
            [UpdateOne(write.filter, write.update) for write in writes], ordered=False
        )

    async def follow_given_up(
        self, project_id: str, scene_index: int, task_uuid: str
    ) -> Lease | None:
        """Runware took a task the clip had given up on (``Change.given_up``): lease it, in its
        ``attempts`` entry, to the chain that follows it from now on (a fresh token).

        The attempts reconciler re-arms that chain should it be lost. None when there is
        nothing to follow (another chain follows the task, or its end is recorded, or the
        clip took it up again). Read, then written guarded on what was read (again on a race);
        :class:`TransientError` when overtaken at every read (``REREAD_ATTEMPTS``): not
        "nothing to follow", so the caller's message is retried later, never dropped.
        """
        for _ in range(REREAD_ATTEMPTS):
            clip = await self._read_clip(project_id, scene_index)
            if clip is None:
                return None
            now = self._now()
            lease = Lease(token=new_token(), until=now + self._lease)
            write = follows.follow_given_up(
                project_id, clip, task_uuid, token=lease.token, now=now, until=lease.until
            )
            if write is None:
                return None
            found = await self._projects.update_one(write.filter, write.update)
            if found.matched_count == 1:
                return lease
        raise TransientError(
            f"following task {task_uuid} of scene {scene_index} of project {project_id}:"
            f" the clip moved at each of {REREAD_ATTEMPTS} reads (concurrent writers)"
        )
