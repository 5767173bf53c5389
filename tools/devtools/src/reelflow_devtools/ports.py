"""Ports for the servers a test stack, ``make run --free-ports`` or the benchmark start.

A port picked now is bound a moment later by another process (a service, the
embedded MongoDB, a RabbitMQ node), and is bound again when that process is
restarted on it. Two things could take it in between:

- an outgoing connection of this machine (a test's to RabbitMQ, say) taking it as
  its local port: ports are picked below the kernel's ephemeral range, which
  outgoing connections never leave;
- another process picking the same port for its own server (two pytest workers'
  stacks, seen in CI as "address already in use" at a stack's start): each port
  handed out is reserved, an exclusive ``flock`` on a file named after it in one
  folder of the machine's temporary directory (one per user: another user's
  folder is not ours to write), until :func:`release_port` or the picking
  process's exit (the kernel drops the lock then, however it ends). A reserved
  port is never handed out again while its reservation holds.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
from pathlib import Path

#: where the kernel takes the local ports of outgoing connections (Linux's default)
_EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: the lowest port :func:`free_port` hands out
_LOWEST_PORT = 10_000
#: one lock file per port reserved by any process of this machine
RESERVATIONS = Path(tempfile.gettempdir()) / f"reelflow-ports-{os.getuid()}"

#: port -> the open lock file holding its reservation, in this process
_held: dict[int, int] = {}


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL_PORTS.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _reserve(port: int) -> bool:
    """Take ``port``'s reservation; False if another process (or this one) holds it."""
    if port in _held:
        return False
    try:
        RESERVATIONS.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(RESERVATIONS / str(port), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError:
        return False  # not ours to reserve (a file another user made): another port
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    _held[port] = fd
    return True


def release_port(port: int) -> None:
    """Let other processes pick ``port`` again (its server has stopped for good)."""
    fd = _held.pop(port, None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor drops the lock


def _listenable(port: int, *, reuse_address: bool = False) -> bool:
    with socket.socket() as sock:
        if reuse_address:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def hold_port(port: int) -> bool:
    """Reserve ``port`` for this process's server, as :func:`free_port` reserves the ports
    it hands out; False when another process holds it or something listens on it.

    For a server that binds as uvicorn does (``SO_REUSEADDR``): a port whose last
    connections are in TIME_WAIT, as when its server has just stopped, is free.
    """
    return _hold(port, reuse_address=True)


def _hold(port: int, *, reuse_address: bool) -> bool:
    if not _reserve(port):
        return False
    if _listenable(port, reuse_address=reuse_address):
        return True
    release_port(port)  # some server of another kind has it
    return False


def free_port() -> int:
    """A port nothing listens on now and no other process has been handed, reserved for
    this process's server until :func:`release_port` or this process's exit."""
    low = _ephemeral_low()
    if low > _LOWEST_PORT:
        for _ in range(100):
            port = random.randrange(_LOWEST_PORT, low)
            if _hold(port, reuse_address=False):
                return port
    with socket.socket() as sock:  # no room below the range: the kernel's pick
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
