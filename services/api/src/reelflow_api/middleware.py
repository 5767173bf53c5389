"""Load shedding and body limits, as ASGI middleware: they act before any route or parser runs.

* :class:`InFlightLimit` admits at most ``limit`` requests at once; one more is
  answered ``503`` problem+json with ``Retry-After`` at once, without reading
  its body or touching a backing service (the probes and ``/metrics`` are never
  refused). Overload thus costs a client milliseconds, not a timeout, and the
  requests admitted stay fast. A POST that waits for its clips (``?wait=``)
  trades its slot for one of ``max_waiters`` (:func:`start_waiting`): waiting
  costs the API almost nothing, and must not keep others out. One API key may
  hold at most ``per_key`` of the slots, and one tenant, whatever number of keys
  it has, ``per_tenant`` (fewer than ``limit``); the next request is answered
  ``429`` at once, so one tenant's flood leaves slots for the others. A key or
  tenant shed is logged (``request_shed``, the key by its id) at most once per
  ``SHED_LOG_EVERY_S``; the counters count every one.
* :class:`BodyLimit` answers ``413`` problem+json for a body over ``max_bytes``:
  at once when ``Content-Length`` says so, else as soon as the bytes that
  arrived pass it. It answers ``422`` for a body that is not UTF-8 (one Python's
  ``json`` would read as UTF-16 or UTF-32, or a JSON body sent with another
  charset: :mod:`reelflow_api.json_encoding`), first, since the checks after it
  read the bytes as UTF-8; and for JSON text with an escaped lone surrogate
  (``"\\ud800"``). Python's ``json`` accepts those and builds strings that
  cannot be encoded again, so the route, MongoDB or the broker would fail later
  with a 500; refusing them where the bytes enter covers every route. A JSON
  body that holds more values than any valid body of its route's model is
  ``422`` too, before it is parsed (:mod:`reelflow_api.json_values`): parsing
  costs per value, and 1 MiB of tiny ones costs about a valid create's whole work.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Sequence
from typing import Any

import pydantic_core
from fastapi.routing import APIRoute
from prometheus_client import Counter, Gauge
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reelflow_api.bearer import request_key
from reelflow_api.json_encoding import charset_not_utf8, not_utf8
from reelflow_api.json_values import more_separators_than
from reelflow_api.matching import flattened_routes, matched
from reelflow_api.problems import (
    RETRY_AFTER_OVERLOADED_S,
    Problem,
    invalid_request,
    problem_response,
    unavailable,
)
from reelflow_api.validation import reads_as_json
from reelflow_common.client_json import most_separators
from reelflow_common.logging import get_logger
from reelflow_common.sampledlog import SampledLog
from reelflow_common.store.auth import key_id

#: where a request's in-flight slot is kept in its ASGI scope
_SLOT_KEY = "reelflow.in_flight_slot"
#: ``\ud800`` to ``\udfff`` as a JSON escape: only then is the body checked further
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")

SHED_TOTAL = Counter(
    "reelflow_api_requests_shed_total",
    "Requests answered 503 at once because the API had too many in progress"
    " (requests, or lookups of API keys it had not cached).",
)
KEY_SHED_TOTAL = Counter(
    "reelflow_api_requests_key_shed_total",
    "Requests answered 429 at once because their API key had too many in progress.",
)
TENANT_SHED_TOTAL = Counter(
    "reelflow_api_requests_tenant_shed_total",
    "Requests answered 429 at once because their tenant (all its API keys together) had"
    " too many in progress.",
)
log = get_logger(__name__)

IN_FLIGHT = Gauge("reelflow_api_requests_in_flight", "Requests in progress (waiters excluded).")
WAITING = Gauge("reelflow_api_requests_waiting", "POSTs waiting for their clips (?wait=).")


class _Slot:
    """One admitted request: in flight, then perhaps waiting."""

    __slots__ = ("credential", "limiter", "tenant", "waiting")

    def __init__(self, limiter: InFlightLimit, credential: str | None) -> None:
        self.limiter = limiter
        self.credential = credential
        #: the tenant this request is counted for, once its key was looked up
        self.tenant: str | None = None
        self.waiting = False


class InFlightLimit:
    """At most ``limit`` requests in progress and ``max_waiters`` waiting; the rest get 503.

    And at most ``per_key`` in progress with one API key (the key the ``Authorization``
    header names, read as :mod:`reelflow_api.auth` reads it, however it is spelled; not
    looked up), the next answered 429 at once. Counting the key needs no lookup, so it
    bounds a key's requests before their key is looked up; but a tenant may have several
    keys (two during a rotation), so once :mod:`reelflow_api.auth` has looked the key up
    (:func:`hold_for_tenant`) a request is counted for its tenant too, at most
    ``per_tenant`` (fewer than ``limit``) and the next answered 429 at once: one tenant's
    flood, with however many keys, cannot take every slot. Requests without a key (a
    webhook, a malformed header) share only ``limit``; those to a route that needs a key
    give their slot back at once (:mod:`reelflow_api.auth`, inside this limit, answers
    them 401 before their body is read). Waiters are not counted per key or tenant: one
    key may hold every ``max_waiters`` (others' POSTs then answer at once, 202).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        per_key: int,
        per_tenant: int,
        max_waiters: int,
        exempt: Collection[str],
    ) -> None:
        self.app = app
        self._limit = limit
        self._per_key = per_key
        self.per_tenant = per_tenant
        self._max_waiters = max_waiters
        self._exempt = frozenset(exempt)
        self.in_flight = 0
        self.waiting = 0
        #: requests in progress per credential (none at 0)
        self._by_credential: dict[str, int] = {}
        #: requests in progress per tenant whose key was looked up (none at 0)
        self._by_tenant: dict[str, int] = {}
        #: a key or tenant shed again within 10 s of its last line is not logged again (the
        #: next line counts those it left out): a flood is a line every 10 s, not one a request
        self.shed_log = SampledLog("request_shed")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._exempt:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self._limit:
            SHED_TOTAL.inc()
            detail = "Too many requests in progress; try again after Retry-After seconds."
            response = problem_response(unavailable(detail, retry_after_s=RETRY_AFTER_OVERLOADED_S))
            await response(scope, receive, send)
            return
        credential = request_key(scope)
        if credential is not None and self._by_credential.get(credential, 0) >= self._per_key:
            KEY_SHED_TOTAL.inc()
            shed = key_id(credential)
            self.shed_log.emit(
                f"key:{shed}", **_request(scope), limit="per_key", key_id=shed, cap=self._per_key
            )
            await problem_response(_key_busy(self._per_key))(scope, receive, send)
            return
        slot = _Slot(self, credential)
        scope[_SLOT_KEY] = slot
        self._count(in_flight=1)
        _hold(self._by_credential, credential, 1)
        try:
            await self.app(scope, receive, send)
        finally:
            if slot.waiting:
                self._count(waiting=-1)
            else:
                self._release(slot)

    def hold_for_tenant(self, slot: _Slot, tenant_id: str) -> bool:
        """Count ``slot`` for its tenant; False (nothing counted) when it has ``per_tenant``."""
        if slot.waiting or slot.tenant is not None:
            return True
        if self._by_tenant.get(tenant_id, 0) >= self.per_tenant:
            return False
        slot.tenant = tenant_id
        _hold(self._by_tenant, tenant_id, 1)
        return True

    def start_waiting(self, slot: _Slot) -> bool:
        if slot.waiting:
            return True
        if self.waiting >= self._max_waiters:
            return False
        self._release(slot)
        slot.waiting = True
        self._count(waiting=1)
        return True

    def _release(self, slot: _Slot) -> None:
        """Give back what an in-flight ``slot`` holds (not what a waiter does)."""
        self._count(in_flight=-1)
        _hold(self._by_credential, slot.credential, -1)
        _hold(self._by_tenant, slot.tenant, -1)

    def _count(self, *, in_flight: int = 0, waiting: int = 0) -> None:
        self.in_flight += in_flight
        self.waiting += waiting
        IN_FLIGHT.set(self.in_flight)
        WAITING.set(self.waiting)


