"""Which addresses a video may be fetched from: a host's addresses, and whether each is public."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

#: a host's addresses (as strings) for a port
Resolve = Callable[[str, int], Awaitable[list[str]]]


async def resolve_host(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, as the system's resolver answers."""
    answers = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(sockaddr[0]) for *_, sockaddr in answers]


def is_public(address: str) -> bool:
    """Whether ``address`` is on the public internet (not private, loopback, link-local, …)."""
    ip = ipaddress.ip_address(address.partition("%")[0])  # an IPv6 scope (fe80::1%eth0)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast
