"""Database operations as the server counts them: the admin ``top`` command, per namespace.

One implementation for the benchmark and the e2e test of issue 8's "operations per
clip". ``top`` counts round trips (a ``bulk_write`` of many updates is one ``update``,
a ``find_one_and_update`` one of ``commands``), per collection and per kind.
"""

from __future__ import annotations

from collections.abc import Mapping

from reelflow_devtools.connections import mongo

#: the kinds ``top`` counts, besides its ``total``
KINDS = ("insert", "queries", "update", "remove", "getmore", "commands")

Counters = dict[str, dict[str, int]]  # collection -> kind (and "total") -> operations


async def operations(mongo_url: str, database: str) -> Counters:
    """What the server has counted so far, per collection of ``database``."""
    async with mongo(mongo_url) as client:
        top = await client.admin.command("top")
    prefix = f"{database}."
    return {
        namespace.removeprefix(prefix): {
            kind: int(counters.get(kind, {}).get("count", 0)) for kind in (*KINDS, "total")
        }
        for namespace, counters in top["totals"].items()
        if namespace.startswith(prefix)
    }


def spent(before: Counters, after: Counters) -> Counters:
    """The operations between two readings, collections that did none left out."""
    found: Counters = {}
    for collection, counts in after.items():
        earlier: Mapping[str, int] = before.get(collection, {})
        delta = {kind: count - earlier.get(kind, 0) for kind, count in counts.items()}
        if delta.get("total"):
            found[collection] = delta
    return found


def total(counters: Counters, kind: str = "total") -> int:
    """One kind of operation summed over every collection."""
    return sum(counts.get(kind, 0) for counts in counters.values())
