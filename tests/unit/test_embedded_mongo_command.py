"""The embedded database's command line: journaled only where a run kills it mid-write."""

from __future__ import annotations

from reelflow_devtools.embedded_mongo import mongo_command


def test_only_a_journaled_server_syncs_every_commit_to_disk() -> None:
    plain = mongo_command("/data", 27017)
    journaled = mongo_command("/data", 27017, journaled=True)

    assert "--sync-on-commit" not in plain
    assert journaled == [*plain, "--sync-on-commit"]
    assert plain[plain.index("--storage-path") + 1] == "/data"
    assert plain[plain.index("--port") + 1] == "27017"
