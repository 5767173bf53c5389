"""Follow a project live over the WebSocket, with a ticket, until it finishes.

Reconnects with backoff after a dropped connection or a notifier restart, and
resumes with ``after_seq``; what is shown is decided by :class:`ProjectState`.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from reelflow_cli.client import Client
from reelflow_cli.errors import CliError, NotFound, Unauthorized, Unreachable
from reelflow_cli.project import ProjectState

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 15.0
#: consecutive failed connects before giving up (:func:`ride_out_s`: one to two minutes)
MAX_ATTEMPTS = 12
#: a ticket refused again and again means the notifier and the API disagree
MAX_REFUSED_TICKETS = 3

OnMessage = Callable[[dict[str, Any], ProjectState, bool], None]
OnState = Callable[[str], None]


async def watch(
    client: Client,
    project_id: str,
    *,
    on_message: OnMessage,
    on_state: OnState = lambda _state: None,
) -> ProjectState:
    """Until the project is finished; ``on_message(message, state, changed)`` for each message."""
    ws_url = str(client.config()["ws_url"]).rstrip("/")
    state = ProjectState(project_id)
    attempt = refused = 0
    while True:
        try:
            await _follow(client, ws_url, state, on_message, on_state)
            return state
        except _Lost as lost:
            refused = refused + 1 if lost.refused else 0
            if refused >= MAX_REFUSED_TICKETS:
                raise Unauthorized("the notifier keeps refusing this key's tickets") from None
            attempt = 0 if lost.was_live else attempt + 1
        except Unreachable:
            attempt += 1  # the API, for the ticket: it may be restarting too
            if attempt > MAX_ATTEMPTS:
                raise
        if attempt > MAX_ATTEMPTS:
            raise Unreachable(f"lost the live connection to {ws_url} and could not get it back")
        on_state("reconnecting")
        await asyncio.sleep(_delay_s(attempt) * random.uniform(0.5, 1.0))


def _delay_s(attempt: int) -> float:
    """The wait before the ``attempt``-th try again (0: after a connection that was live)."""
    return min(MAX_DELAY_S, FIRST_DELAY_S * 2.0 ** max(attempt - 1, 0))


def ride_out_s() -> tuple[int, int]:
    """How long, in whole seconds, a watch waits for a lost connection to come back before
    it gives up (exit 3): the waits between its tries, each randomised to half to all of its
    backoff; the tries themselves add to it (at most a connect's timeout each)."""
    most = sum(_delay_s(attempt) for attempt in range(1, MAX_ATTEMPTS + 1))
    return int(most / 2), int(most)


class _OutputFailed(Exception):
    """Showing a message failed (stdout's reader went away: ``| head -1``): not the
    connection's fault, so not a reason to reconnect; ``error`` ends the watch."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _shown(show: Callable[..., None], *args: Any) -> None:
    """``show(*args)``, its ``OSError`` (a broken pipe, a full disk) told apart from the
    socket's own: the ``except OSError`` that reconnects must not catch it."""
    try:
        show(*args)
    except OSError as exc:
        raise _OutputFailed(exc) from exc


class _Lost(Exception):
    """The connection ended before the project finished: reconnect."""

    def __init__(self, *, was_live: bool, refused: bool = False) -> None:
        super().__init__("connection lost")
        self.was_live = was_live
        self.refused = refused


async def _follow(
    client: Client, ws_url: str, state: ProjectState, on_message: OnMessage, on_state: OnState
) -> None:
    """One connection: until the project is finished (return) or the connection ends (_Lost)."""
    ticket = client.ws_ticket()  # Unauthorized when the key is no longer accepted
    url = f"{ws_url}/v1/ws/projects/{quote(state.project_id, safe='')}?ticket={quote(ticket)}"
    if state.seq >= 0:
        url += f"&after_seq={state.seq}"
    was_live = False
    try:
        async with connect(url, open_timeout=10, proxy=None) as socket:
            async for raw in socket:
                if not was_live:
                    was_live = True
                    _shown(on_state, "live")
                message = json.loads(raw)
                if message.get("type") == "error":
                    raise CliError(f"the server said: {message.get('message')}")
                changed = state.apply(message)
                _shown(on_message, message, state, changed)
                if state.finished:
                    return
    except _OutputFailed as failed:
        if isinstance(failed.error, BrokenPipeError):
            raise failed.error from None  # the reader went away: exit 141, saying nothing
        raise CliError(
            f"cannot write what is watched: {failed.error.strerror or failed.error}", exit_code=2
        ) from None
    except InvalidURI as exc:
        raise CliError(f"the server's WebSocket URL is not one: {ws_url}") from exc
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd is not None else None
        if code == 4404:
            raise NotFound("no such project (or it belongs to another tenant)") from None
        raise _Lost(was_live=was_live, refused=code == 4401) from None
    except (OSError, InvalidHandshake, TimeoutError):
        raise _Lost(was_live=False) from None
    raise _Lost(was_live=was_live)  # closed cleanly before the end
