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


#: IPv6 prefixes followed by an IPv4 address in the last 32 bits, where packets end up:
#: NAT64's well-known prefix (RFC 6052) and IPv4-compatible addresses (RFC 4291, deprecated)
_IPV4_IN_LAST_32_BITS = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("::/96"))
#: NAT64's local-use prefix (RFC 8215): where its IPv4 address sits depends on the prefix
#: length a network chose, and it leads only to that network's own translator: never public
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")


def is_public(address: str) -> bool:
    """Whether ``address`` is on the public internet (not private, loopback, link-local, …),
    and so is every IPv4 address it leads to (6to4, Teredo, NAT64, IPv4-compatible)."""
    ip = ipaddress.ip_address(address.partition("%")[0])  # an IPv6 scope (fe80::1%eth0)
    if isinstance(ip, ipaddress.IPv4Address):
        return _global(ip)
    if ip.ipv4_mapped is not None:  # an IPv4 address, written in IPv6
        return _global(ip.ipv4_mapped)
    if ip.is_site_local or ip in _NAT64_LOCAL_USE:
        return False
    return _global(ip) and all(_global(inner) for inner in _carried_ipv4(ip))


def _carried_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses ``ip`` leads to: 6to4's, Teredo's server and client, the one after
    NAT64's well-known prefix or in an IPv4-compatible address; none for any other."""
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    if any(ip in prefix for prefix in _IPV4_IN_LAST_32_BITS):
        return [ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)]
    return []


def _global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not ip.is_multicast
