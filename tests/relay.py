"""A TCP relay in front of a server, for tests that cut it off and bring it back."""

from __future__ import annotations

import asyncio


class TcpProxy:
    """A TCP relay in front of a server, to cut it off and bring it back (an outage)."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._down = False
        self._stalled = False
        self.port = 0

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def go_down(self) -> None:
        """Drop every open connection and refuse new ones until ``come_back``."""
        self._down = True
        self._cut()

    def stall(self) -> None:
        """Accept new connections but never answer on them (a hung server)."""
        self._stalled = True

    @property
    def connections(self) -> int:
        """Connections open through (or held by) the proxy now."""
        return len(self._writers)

    def come_back(self) -> None:
        self._down = self._stalled = False

    def _cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down:
            writer.transport.abort()
            return
        if self._stalled:
            self._writers.add(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        self._writers -= {writer, up_writer}

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()
