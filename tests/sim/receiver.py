"""A tiny HTTP server that records webhook calls and answers with scripted statuses."""

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class WebhookCall:
    """One POST the receiver got."""

    path: str
    headers: dict[str, str]
    body: Any
    status: int  # what the receiver answered


@dataclass
class WebhookReceiver:
    """Answers each POST with the next scripted status (200 once the script runs out)."""

    statuses: deque[int]
    url: str = ""
    calls: list[WebhookCall] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for_calls(self, count: int) -> list[WebhookCall]:
        """Wait until `count` calls have arrived; bound it with asyncio.timeout()."""
        while len(self.calls) < count:
            await self._arrived.wait()
            self._arrived.clear()
        return self.calls

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in header_lines:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status = self.statuses.popleft() if self.statuses else 200
            path = request_line.split(" ")[1]
            self.calls.append(WebhookCall(path, headers, json.loads(body), status))
            self._arrived.set()
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        finally:
            writer.close()


@asynccontextmanager
async def webhook_receiver(*statuses: int) -> AsyncIterator[WebhookReceiver]:
    """Serve a receiver on a free local port; `statuses` script its first answers."""
    receiver = WebhookReceiver(deque(statuses))
    server = await asyncio.start_server(receiver._handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    receiver.url = f"http://127.0.0.1:{port}/hooks/runware?token=abc"
    try:
        yield receiver
    finally:
        server.close()
        await server.wait_closed()