def _hold(held: dict[str, int], name: str | None, change: int) -> None:
    """Change ``name``'s count in ``held`` (a name at 0 is removed); nothing for no name."""
    if name is None:
        return
    count = held.get(name, 0) + change
    if count:
        held[name] = count
    else:
        del held[name]


def hold_for_tenant(scope: Scope, tenant_id: str) -> Problem | None:
    """Count this request, its key looked up, for its tenant; the ``429`` to answer instead
    when the tenant has ``per_tenant`` requests in progress already (all its keys together).

    :class:`~reelflow_api.auth.Authentication` calls it: only then is the tenant known.
    """
    slot = scope.get(_SLOT_KEY)
    if not isinstance(slot, _Slot):  # not admitted by the limiter (an exempt path)
        return None
    if slot.limiter.hold_for_tenant(slot, tenant_id):
        return None
    TENANT_SHED_TOTAL.inc()
    limiter = slot.limiter
    limiter.shed_log.emit(
        f"tenant:{tenant_id}",
        **_request(scope),
        limit="per_tenant",
        tenant_id=tenant_id,
        key_id=None if slot.credential is None else key_id(slot.credential),
        cap=limiter.per_tenant,
    )
    return _tenant_busy(slot.limiter.per_tenant)


def _request(scope: Scope) -> dict[str, Any]:
    """What a shed line says of its request."""
    return {"method": scope.get("method"), "path": scope.get("path")}


def _tenant_busy(per_tenant: int) -> Problem:
    return _busy(
        f"This tenant has {per_tenant} requests in progress (all its API keys together),"
        " the most one tenant may have; try again after Retry-After seconds."
    )


def _key_busy(per_key: int) -> Problem:
    return _busy(
        f"This API key has {per_key} requests in progress, the most one key may have;"
        " try again after Retry-After seconds."
    )


