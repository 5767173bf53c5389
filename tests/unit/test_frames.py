"""Shared frames written straight to a socket are the bytes uvicorn's own send would write,
and a socket's frames of one pass of the event loop go to it in one write, in order."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from reelflow_notifier.compression import NotifierWebSocketProtocol
from reelflow_notifier.frames import FRAME_WRITER, FRAMES, FrameWriter
from tests.waiting import DEADLINE_S, end_of_pass, eventually

TEXT = '{"type": "clip.updated", "seq": 7, "project_id": "p", "clip": {"status": "succeeded"}}'


class Transport(asyncio.Transport):
    """Keeps what is written; no socket."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8001), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Server:
    """A notifier protocol on a fake transport, with an app that sends what it is given."""

    def __init__(self) -> None:
        self.writer: FrameWriter | None = None
        self.to_send: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        config = uvicorn.Config(
            self.app, ws=NotifierWebSocketProtocol, ws_ping_interval=None, interface="asgi3"
        )
        self.state = ServerState()
        self.protocol = NotifierWebSocketProtocol(config, self.state, {})
        self.transport = Transport()
        self.protocol.connection_made(self.transport)

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        self.writer = scope["extensions"][FRAME_WRITER]
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await self.to_send.get())["type"] != "stop":
            await send(message)

    async def stop(self) -> None:
        await self.to_send.put({"type": "stop"})
        await asyncio.wait_for(asyncio.gather(*self.state.tasks), DEADLINE_S)

    def written(self) -> bytes:
        data = b"".join(self.transport.written)
        self.transport.written.clear()
        return data


async def handshake(deflate: bool) -> tuple[Server, ClientProtocol]:
    server = Server()
    extensions = enable_client_permessage_deflate(None) if deflate else None
    client = ClientProtocol(parse_uri("ws://127.0.0.1:8001/v1/ws"), extensions=extensions)
    client.send_request(client.connect())
    server.protocol.data_received(b"".join(client.data_to_send()))
    await eventually(lambda: server.protocol.handshake_complete, "handshake answered")
    client.receive_data(server.written())
    assert client.handshake_exc is None
    client.events_received()
    return server, client


async def uvicorn_sent(server: Server, text: str) -> bytes:
    await server.to_send.put({"type": "websocket.send", "text": text})
    await eventually(lambda: bool(server.transport.written), "uvicorn wrote the text")
    return server.written()


def received(client: ClientProtocol, data: bytes) -> list[str]:
    client.receive_data(data)
    return [
        bytes(event.data).decode()
        for event in client.events_received()
        if isinstance(event, Frame) and event.opcode is Opcode.TEXT
    ]


async def test_a_shared_frame_is_what_uvicorn_would_send_with_deflate_and_without() -> None:
    for deflate in (True, False):
        server, client = await handshake(deflate)
        writer = server.writer
        assert writer is not None
        assert writer.ready()

        writer.write_texts((TEXT,))
        await end_of_pass()
        direct = server.written()

        assert direct == await uvicorn_sent(server, TEXT)
        assert received(client, direct) == [TEXT]
        await server.stop()


async def test_a_text_is_framed_once_for_every_socket_that_negotiated_the_same() -> None:
    servers = [(await handshake(deflate=True))[0] for _ in range(3)]
    text = TEXT.replace("7", "8")
    built = FRAMES.built

    for server in servers:
        assert server.writer is not None
        assert server.writer.ready()
        server.writer.write_texts((text,))
    await end_of_pass()

    assert FRAMES.built - built == 1
    assert len({server.written() for server in servers}) == 1
    for server in servers:
        await server.stop()


async def test_no_direct_write_while_the_transport_is_paused_or_after_the_close() -> None:
    server, _client = await handshake(deflate=True)
    writer = server.writer
    assert writer is not None

    server.protocol.pause_writing()
    assert not writer.ready()
    server.protocol.resume_writing()
    assert writer.ready()

    await server.to_send.put({"type": "websocket.close", "code": 1000})
    await eventually(lambda: server.protocol.close_sent, "close frame sent")
    assert not writer.ready()
    await server.stop()


async def test_a_sockets_frames_of_one_pass_go_to_it_in_one_write_in_order() -> None:
    server, client = await handshake(deflate=True)
    writer = server.writer
    assert writer is not None
    texts = [TEXT.replace("7", str(seq)) for seq in (9, 10, 11)]

    for text in texts:
        assert writer.ready()
        writer.write_texts((text,))
    assert server.transport.written == []  # not before the pass ends
    await end_of_pass()

    assert len(server.transport.written) == 1  # one send for the three
    assert received(client, server.written()) == texts
    await server.stop()


async def test_a_burst_is_framed_once_for_every_socket_and_written_in_one_send() -> None:
    servers = [(await handshake(deflate=True))[0] for _ in range(3)]
    _server, client = await handshake(deflate=True)
    texts = tuple(TEXT.replace("7", str(seq)) for seq in (20, 21, 22, 23))
    built = FRAMES.built

    for server in servers:
        assert server.writer is not None
        assert server.writer.ready()
        server.writer.write_texts(texts)
    await end_of_pass()

    assert FRAMES.built - built == 1
    assert [len(server.transport.written) for server in servers] == [1, 1, 1]
    (block,) = {server.written() for server in servers}
    assert received(client, block) == list(texts)
    for server in [*servers, _server]:
        await server.stop()


async def test_a_message_uvicorn_sends_after_a_waiting_frame_follows_it() -> None:
    server, client = await handshake(deflate=True)
    writer = server.writer
    assert writer is not None
    first, second = TEXT.replace("7", "12"), TEXT.replace("7", "13")

    assert writer.ready()
    writer.write_texts((first,))
    await server.to_send.put({"type": "websocket.send", "text": second})  # the sender's path
    await eventually(lambda: len(server.transport.written) == 2, "both written")

    assert received(client, server.written()) == [first, second]
    await server.stop()


async def test_a_frame_still_waiting_when_the_client_closes_is_not_written() -> None:
    server, client = await handshake(deflate=False)
    writer = server.writer
    assert writer is not None
    assert writer.ready()

    writer.write_texts((TEXT,))
    client.send_close(1000)
    server.protocol.data_received(b"".join(client.data_to_send()))  # answered, then closed
    await end_of_pass()

    assert server.transport.closing
    assert received(client, server.written()) == []  # the close's answer, and no text after it
    await server.stop()
