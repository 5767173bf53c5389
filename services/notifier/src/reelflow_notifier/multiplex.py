"""The client messages of ``/v1/ws``: subscribe and unsubscribe, answered without closing.

* ``{"type": "subscribe", "project_id": "…", "after_seq": N}`` (``after_seq``
  optional): a snapshot, or the changes after ``N``, then live changes. Subscribing
  again to the same project starts it over.
* ``{"type": "unsubscribe", "project_id": "…"}``: answered with
  ``{"type": "unsubscribed", "project_id": "…"}``; nothing of that project follows.
* Anything else: ``{"type": "error", "message": "…"}`` (with ``project_id`` when known).

Each subscribe reads the project (and then its snapshot or event log), so
subscribes are rate limited twice: each connection has a token bucket
(``ws_subscribe_burst``, then ``ws_subscribe_rate_per_s``), and all of an API
key's connections on this replica share one more (``ws_key_subscribe_burst``,
then ``ws_key_subscribe_rate_per_s``; :mod:`reelflow_notifier.keyslots`), so
one key cannot flood the replica by spreading subscribes over many sockets.
One past either is not applied and is answered with an error carrying
``retry_after_s``; the connection stays open (a refusal costs no read, and a
close would cost a new handshake's). A subscribe to one more project than the
connection (``ws_max_subscriptions``) or the key (``ws_max_watches_per_key``)
may watch is refused the same way, without ``retry_after_s``: waiting alone
does not make room. Unsubscribes and invalid messages read nothing and are not
counted.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from reelflow_common.client_json import ClientJson, wrong_type
from reelflow_common.store import ProjectStore
from reelflow_common.tokenbucket import TokenBucket
from reelflow_notifier.keyslots import KeySlot
from reelflow_notifier.metrics import WS_REFUSALS_TOTAL
from reelflow_notifier.session import Session
from reelflow_notifier.wire import WireMessage, error_message, unsubscribed_message


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
        key_slot: KeySlot,
    ) -> None:
        self._session = session
        self._tenant_id = tenant_id
        self._projects = projects
        self._limit = limit
        #: the subscribes this connection may still send now (each costs reads)
        self._subscribes = subscribes
        #: the watches and subscribes of this connection's API key, all its sockets together
        self._key_slot = key_slot

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
        if (refusal := self._refusal(project_id)) is not None:
            self._session.notice(refusal)
            return
        # Another tenant's project reads as missing, so ids cannot be probed.
        if await self._projects.get(project_id, tenant_id=self._tenant_id) is None:
            self._session.notice(error_message("project not found", project_id=project_id))
            return
        if not self._session.watching(project_id) and self._key_slot.watches_full():
            # The key's other sockets took the last watches while the project was read.
            self._session.notice(self._key_watches_full(project_id))
            return
        self._session.watch(project_id, message.after_seq)

    def _refusal(self, project_id: str) -> WireMessage | None:
        """Why this subscribe may not be applied now, as the error to answer; None: it may.

        Takes a token of the connection's bucket and one of its key's when it may.
        """
        if not self._session.watching(project_id):
            if self._session.watch_count() >= self._limit:
                return error_message(
                    f"at most {self._limit} subscriptions per connection", project_id=project_id
                )
            if self._key_slot.watches_full():
                return self._key_watches_full(project_id)
        if (wait_s := self._subscribes.take()) > 0:
            WS_REFUSALS_TOTAL.labels(limit="subscribe_rate").inc()
            return _too_fast("too many subscribes", wait_s, project_id)
        if (wait_s := self._key_slot.take_subscribe()) > 0:
            self._subscribes.give_back()  # not applied: not counted against the connection
            WS_REFUSALS_TOTAL.labels(limit="key_subscribe_rate").inc()
            return _too_fast(
                "too many subscribes with this API key on this server", wait_s, project_id
            )
        return None

    def _key_watches_full(self, project_id: str) -> WireMessage:
        WS_REFUSALS_TOTAL.labels(limit="key_watches").inc()
        return error_message(
            f"this API key already watches {self._key_slot.max_watches} projects on this server,"
            " the most it may; unsubscribe from projects no longer shown, or subscribe again"
            " later",
            project_id=project_id,
        )


def _too_fast(what: str, wait_s: float, project_id: str) -> WireMessage:
    retry_after_s = math.ceil(wait_s * 100) / 100
    return error_message(
        f"{what}; send it again in {retry_after_s} s",
        project_id=project_id,
        retry_after_s=retry_after_s,
    )


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
