"""PyMongo's async connect closes its socket when it is cancelled.

``pymongo.pool_shared._async_create_connection`` (PyMongo 4.20) opens a plain
``socket.socket`` and awaits ``sock_connect``; it closes the socket on
``OSError`` and ``TimeoutError`` only. A cancellation in between (the monitor's
task, cancelled by ``client.close()`` while it reconnects; an operation under
``asyncio.timeout``) leaves the socket open, often connected already (the
kernel finished the handshake before the loop saw it), until the garbage
collector closes it with ``ResourceWarning: unclosed <socket.socket ...>``,
in whatever test happens to run then.

:func:`install` wraps that function: every socket it opens and does not return
is closed, whatever stopped it. Closing one PyMongo closed already does nothing.

It relies on two private names of ``pymongo.pool_shared`` (the function and the
module's ``socket`` global): a PyMongo that renames the function fails at import;
one that stops making its sockets through that global fails
``tests/unit/test_mongo_connect.py``. Upstream: PYTHON-5867
(mongodb/mongo-python-driver#2858, closed unmerged; not in 4.20.1). Remove this
module once PyMongo closes the socket itself: ``tests/unit/test_mongo_connect.py``
then passes without it.
"""

from __future__ import annotations

import socket
from contextvars import ContextVar
from typing import Any

from pymongo import pool_shared

#: the sockets opened by the connect running in this task (None: no connect running)
_opened: ContextVar[list[socket.socket] | None] = ContextVar("pymongo_opened", default=None)


class _RecordedSocket(socket.socket):
    """A socket the connect running in this task, if any, records as it is made."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        opened = _opened.get()
        if opened is not None:
            opened.append(self)


class _Sockets:
    """The ``socket`` module as ``pool_shared`` sees it, but for its socket class.

    A class still (a subclass of ``socket.socket``), so ``isinstance`` with it works.
    """

    socket = _RecordedSocket

    def __getattr__(self, name: str) -> Any:
        return getattr(socket, name)


def install() -> None:
    """Wrap PyMongo's async connect (once; later calls do nothing)."""
    connect = pool_shared._async_create_connection
    if getattr(connect, "_closes_on_cancel", False):
        return

    async def create_connection(address: Any, options: Any) -> socket.socket:
        opened: list[socket.socket] = []
        token = _opened.set(opened)
        try:
            sock = await connect(address, options)
        except BaseException:  # CancelledError above all
            for leftover in opened:
                leftover.close()
            raise
        finally:
            _opened.reset(token)
        for leftover in opened:
            if leftover is not sock:  # an address tried before the one that answered
                leftover.close()
        return sock

    create_connection._closes_on_cancel = True  # type: ignore[attr-defined]
    pool_shared.socket = _Sockets()  # type: ignore[attr-defined,assignment]
    pool_shared._async_create_connection = create_connection
