"""``CoalescingWriter`` over a real TCP connection: what one turn of the event loop writes
reaches the socket in one transport write, in order, and nothing waits past that turn; an
``amqps://`` URL gets TLS, verified as aiormq verifies it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiormq import SSLContextProvider
from aiormq.abc import SSLCerts
from aiormq.exceptions import AMQPConnectionError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from yarl import URL

from reelflow_common.broker.transport import (
    FLUSH_AT_BYTES,
    CoalescingTransportFactory,
    CoalescingWriter,
)
from tests.waiting import DEADLINE_S, eventually


@dataclass
class Peer:
    """The far end: keeps every byte it reads, and whether the connection ended."""

    received: bytearray = field(default_factory=bytearray)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            self.received += chunk
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
        self.ended.set()


@dataclass
class Link:
    writer: CoalescingWriter
    peer: Peer
    #: every ``transport.write`` the writer made, as it made it
    transport_writes: list[bytes]


@pytest.fixture
async def link() -> AsyncIterator[Link]:
    peer = Peer()
    server = await asyncio.start_server(peer.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _reader, writer = await CoalescingTransportFactory().create(URL(f"amqp://127.0.0.1:{port}/"))
    assert isinstance(writer, CoalescingWriter)
    transport_writes: list[bytes] = []
    write = writer.transport.write

    def recording(data: Any) -> None:
        transport_writes.append(bytes(data))
        write(data)

    writer.transport.write = recording  # type: ignore[method-assign]
    try:
        yield Link(writer, peer, transport_writes)
    finally:
        writer.close()
        await asyncio.wait_for(peer.ended.wait(), DEADLINE_S)  # its side closed too
        server.close()
        await server.wait_closed()


async def test_what_one_turn_writes_goes_in_one_write_in_order(link: Link) -> None:
    for frame in (b"publish-1;", b"ack-7;", b"publish-2;"):
        link.writer.write(frame)
    assert link.transport_writes == []  # nothing until the turn ends

    await eventually(lambda: len(link.peer.received) == 26, "the frames to arrive")
    assert link.transport_writes == [b"publish-1;ack-7;publish-2;"]
    assert bytes(link.peer.received) == b"publish-1;ack-7;publish-2;"


async def test_a_later_turn_goes_in_a_write_of_its_own(link: Link) -> None:
    link.writer.write(b"first;")
    await link.writer.drain()
    await eventually(lambda: link.transport_writes == [b"first;"], "the first turn's write")

    link.writer.writelines([b"second;", b"third;"])
    await eventually(lambda: len(link.peer.received) == 19, "the second turn's frames")
    assert link.transport_writes == [b"first;", b"second;third;"]


async def test_drain_hands_over_at_once_what_is_large(link: Link) -> None:
    link.writer.write(b"a" * (FLUSH_AT_BYTES - 1))
    await link.writer.drain()
    assert link.transport_writes == []  # small: it waits for the turn's end

    link.writer.write(b"b")
    await link.writer.drain()
    assert link.transport_writes == [b"a" * (FLUSH_AT_BYTES - 1) + b"b"]
    await eventually(lambda: len(link.peer.received) == FLUSH_AT_BYTES, "all of it to arrive")


@pytest.mark.parametrize("end", ["close", "write_eof"])
async def test_ending_the_connection_sends_what_waits_first(link: Link, end: str) -> None:
    link.writer.write(b"connection.close-ok;")
    getattr(link.writer, end)()  # aiormq ends a TCP connection with write_eof, then close
    await asyncio.wait_for(link.peer.ended.wait(), DEADLINE_S)
    assert bytes(link.peer.received) == b"connection.close-ok;"


async def test_what_waits_for_a_connection_that_went_is_dropped_not_written(link: Link) -> None:
    link.writer.write(b"frame;")
    link.writer.transport.close()  # gone meanwhile: aiormq's reader sees it and reconnects

    link.writer.flush()

    assert link.transport_writes == []


async def test_a_transport_that_refuses_a_write_drops_the_connection(link: Link) -> None:
    def refusing(data: Any) -> None:
        raise RuntimeError("unable to perform operation: the handler is closed")

    link.writer.transport.write = refusing  # type: ignore[method-assign]
    link.writer.write(b"frame;")

    with pytest.raises(RuntimeError, match="handler is closed"):
        link.writer.flush()
    # aiormq's writer never hears of a callback's error: the connection must end, so its
    # reader sees it and aio-pika reconnects, instead of waiting for answers never asked.
    assert link.writer.transport.is_closing()


def _self_signed(directory: Path) -> tuple[Path, Path, bytes]:
    """A certificate for 127.0.0.1 and its key (files, for the server), and the
    certificate in DER (for the client to trust)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rabbitmq")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(exist_ok=True)
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file, certificate.public_bytes(serialization.Encoding.DER)


@pytest.fixture
async def tls_peer(tmp_path: Path) -> AsyncIterator[tuple[Peer, int, bytes]]:
    """A TLS server, its port, and its certificate (DER) for a client to trust."""
    cert_file, key_file, trusted = _self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_file, key_file)
    peer = Peer()
    server = await asyncio.start_server(peer.serve, "127.0.0.1", 0, ssl=server_tls)
    try:
        yield peer, server.sockets[0].getsockname()[1], trusted
    finally:
        server.close()
        await server.wait_closed()


def trusting(certificate: bytes) -> SSLContextProvider:
    """aiormq's TLS context as an ``amqps://`` URL gets it, trusting ``certificate`` only."""
    certs = SSLCerts(cert=None, key=None, capath=None, cafile=None, cadata=certificate, verify=True)
    return SSLContextProvider(ssl_context=None, ssl_certs=certs, loop=asyncio.get_running_loop())


async def test_amqps_is_tls_verified_against_the_trusted_certificate(
    tls_peer: tuple[Peer, int, bytes],
) -> None:
    peer, port, trusted = tls_peer
    _, writer = await CoalescingTransportFactory().create(
        URL(f"amqps://127.0.0.1:{port}/"), ssl_context_provider=trusting(trusted)
    )
    try:
        assert writer.get_extra_info("peercert")  # verified: unverified TLS shows {} here
        writer.write(b"over;")
        writer.write(b"tls;")
        await eventually(lambda: bytes(peer.received) == b"over;tls;", "the frames over TLS")
    finally:
        writer.close()
    await asyncio.wait_for(peer.ended.wait(), DEADLINE_S)


async def test_amqps_refuses_a_server_it_does_not_trust_and_never_goes_plain(
    tls_peer: tuple[Peer, int, bytes], tmp_path: Path
) -> None:
    _, port, _ = tls_peer
    _, _, stranger = _self_signed(tmp_path / "other")
    url = URL(f"amqps://127.0.0.1:{port}/")

    with pytest.raises(AMQPConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        await CoalescingTransportFactory().create(url, ssl_context_provider=trusting(stranger))
    with pytest.raises(ValueError, match="TLS"):
        await CoalescingTransportFactory().create(url)
