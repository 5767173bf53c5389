"""permessage-deflate without context takeover, each message compressed once for every socket.

uvicorn's WebSocket protocol negotiates permessage-deflate with context
takeover: every connection keeps a zlib compressor and a decompressor alive
between messages (about 40 KiB together with uvicorn's 12-bit windows and
memLevel 5), which was 4 of every 10 bytes of a notifier holding 10,000
sockets. Here both directions negotiate ``no_context_takeover`` (RFC 7692
§7.1.1: a server may require it of a client that did not offer it, and
every browser accepts it), so zlib state lives only while one message is
compressed or decompressed, and an idle socket holds none.

Without context takeover a message's compressed bytes depend only on the
message and the settings, so a message sent to many sockets (an event to
every watcher of a project, the snapshot a reconnecting crowd asks for) is
compressed once: :class:`SharedDeflate` remembers the last few outputs.
Notifier messages are small JSON documents (an event is well under a KiB),
so compressing without the previous messages as a dictionary costs little ratio.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import CONT, CTRL_OPCODES, Frame
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.typing import ExtensionParameter

from reelflow_notifier.frames import FRAME_WRITER, FrameWriter

#: uvicorn's choices: 4 KiB windows, a small hash table; messages are small JSON
WINDOW_BITS = 12
COMPRESS_SETTINGS = {"memLevel": 5}
#: compressed messages remembered (a message to many sockets is sent in a burst)
CACHE_ENTRIES = 32
#: larger messages are compressed per socket (rare: a snapshot of a very large project)
CACHE_MAX_BYTES = 256 * 1024


class _Cache:
    """The last :data:`CACHE_ENTRIES` compressed messages, by payload and window size."""

    def __init__(self, entries: int) -> None:
        self._entries = entries
        self._found: OrderedDict[tuple[bytes, int], bytes] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[bytes, int]) -> bytes | None:
        data = self._found.get(key)
        if data is not None:
            self._found.move_to_end(key)
            self.hits += 1
        return data

    def put(self, key: tuple[bytes, int], data: bytes) -> None:
        self.misses += 1
        self._found[key] = data
        while len(self._found) > self._entries:
            self._found.popitem(last=False)


CACHE = _Cache(CACHE_ENTRIES)


class SharedDeflate(PerMessageDeflate):
    """permessage-deflate that reuses the output for a payload compressed before.

    Only for messages in one frame sent without context takeover, whose
    output is a function of the payload and the window size alone.
    """

    def encode(self, frame: Frame) -> Frame:
        if (
            not self.local_no_context_takeover
            or frame.opcode in CTRL_OPCODES
            or frame.opcode is CONT
            or not frame.fin
            or len(frame.data) > CACHE_MAX_BYTES
        ):
            return super().encode(frame)
        key = (bytes(frame.data), self.local_max_window_bits)
        data = CACHE.get(key)
        if data is None:
            encoded = super().encode(frame)
            data = bytes(encoded.data)
            CACHE.put(key, data)
        return Frame(frame.opcode, data, frame.fin, True, frame.rsv2, frame.rsv3)


class SharedDeflateFactory(ServerPerMessageDeflateFactory):
    """Negotiates no context takeover both ways; builds :class:`SharedDeflate`."""

    def __init__(self) -> None:
        super().__init__(
            server_no_context_takeover=True,
            client_no_context_takeover=True,
            server_max_window_bits=WINDOW_BITS,
            client_max_window_bits=WINDOW_BITS,
            compress_settings=COMPRESS_SETTINGS,
        )

    def process_request_params(
        self,
        params: Sequence[ExtensionParameter],
        accepted_extensions: Sequence[Extension],
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        response, agreed = super().process_request_params(params, accepted_extensions)
        shared = SharedDeflate(
            agreed.remote_no_context_takeover,
            agreed.local_no_context_takeover,
            agreed.remote_max_window_bits,
            agreed.local_max_window_bits,
            agreed.compress_settings,
        )
        return response, shared


_EXTENSIONS = [SharedDeflateFactory()]


class NotifierWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, with :class:`SharedDeflateFactory` and a frame writer.

    uvicorn builds its ``ServerProtocol`` with a fixed deflate factory; this
    builds it again with ours (``tests/unit/test_compression.py`` checks the
    handshake, so an uvicorn upgrade that moves this is caught). An accepted
    handshake's ASGI scope also gets a :class:`~reelflow_notifier.frames.FrameWriter`
    (``tests/unit/test_frames.py`` checks it against uvicorn's own sends).
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if config.ws_per_message_deflate:
            self.conn = ServerProtocol(
                extensions=_EXTENSIONS,
                max_size=config.ws_max_size,
                logger=logging.getLogger("uvicorn.error"),
            )

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The scope exists once the handshake is accepted; the app's task that reads
        # it is created but has not run yet.
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][FRAME_WRITER] = FrameWriter(self)
