"""The client messages of ``/v1/ws``: subscribe and unsubscribe, answered without closing.

* ``{"type": "subscribe", "project_id": "…", "after_seq": N}`` (``after_seq``
  optional): a snapshot, or the changes after ``N``, then live changes. Subscribing
  again to the same project starts it over.
* ``{"type": "unsubscribe", "project_id": "…"}``: answered with
  ``{"type": "unsubscribed", "project_id": "…"}``; nothing of that project follows.
* Anything else: ``{"type": "error", "message": "…"}`` (with ``project_id`` when known).

Each subscribe reads the project (and then its snapshot or event log), so a
connection's subscribes are rate limited: a burst of ``ws_subscribe_burst``,
then ``ws_subscribe_rate_per_s``. One past it is not applied and is answered
with an error carrying ``retry_after_s``; the connection stays open (a refusal
costs no read, and a close would cost a new handshake's). Unsubscribes and
invalid messages read nothing and are not counted.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from reelflow_common.client_json import ClientJson, wrong_type
from reelflow_common.store import ProjectStore
from reelflow_common.tokenbucket import TokenBucket
from reelflow_notifier.metrics import WS_REFUSALS_TOTAL
from reelflow_notifier.session import Session
from reelflow_notifier.wire import error_message, unsubscribed_message


class _ClientMessage(ClientJson):
    model_config = ConfigDict(frozen=True)

    project_id: str = Field(min_length=1, max_length=200)


class Subscribe(_ClientMessage):
    """Follow a project: a snapshot, or the changes after ``after_seq``, then live changes."""

    type: Literal["subscribe"]
    after_seq: int | None = Field(default=None, ge=0)


class Unsubscribe(_ClientMessage):
    """Stop following a project; answered with ``unsubscribed``."""

    type: Literal["unsubscribe"]


CLIENT_MESSAGE: TypeAdapter[Subscribe | Unsubscribe] = TypeAdapter(
    Annotated[Subscribe | Unsubscribe, Field(discriminator="type")]
)


class Subscriptions:
    """Applies one connection's client messages to its session."""

    def __init__(
        self,
        session: Session,
        *,
        tenant_id: str,
        projects: ProjectStore,
        limit: int,
        subscribes: TokenBucket,
    ) -> None:
        self._session = session
        self._tenant_id = tenant_id
        self._projects = projects
        self._limit = limit
        #: the subscribes this connection may still send now (each costs reads)
        self._subscribes = subscribes

    async def handle(self, text: str) -> None:
        try:
            message = CLIENT_MESSAGE.validate_json(text)
        except ValidationError as exc:
            self._session.notice(error_message(_describe(exc)))
            return
        if isinstance(message, Unsubscribe):
            self._session.unwatch(message.project_id)
            self._session.notice(unsubscribed_message(message.project_id))
            return
        await self._subscribe(message)

    async def _subscribe(self, message: Subscribe) -> None:
        project_id = message.project_id
        if not self._session.watching(project_id) and self._session.watch_count() >= self._limit:
            self._session.notice(
                error_message(
                    f"at most {self._limit} subscriptions per connection", project_id=project_id
                )
            )
            return
        if (wait_s := self._subscribes.take()) > 0:
            WS_REFUSALS_TOTAL.labels(limit="subscribe_rate").inc()
            retry_after_s = math.ceil(wait_s * 100) / 100
            self._session.notice(
                error_message(
                    f"too many subscribes; send it again in {retry_after_s} s",
                    project_id=project_id,
                    retry_after_s=retry_after_s,
                )
            )
            return
        # Another tenant's project reads as missing, so ids cannot be probed.
        if await self._projects.get(project_id, tenant_id=self._tenant_id) is None:
            self._session.notice(error_message("project not found", project_id=project_id))
            return
        self._session.watch(project_id, message.after_seq)


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:3]:
        # pydantic's own words name its tag machinery ("Input tag ... found using 'type'")
        if error["type"] == "union_tag_invalid":
            kind = (error.get("ctx") or {}).get("tag")
            return f"invalid message: unknown type {kind!r}; send subscribe or unsubscribe"
        if error["type"] == "union_tag_not_found":
            return "invalid message: no type; send subscribe or unsubscribe"
        where = ".".join(str(part) for part in error["loc"])
        msg = wrong_type(error) or error["msg"]
        problems.append(f"{where}: {msg}" if where else msg)
    return "invalid message: " + "; ".join(problems)
