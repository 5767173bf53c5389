"""The embedded SecantusDB learns a database's profiling level without its global lock.

Stock secantusdb reads the level from its settings table under the server's lock
after every command: see :mod:`reelflow_devtools.secantusd_profile_level`. The
fix must profile exactly as the stock server does, every change of level taking
effect at the next command.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from reelflow_common.mongo import Document
from reelflow_devtools import secantusd_profile_level
from reelflow_devtools.embedded_mongo import embedded_mongo
from reelflow_devtools.secantusd import WITHOUT_ENV
from tests.fixtures.secantus_stores import opened_stores

pytestmark = pytest.mark.integration

#: settings to apply in turn, each to a database ("bad": refused by the server)
STEPS: list[tuple[str, dict[str, Any]]] = [
    ("a", {"level": 2, "slowms": 5, "sample_rate": 0.5}),
    ("b", {"level": 1}),
    ("a", {"level": 0, "slowms": 0, "sample_rate": 0.0}),
    ("a", {"level": 3}),  # bad
    ("b", {"level": 1, "slowms": -1}),  # bad
    ("a", {"level": 1, "slowms": 250, "sample_rate": 1.0}),
    ("b", {"level": 0}),
]


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    from secantus import storage

    with opened_stores(tmp_path, lambda path: storage.Storage(str(path))) as open_store:
        yield open_store


@pytest.fixture
def install_fix(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    from secantus import storage

    # the fix is a class patch: undone after the test, as the rest of this process expects
    for name in ("get_profile", "set_profile"):
        monkeypatch.setattr(storage.Storage, name, getattr(storage.Storage, name))

    def install() -> None:
        assert secantusd_profile_level.install()

    return install


def _apply(store: Any, db: str, settings: dict[str, Any]) -> str:
    try:
        store.set_profile(db, **settings)
    except ValueError as exc:
        return f"refused: {exc}"
    return "set"


def _all_settings(store: Any) -> dict[str, Any]:
    return {db: store.get_profile(db) for db in ("a", "b", "never")}


def _history(store: Any) -> list[Any]:
    """What each step answers, and every database's settings after it."""
    history: list[Any] = [_all_settings(store)]
    for db, settings in STEPS:
        history += [_apply(store, db, settings), _all_settings(store)]
    return history


def test_the_fix_keeps_what_the_stock_server_reads(
    stores: Callable[[str], Any], install_fix: Callable[[], None], tmp_path: Path
) -> None:
    from secantus import storage

    expected = _history(stores("stock"))
    install_fix()

    fixed = stores("fixed")
    assert _history(fixed) == expected
    # what it kept is what the table holds: a server opened on it anew reads the same
    fixed.close()
    reopened = storage.Storage(str(tmp_path / "fixed"))
    try:
        assert _all_settings(reopened) == expected[-1]
    finally:
        reopened.close()


class CountingLock:
    """The server's lock, counting how often it is taken."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self.taken = 0

    def __enter__(self) -> Any:
        self.taken += 1
        return self._lock.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._lock.__exit__(*exc)

    def acquire(self, *args: Any, **kwargs: Any) -> Any:
        self.taken += 1
        return self._lock.acquire(*args, **kwargs)

    def release(self) -> None:
        self._lock.release()


def _locks_taken(store: Any, reads: int) -> int:
    lock = store._lock = CountingLock(store._lock)
    for _ in range(reads):
        assert store.get_profile("reelflow")["level"] == 0
    return lock.taken


def test_a_database_s_level_is_read_without_the_lock_once_known(
    stores: Callable[[str], Any], install_fix: Callable[[], None]
) -> None:
    assert _locks_taken(stores("stock"), reads=10) == 10
    install_fix()

    assert _locks_taken(stores("fixed"), reads=10) == 1  # the first read, from the table


def test_a_level_set_meanwhile_is_never_replaced_by_a_read_that_began_before_it(
    stores: Callable[[str], Any], install_fix: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    from secantus import storage

    stock_read = storage.Storage.get_profile
    read, written = threading.Event(), threading.Event()

    def first_read_outrun(self: Any, db: str) -> Any:
        """The table read as the stock server reads it; the reader's thread then waits
        for a set to come and go before it keeps what it read."""
        found = stock_read(self, db)
        if threading.current_thread() is not threading.main_thread():
            read.set()
            assert written.wait(timeout=30), "the set did not come"
        return found

    monkeypatch.setattr(storage.Storage, "get_profile", first_read_outrun)
    install_fix()
    store = stores("race")
    levels: list[int] = []
    reader = threading.Thread(target=lambda: levels.append(store.get_profile("a")["level"]))
    reader.start()
    assert read.wait(timeout=30), "the first read did not happen"
    store.set_profile("a", level=2)
    written.set()
    reader.join(timeout=30)

    # that read found level 0 in the table, but the set came first to keep its level
    assert levels == [2]
    assert store.get_profile("a")["level"] == 2


def _observed(url: str) -> list[Any]:
    """What a client sees of profiling: levels answered, commands recorded, at each step."""
    client: MongoClient[Document] = MongoClient(url)
    try:
        db = client.reelflow
        seen: list[Any] = [db.command("profile", -1)["was"]]

        def recorded_after(marker: str) -> list[str]:
            db.things.find_one({"marker": marker})
            entries = db["system.profile"].find({"command.filter.marker": marker})
            return [entry["op"] for entry in entries]

        levels: list[Document] = [
            {"profile": 2},
            {"profile": 0},
            {"profile": 1, "slowms": 0},  # every command: none is faster than 0 ms
            {"profile": 1, "slowms": 100_000},
            {"profile": 0},
        ]
        for command in levels:
            seen.append(db.command(command)["was"])
            seen.append(recorded_after(repr(command)))
        seen.append(db.command("profile", -1))
        return seen
    finally:
        client.close()


def test_the_dev_server_profiles_as_the_stock_server_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WITHOUT_ENV, "secantusd_profile_level")
    with embedded_mongo(tmp_path / "stock") as url:
        stock = _observed(url)
    monkeypatch.delenv(WITHOUT_ENV)
    with embedded_mongo(tmp_path / "fixed") as url:
        fixed = _observed(url)

    assert fixed == stock
    # on at once, off at once; at level 1 only what is slower than slowms
    assert fixed[:-1] == [0, 0, ["query"], 2, [], 0, ["query"], 1, [], 1, []]
