"""Writes events' texts to a socket as frames built once for every socket that can share them.

A server's frames are not masked (RFC 6455 §5.1), and without context
takeover a message's compressed payload depends only on the message and the
deflate settings (:mod:`reelflow_notifier.compression`), so one message's
whole frame, header and payload, is the same bytes on every socket that
negotiated the same thing. An event, or a burst of a project's events routed
together (:class:`reelflow_notifier.fanout.Router`), is framed once per
negotiation seen (in practice twice at most: with deflate and without), as one
block of bytes, and each watcher's socket
gets those bytes straight from the hub's routing: no task wakes per socket,
and nothing passes through Starlette, the ASGI ``send`` and websockets'
framing per socket.

A socket's frames of one pass of the event loop go in one ``transport.write``
at the end of the pass: events routed in one pass (a burst, or several
projects' events on one connection) cost each socket one send system call and
one wakeup of its reader, not one per event. Order is kept: the sender task only writes an entry
queued after a direct write (``Session._write_now``), and its wakeup for that
entry is scheduled after the callback that writes the waiting frames, which
the loop runs first (``call_soon`` is first in, first out). A frame still
waiting when the connection's close has been sent, or its transport is
closing, is dropped (the client reconnects with ``after_seq``). Flow control
is checked when a frame is queued (:meth:`FrameWriter.ready`), so a pass may
queue a burst past the transport's high-water mark: at most one frame per
event routed in that pass, which the fan-out's prefetch and the router's
bound on events held back (``reorder.MAX_HELD``) bound.

This goes around websockets' ``ServerProtocol``, which is sound because
sending one complete data frame changes none of its state (a fragmented
message would; the notifier never sends one). The writer only writes while
the protocol is open and its transport takes data without pausing, the flow
control uvicorn's ``send`` waits on; otherwise it refuses, and the session
queues the message for its sender task as before, which keeps a slow
reader's backlog bounded by the outbox.

uvicorn's protocol hands a :class:`FrameWriter` to the app in the ASGI
scope's extensions, under :data:`FRAME_WRITER`; a server without it (a test
client) leaves every message to the sender task.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from reelflow_common.logging import get_logger

if TYPE_CHECKING:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

log = get_logger(__name__)

#: the ASGI scope extension that holds a connection's :class:`FrameWriter`
FRAME_WRITER: Final = "reelflow.frame_writer"
#: frames remembered (an event's frame is written to all its watchers in one burst)
CACHE_ENTRIES = 64

#: what a text's frame depends on besides the text: () without an extension,
#: the deflate settings with permessage-deflate
Shape = tuple[Any, ...]


def shape_of(extensions: Sequence[Extension]) -> Shape | None:
    """The negotiation a frame depends on; None when it depends on the socket's own past.

    Frames are shareable without extensions, and with permessage-deflate
    without context takeover on the server's side (what this notifier
    negotiates); anything else is framed by websockets for each socket.
    """
    if not extensions:
        return ()
    (extension, *others) = extensions
    if others or not isinstance(extension, PerMessageDeflate):
        return None
    if not extension.local_no_context_takeover:
        return None
    settings = tuple(sorted(extension.compress_settings.items()))
    return ("permessage-deflate", extension.local_max_window_bits, settings)


class _Frames:
    """The last :data:`CACHE_ENTRIES` blocks of frames, by texts and shape."""

    def __init__(self, entries: int) -> None:
        self._entries = entries
        self._frames: OrderedDict[tuple[tuple[str, ...], Shape], bytes] = OrderedDict()
        self.built = 0

    def frames(
        self, texts: tuple[str, ...], shape: Shape, extensions: Sequence[Extension]
    ) -> bytes:
        """The frames of ``texts``, one text frame each, in order, as one block of bytes."""
        # The texts are the same str objects for every watcher, so their hashes are computed once.
        key = (texts, shape)
        data = self._frames.get(key)
        if data is None:
            data = self._frames[key] = b"".join(
                Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=extensions)
                for text in texts
            )
            self.built += 1
            while len(self._frames) > self._entries:
                self._frames.popitem(last=False)
        return data


FRAMES = _Frames(CACHE_ENTRIES)


class FrameWriter:
    """One connection's direct writes of shared frames.

    It holds its protocol weakly: the protocol's ASGI scope holds the writer, and
    a cycle would leave each closed connection to the cyclic garbage collector.
    """

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = weakref.ref(protocol)
        #: known once the handshake has agreed the extensions
        self._shape: Shape | None = None
        self._shape_known = False
        #: this pass's frames, written together at its end; None: none waiting
        self._waiting: list[bytes] | None = None

    def ready(self) -> bool:
        """Whether :meth:`write_texts` may take frames now: open, not paused, shareable."""
        protocol = self._protocol()
        if (
            protocol is None
            or not protocol.handshake_complete
            or protocol.close_sent
            or protocol.disconnected
            or not protocol.writable.is_set()
            or protocol.conn.state is not State.OPEN
            or protocol.transport.is_closing()
        ):
            return False
        if not self._shape_known:
            self._shape = shape_of(protocol.conn.extensions)
            self._shape_known = True
        return self._shape is not None

    def write_texts(self, texts: tuple[str, ...]) -> None:
        """Write ``texts``, one text frame each, at the end of this pass of the event loop with
        the others written in it; only right after :meth:`ready` said yes (no await)."""
        protocol = self._protocol()
        if protocol is None or self._shape is None:
            raise RuntimeError("write_texts without ready()")
        frames = FRAMES.frames(texts, self._shape, protocol.conn.extensions)
        if self._waiting is None:
            self._waiting = [frames]
            asyncio.get_running_loop().call_soon(self._write_waiting)
        else:
            self._waiting.append(frames)

    def _write_waiting(self) -> None:
        frames, self._waiting = self._waiting, None
        protocol = self._protocol()
        if (
            frames is None
            or protocol is None
            or protocol.close_sent
            or protocol.transport.is_closing()
        ):
            return
        try:
            protocol.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
        except Exception:
            # Nothing else would notice (a callback of the loop): closing the socket makes
            # the client reconnect with after_seq and replay what it missed.
            log.exception("ws_frame_write_failed", frames=len(frames))
            protocol.transport.abort()
