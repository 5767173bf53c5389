"""Start the embedded, MongoDB-wire-compatible SecantusDB server as a child process.

Used by ``make run`` (data in a local folder) and by the tests (data in a temporary
folder) when no ``REELFLOW_MONGO_URL`` is given. Production uses real MongoDB.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from reelflow_devtools.ports import free_port, release_port
from reelflow_devtools.processes import Child, ProcessGroup, spawn
from reelflow_devtools.waiting import poll_until

#: the embedded server's name among a launcher's children (and its log's)
MONGODB = "mongo"


class EmbeddedMongoError(RuntimeError):
    """The embedded MongoDB did not start."""


def _server_command() -> list[str]:
    """SecantusDB's Python server, with reelflow's fixes (:mod:`reelflow_devtools.secantusd`).

    A server this interpreter cannot import (one on the PATH only) runs as it is.
    """
    if importlib.util.find_spec("secantus") is not None:
        return [sys.executable, "-m", "reelflow_devtools.secantusd"]
    found = shutil.which("secantusd-py")
    if not found:
        raise EmbeddedMongoError("secantusd-py not found: install the dev dependencies (make run)")
    return [found]


def mongo_command(storage_path: Path | str, port: int, *, journaled: bool = False) -> list[str]:
    """The command line of SecantusDB serving ``storage_path`` on ``port``.

    ``journaled``: every commit reaches the journal on disk before it is
    acknowledged (``--sync-on-commit``), as reelflow's majority writes do on the
    production replica set (``writeConcernMajorityJournalDefault``). Without it
    SecantusDB hands a commit's journal record to a log buffer and answers: a
    SIGKILL a moment later loses a write the client was told about (the chaos
    run saw a created project answer 404 after the database was killed). Only
    the chaos run kills the database mid-write and needs it; it costs an fsync
    per commit.

    ``--standalone``: the server does not call itself a single-node replica set,
    which (its own ``server.py``) also turns its oplog off. Nothing in reelflow
    reads an oplog (no change streams, no transactions), yet with it on every
    update made the server diff the old and new document field by field and
    write the diff (a 50-scene project has ~500 fields): 40-60 % of the
    database's CPU per clip at 50 scenes. The drivers then see a standalone
    server and send no retryable-write ``txnNumber`` (so the server keeps no
    registry of them); a write whose reply a dropped connection loses surfaces
    as an error instead of being retried once, which reelflow's handlers
    already treat as any other failed write (redelivery, idempotency key).
    ``w: "majority"`` and majority reads are accepted as on a replica set.
    Production runs a real replica set (see docs/ARCHITECTURE.md).
    """
    return [
        *_server_command(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(storage_path),
        "--log-level",
        "WARNING",
        "--standalone",
        *(["--sync-on-commit"] if journaled else []),
    ]


def mongo_url(port: int) -> str:
    return f"mongodb://127.0.0.1:{port}/"


def wait_until_answering(url: str, *, deadline_s: float, child: Child) -> None:
    """Ping until the server answers, its process dies, or the deadline passes."""

    def answers() -> bool | None:
        client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=500)
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            return None
        finally:
            client.close()

    poll_until(
        answers,
        what=f"embedded MongoDB to answer at {url}",
        deadline_s=deadline_s,
        pause_s=0.1,
        error=EmbeddedMongoError,
        child=child,
    )


def _stop(process: subprocess.Popen[bytes], port: int, *, deadline_s: float = 15) -> None:
    """SIGTERM, then wait for the server to close its storage; SIGKILL past the deadline.

    SecantusDB stops by closing its listening socket and joining its accept
    thread for up to 2 s, but a close does not wake a thread blocked in
    ``accept()`` on Linux: each stop took those 2 s. A connection does wake it,
    so the server is knocked on until it has exited (one that arrives before
    the stop begins is just a client that hangs up).
    """
    process.terminate()
    stop_at = time.monotonic() + deadline_s
    while time.monotonic() < stop_at:
        try:
            process.wait(timeout=0.1)
            return
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    process.kill()
    process.wait()


@contextmanager
def embedded_mongo(
    storage_path: Path | str,
    *,
    port: int | None = None,
    log_path: Path | None = None,
    group: ProcessGroup | None = None,
) -> Iterator[str]:
    """Run SecantusDB on ``port`` (a free one if None); yield its MongoDB URL.

    ``group``: the server is its child ``mongo`` (its log the group's ``mongo.log``), so
    whoever watches the group's children sees it die; stopped here all the same.
    """
    picked = port is None
    port = port or free_port()
    argv = mongo_command(storage_path, port)
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    if group is not None:
        child = group.start(MONGODB, argv, {})
    else:
        child = Child(MONGODB, spawn(argv, output=log), log_path)
    process = child.process
    url = mongo_url(port)
    try:
        wait_until_answering(url, deadline_s=60, child=child)
        yield url
    finally:
        _stop(process, port)
        if picked:
            release_port(port)
        if log_path and log is not subprocess.DEVNULL:
            log.close()  # type: ignore[union-attr]
