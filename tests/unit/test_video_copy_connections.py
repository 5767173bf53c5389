"""Where the copier's connections go: only to the addresses it checked, with TLS checking the
URL's own name, a connection never serving a second name, and the next address tried when
one does not answer.

Runware's CDN is a real HTTPS server on 127.0.0.1 with a certificate for ``cdn.example``
only, from a certificate authority made for the test; no name here is in any DNS.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import httpcore
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from reelflow_common.storage import CopyFailed, LocalStorage, VideoCopier
from reelflow_common.storage.pinned import PinnedAddresses
from tests.waiting import DEADLINE_S, eventually

SAMPLE = files("reelflow_runware_sim").joinpath("assets/sample.mp4").read_bytes()
KEY = "videos/p/0/t.mp4"
#: the one name the CDN's certificate is valid for
CDN = "cdn.example"
#: another name at the same address, which the certificate does not cover
OTHER = "other.example"


@dataclass
class Cdn:
    """An HTTPS server answering every GET with the sample video, keeping connections open.

    ``asked``: (connection number, ``Host``) of each request, in order.
    """

    port: int = 0
    asked: list[tuple[int, str]] = field(default_factory=list)
    connections: int = 0
    open_connections: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = self.connections
        self.connections += 1
        self.open_connections += 1
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("ascii")
                host = next(
                    line.split(":", 1)[1].strip()
                    for line in head.split("\r\n")
                    if line.lower().startswith("host:")
                )
                self.asked.append((connection, host))
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(SAMPLE), SAMPLE)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed the connection
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
            self.open_connections -= 1

    def url(self, host: str) -> str:
        return f"https://{host}:{self.port}/video/v.mp4"


@dataclass(frozen=True)
class Tls:
    """The CDN's side (its certificate for ``CDN`` and key) and a client's, trusting the
    test's certificate authority only."""

    server: ssl.SSLContext
    client: ssl.SSLContext


