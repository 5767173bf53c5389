"""HTTP connections made only to the addresses the copier checked, TLS still checking the name.

The copier looks a video URL's host up itself and checks every address (``copy.py``); the
connection must then go to one of those addresses, whatever a second lookup would answer
(DNS rebinding). An address written into the URL would do that, but httpcore would then
pool connections by address, and check the certificate against the first name only: a
connection made for one host would serve another at the same address. So the URL keeps
its name (the pool, TLS's SNI and the certificate check go by it), and only the network
backend, under them all, turns the name into the checked addresses.

A host is pinned only while a request to it is being sent (a new connection, if the pool
has none to reuse, is made then): every request checks its host again, so an answer kept
longer would never be used, and the table holds no more hosts than copies run at once.
"""

from __future__ import annotations

import ssl
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import httpcore
import httpx

#: the connection pool's bounds, httpx's defaults
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


class PinnedAddresses(httpcore.AsyncNetworkBackend):
    """Connects to a host only at the addresses last checked for it, trying them in order;
    never looks a name up itself.

    Every request is checked, and pins its host's addresses while it is sent, so a new
    connection goes to addresses its own check (or a concurrent one of the same host)
    passed. A host not pinned now is not connected to at all.
    """

    def __init__(self, network: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._network = network or httpcore.AnyIOBackend()
        self._addresses: dict[str, tuple[str, ...]] = {}
        self._holders: Counter[str] = Counter()

    @property
    def hosts(self) -> frozenset[str]:
        """The hosts pinned now."""
        return frozenset(self._addresses)

    @contextmanager
    def pin(self, host: str, addresses: Sequence[str]) -> Iterator[None]:
        """Connect to ``host`` at ``addresses`` (in this order) until the block ends, or
        until another block pins ``host`` again; forget ``host`` when no block holds it."""
        self._addresses[host] = tuple(dict.fromkeys(addresses))
        self._holders[host] += 1
        try:
            yield
        finally:
            self._holders[host] -= 1
            if not self._holders[host]:
                del self._holders[host], self._addresses[host]

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = self._addresses.get(host)
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no checked address to connect to")
        failures: list[str] = []
        for address in addresses:
            try:
                return await self._network.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failures.append(f"{address}: {exc or type(exc).__name__}")
        raise httpcore.ConnectError(f"no address of {host} answered ({'; '.join(failures)})")

    async def sleep(self, seconds: float) -> None:
        await self._network.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, connecting through ``addresses`` (a :class:`PinnedAddresses`).

    ``ssl_context`` checks the servers' certificates; None: httpx's default (certifi's CAs).
    """

    def __init__(
        self, addresses: PinnedAddresses, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        tls = ssl_context or httpx.create_ssl_context()
        super().__init__(verify=tls, limits=_LIMITS)
        # httpx 0.28 takes no network backend (encode/httpx#3180): the pool its __init__
        # made is replaced by the same pool with one (handle_async_request and aclose use it)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls,
            max_connections=_LIMITS.max_connections,
            max_keepalive_connections=_LIMITS.max_keepalive_connections,
            keepalive_expiry=_LIMITS.keepalive_expiry,
            network_backend=addresses,
        )