def _busy(detail: str) -> Problem:
    """A 429 for requests in progress, to be sent again after ``Retry-After``."""
    return Problem(
        429, "Too Many Requests", detail, headers={"Retry-After": str(RETRY_AFTER_OVERLOADED_S)}
    )


def start_waiting(request: Request) -> bool:
    """Turn this request's in-flight slot into a waiter's; False when too many wait already.

    A route calls it before it waits for something slow that costs nothing
    meanwhile (``?wait=``); on False it answers at once instead of waiting.
    """
    slot = request.scope.get(_SLOT_KEY)
    if not isinstance(slot, _Slot):  # not admitted by the limiter (an exempt path)
        return True
    return slot.limiter.start_waiting(slot)


class BodyLimit:
    """Request bodies of at most ``max_bytes``, in UTF-8, no escaped lone surrogate in them, and
    in a JSON body no more values than its route's model allows."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self._max_bytes = max_bytes
        # The router's own list, read per request: routes added after this is built count.
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self._max_bytes:
            await problem_response(_too_large(self._max_bytes))(scope, receive, send)
            return
        body = _CheckedBody(receive, self._max_bytes, functools.partial(self._problem, scope))
        started = False

        async def send_watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, body.receive, send_watched)
        except Problem as problem:
            # Raised from ``receive`` where no exception handler was around to answer it.
            if started or problem is not body.refused:
                raise
            await problem_response(problem)(scope, receive, send)

    def _problem(self, scope: Scope, body: bytes) -> Problem | None:
        """What is wrong with the whole ``body`` of this request, if anything."""
        # First: the checks below read the bytes as UTF-8, and json reads UTF-16 and UTF-32.
        content_type = Headers(scope=scope).get("content-type")
        as_json = reads_as_json(content_type)
        charset = charset_not_utf8(content_type) if as_json else None
        if (not_text := charset or not_utf8(body)) is not None:
            return invalid_request([{"loc": ["body"], "msg": not_text}])
        model = _body_model(matched(self._routes, scope).route) if as_json else None
        if model is not None and more_separators_than(body, most := most_separators(model)):
            msg = f"more fields and array items than a valid body has (at most {most} ',' and ':')"
            return invalid_request([{"loc": ["body"], "msg": msg}])
        return _text_problem(body)


def require_bounded_bodies(routes: Sequence[BaseRoute]) -> None:
    """Raise TypeError unless every route that reads a body reads it into a model whose values
    are bounded (:func:`~reelflow_common.client_json.most_separators`).

    :class:`BodyLimit` counts a JSON body's values against that bound before it is
    parsed: a route without one would be parsed unbounded, or fail at its first request.
    ``create_app`` calls this, so such a route fails when the app is built.
    """
    for route in flattened_routes(routes):
        if not isinstance(route, APIRoute) or route.body_field is None:
            continue
        model = _body_model(route)
        if model is None:
            raise TypeError(f"{route.path}: its body is no model, so nothing bounds its values")
        most_separators(model)


def _body_model(route: BaseRoute | None) -> type[BaseModel] | None:
    """The model a route reads a body into, if it reads one into a model."""
    if not isinstance(route, APIRoute) or route.body_field is None:
        return None
    model = route.body_field.field_info.annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


class _CheckedBody:
    """A ``receive`` that counts the body's bytes and checks the whole body before its end."""

    def __init__(
        self, receive: Receive, max_bytes: int, check: Callable[[bytes], Problem | None]
    ) -> None:
        self._receive = receive
        self._max_bytes = max_bytes
        self._check = check
        self._chunks: list[bytes] = []
        self._size = 0
        self.refused: Problem | None = None

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] != "http.request":
            return message
        chunk: bytes = message.get("body", b"")
        self._size += len(chunk)
        if self._size > self._max_bytes:
            self._chunks.clear()
            self.refused = _too_large(self._max_bytes)
            raise self.refused
        self._chunks.append(chunk)
        if not message.get("more_body", False):
            body = b"".join(self._chunks)
            self._chunks.clear()
            if body and (problem := self._check(body)) is not None:
                self.refused = problem
                raise problem
        return message


def _too_large(max_bytes: int) -> Problem:
    return Problem(413, "Content Too Large", f"The request body is larger than {max_bytes} bytes.")


def _text_problem(body: bytes) -> Problem | None:
    """A 422 when ``body`` has an escaped lone surrogate (or is no JSON at all)."""
    if _ESCAPED_SURROGATE.search(body) is None:
        return None
    try:
        # pydantic-core's parser refuses lone surrogates, which Python's json accepts.
        pydantic_core.from_json(body)
    except ValueError as exc:
        msg = (
            "not valid JSON text (a \\ud800-\\udfff escape must be one half of"
            f" a surrogate pair): {exc}"
        )
        return Problem(
            422, "Invalid Request", f"body: {msg}", errors=[{"loc": ["body"], "msg": msg}]
        )
    return None


def _content_length(scope: Scope) -> int | None:
    raw = Headers(scope=scope).get("content-length")
    if raw is None or not raw.isdigit():
        return None  # absent or malformed: the bytes are counted as they arrive instead
    return int(raw)
