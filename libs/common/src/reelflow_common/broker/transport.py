"""RabbitMQ connections whose frames of one event-loop turn go out in one socket write.

aiormq writes each frame it sends (a publish, an acknowledgement, a heartbeat) with a
socket write of its own. A busy service sends several in the same turn of its event
loop (the acknowledgements and publishes of the messages it handled in that turn), and
each write is a system call here and a read at the broker. ``CoalescingWriter`` keeps
what is written during a turn and hands it to the transport at the next turn, as one
write, in the order it was written. Nothing waits longer than that turn.

It plugs in through aiormq's public ``TransportFactory``, for TCP (``amqp://``) and TLS
(``amqps://``) alike. aio-pika hands aiormq only the connection parameters its connection
class declares, so ``CoalescingRobustConnection`` declares ``transport_factory``, as
aio-pika's ``RobustConnection`` declares ``reconnect_interval``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aio_pika import RobustConnection
from aio_pika.abc import AbstractRobustConnection, ConnectionParameter
from aiormq import SSLContextProvider, TransportFactory
from aiormq.exceptions import AMQPConnectionError
from yarl import URL

#: beyond this many bytes waiting, ``drain`` hands them to the transport at once, so its
#: own flow control (its high-water mark) sees them
FLUSH_AT_BYTES = 64 * 1024

Bytes = bytes | bytearray | memoryview


class CoalescingWriter(asyncio.StreamWriter):
    """A ``StreamWriter`` whose writes of one event-loop turn reach the transport as one."""

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        protocol: asyncio.StreamReaderProtocol,
        reader: asyncio.StreamReader,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(transport, protocol, reader, loop)
        self._event_loop = loop  # StreamWriter keeps it too, but not as its API
        self._waiting: list[bytes] = []
        self._waiting_bytes = 0

    def write(self, data: Bytes) -> None:
        if not self._waiting:
            self._event_loop.call_soon(self.flush)
        chunk = bytes(data)
        self._waiting.append(chunk)
        self._waiting_bytes += len(chunk)

    def writelines(self, data: Iterable[Bytes]) -> None:
        for chunk in data:
            self.write(chunk)

    def flush(self) -> None:
        """Hand what waits to the transport, as one write."""
        if not self._waiting:
            return
        data = self._waiting[0] if len(self._waiting) == 1 else b"".join(self._waiting)
        self._waiting.clear()
        self._waiting_bytes = 0
        if self.transport.is_closing():
            return  # the connection is gone: aiormq's reader sees it, and reconnects
        try:
            self.transport.write(data)
        except Exception:
            # Raised here, in a callback, aiormq's writer would never hear of it and wait
            # for answers to frames never sent: drop the connection, so it reconnects.
            self.transport.abort()
            raise

    async def drain(self) -> None:
        # Flow control only: what waits goes at the end of this turn, unless it is large.
        if self._waiting_bytes >= FLUSH_AT_BYTES:
            self.flush()
        await super().drain()

    def write_eof(self) -> None:
        self.flush()
        super().write_eof()

    def close(self) -> None:
        self.flush()
        super().close()


class CoalescingTransportFactory(TransportFactory):
    """A TCP connection (TLS for ``amqps://``, as aiormq's own factories make them) written
    through a ``CoalescingWriter``: what ``asyncio.open_connection`` does, with that writer."""

    async def create(
        self, url: URL, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        tls: SSLContextProvider | None = kwargs.pop("ssl_context_provider", None)
        ssl = None
        if url.scheme == "amqps":
            if tls is None:  # never plain TCP for an amqps URL
                raise ValueError(f"{url.scheme}: TLS asked for, but no TLS context given")
            ssl = await tls.get_context()
        # aiormq's Connection gives every URL a host and its scheme's default port.
        assert url.host is not None, url
        assert url.port is not None, url
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=kwargs.pop("limit", 2**16), loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.create_connection(
                lambda: protocol, host=url.host, port=url.port, ssl=ssl, **kwargs
            )
        except OSError as error:
            raise AMQPConnectionError(*error.args) from error
        return reader, CoalescingWriter(transport, protocol, reader, loop)


class CoalescingRobustConnection(RobustConnection):
    """aio-pika's ``RobustConnection``, which passes a ``transport_factory`` on to aiormq."""

    PARAMETERS = (
        *RobustConnection.PARAMETERS,
        ConnectionParameter(name="transport_factory", parser=lambda value: value, is_kwarg=True),
    )


async def connect_robust(
    url: str, *, name: str, reconnect_interval_s: float, timeout_s: float | None = None
) -> AbstractRobustConnection:
    """What ``aio_pika.connect_robust`` does, its frames written through a
    ``CoalescingWriter``; ``name`` shows in RabbitMQ's management UI.

    The connection is built here, not by ``aio_pika.connect_robust(connection_class=...)``:
    that one also puts every keyword into the URL's query, which cannot hold a factory.
    """
    connection = CoalescingRobustConnection(
        URL(url),
        client_properties={"connection_name": name},
        reconnect_interval=reconnect_interval_s,
        transport_factory=CoalescingTransportFactory(),
    )
    await connection.connect(timeout=timeout_s)
    return connection