def _tls(directory: Path) -> Tls:
    now = datetime.datetime.now(datetime.UTC)

    def certificate(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: str
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    cdn_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        certificate("test CA", ca_key, "test CA")
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cdn = (
        certificate(CDN, cdn_key, "test CA")
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(CDN)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cdn.pem", directory / "cdn.key"
    cert_file.write_bytes(cdn.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        cdn_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return Tls(server, client)


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return _tls(tmp_path)


@pytest.fixture
async def cdn(tls: Tls) -> AsyncIterator[Cdn]:
    cdn = Cdn()
    server = await asyncio.start_server(cdn.serve, "127.0.0.1", 0, ssl=tls.server)
    cdn.port = server.sockets[0].getsockname()[1]
    try:
        yield cdn
    finally:
        server.close()
        await server.wait_closed()
        await eventually(lambda: cdn.open_connections == 0, "the CDN's connections to end")


def _copier(tmp_path: Path, tls: Tls, addresses: dict[str, list[str]]) -> VideoCopier:
    """A copier whose resolver answers ``addresses`` (name -> addresses)."""

    async def resolve(host: str, _port: int) -> list[str]:
        return addresses[host]

    return VideoCopier(
        LocalStorage(tmp_path),
        max_bytes=1 << 20,
        timeout_s=DEADLINE_S,
        internal_hosts=list(addresses),  # so they may be on 127.0.0.1
        resolve=resolve,
        ssl_context=tls.client,
    )


async def test_a_connection_made_for_one_name_never_serves_another(
    tmp_path: Path, tls: Tls, cdn: Cdn
) -> None:
    at_the_cdn = {CDN: ["127.0.0.1"], OTHER: ["127.0.0.1"]}
    async with _copier(tmp_path, tls, at_the_cdn) as copier:
        # The name is in no DNS: the connection goes to the checked address, TLS checks
        # the name, and a second copy from the same host reuses the connection.
        for _ in range(2):
            assert (await copier.copy(cdn.url(CDN), KEY)).size_bytes == len(SAMPLE)
        assert cdn.asked == [(0, f"{CDN}:{cdn.port}"), (0, f"{CDN}:{cdn.port}")]

        # Same address, another name: a connection of its own, whose certificate check fails.
        with pytest.raises(CopyFailed) as failed:
            await copier.copy(cdn.url(OTHER), KEY)
        assert failed.value.code == "providerUnavailable"
        assert "CERTIFICATE_VERIFY_FAILED" in str(failed.value)
        assert OTHER in str(failed.value)
    assert len(cdn.asked) == 2  # the other name was never asked anything


async def test_an_address_that_does_not_answer_is_passed_over_for_the_next(
    tmp_path: Path, tls: Tls, cdn: Cdn
) -> None:
    # Nothing listens on 127.0.0.2 (the CDN is on 127.0.0.1 only): refused at once.
    async with _copier(tmp_path, tls, {CDN: ["127.0.0.2", "127.0.0.1"]}) as copier:
        assert (await copier.copy(cdn.url(CDN), KEY)).size_bytes == len(SAMPLE)
    assert [host for _, host in cdn.asked] == [f"{CDN}:{cdn.port}"]


class _Network(httpcore.AsyncNetworkBackend):
    """A network where ``late`` addresses time out and others connect; remembers each try."""

    def __init__(self, late: set[str]) -> None:
        self.late = late
        self.tried: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.tried.append((host, port))
        if host in self.late:
            raise httpcore.ConnectTimeout(f"{host} did not answer")
        return httpcore.AsyncNetworkStream()


async def test_the_addresses_are_tried_in_order_past_one_that_times_out() -> None:
    network = _Network(late={"192.0.2.1"})
    pinned = PinnedAddresses(network)
    with pinned.pin(CDN, ["192.0.2.1", "192.0.2.2", "192.0.2.3"]):
        await pinned.connect_tcp(CDN, 443)
    assert network.tried == [("192.0.2.1", 443), ("192.0.2.2", 443)]


async def test_a_host_never_checked_is_never_connected_to() -> None:
    network = _Network(late=set())
    pinned = PinnedAddresses(network)
    with (
        pinned.pin(CDN, ["192.0.2.1"]),
        pytest.raises(httpcore.ConnectError, match="no checked address"),
    ):
        await pinned.connect_tcp(OTHER, 443)
    assert network.tried == []


async def test_a_host_is_pinned_only_while_a_request_to_it_is_sent() -> None:
    network = _Network(late=set())
    pinned = PinnedAddresses(network)
    with pinned.pin(CDN, ["192.0.2.1"]):
        # A concurrent request of the same host pins the addresses its own check found;
        # the host stays pinned until the last of them is sent.
        with pinned.pin(CDN, ["192.0.2.2"]):
            assert pinned.hosts == {CDN}
        await pinned.connect_tcp(CDN, 443)
    assert not pinned.hosts
    with pytest.raises(httpcore.ConnectError, match="no checked address"):
        await pinned.connect_tcp(CDN, 443)
    assert network.tried == [("192.0.2.2", 443)]


async def test_copies_from_many_hosts_leave_none_pinned(tmp_path: Path, tls: Tls, cdn: Cdn) -> None:
    # An allow-list suffix may match any number of hosts: none is remembered past its copy.
    hosts = [f"cdn{n}.example" for n in range(20)]
    async with _copier(tmp_path, tls, {host: ["127.0.0.1"] for host in [CDN, *hosts]}) as copier:
        assert (await copier.copy(cdn.url(CDN), KEY)).size_bytes == len(SAMPLE)
        for host in hosts:  # the certificate is for CDN only: each fails after connecting
            with pytest.raises(CopyFailed, match="CERTIFICATE_VERIFY_FAILED"):
                await copier.copy(cdn.url(host), KEY)
        assert not copier._pinned.hosts  # the table under test
