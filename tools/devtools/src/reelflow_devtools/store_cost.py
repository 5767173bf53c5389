"""What the hot path of the project store costs the embedded database, per clip, by project size.

``python -m reelflow_devtools.store_cost [--clips 300] [--sizes 1,10,50] [--rounds 2]``

On a fresh embedded SecantusDB started as the benchmark starts it (with the
``_id`` point-lookup fix, ``--standalone``), it creates about ``--clips`` clips
as projects of each size through :class:`ProjectStore`, then moves every clip
the way the services do: ``mark_processing`` (the submitter) for every clip,
then ``record`` of a success (the poller), which also finishes each project.
It prints the clips per second of those two steps and the server process's CPU
per clip (user + system, from /proc), for the creates and for the changes, and
the fields of one finished clip entry as stored. No broker, no services: only
the store's own writes, so a change of the document's shape shows on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from reelflow_common.domain import ClipRequest
from reelflow_common.mongo import Document
from reelflow_common.store import NewProject, ProjectStore
from reelflow_common.store.models import TaskSucceeded
from reelflow_devtools.bench.launcher import cpu_seconds, embedded_mongo_pid
from reelflow_devtools.connections import mongo
from reelflow_devtools.embedded_mongo import embedded_mongo

#: clips moved at once, as replicas of the submitter and the poller would
CONCURRENCY = 16


def field_paths(doc: Document, prefix: str = "") -> Iterator[str]:
    """Every field of ``doc``, nested ones by their dotted path (a subdocument and its fields)."""
    for key, value in doc.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, dict):
            yield from field_paths(value, f"{path}.")


async def _in_parallel(jobs: list[Callable[[], Awaitable[Any]]]) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(job: Callable[[], Awaitable[Any]]) -> None:
        async with gate:
            await job()

    await asyncio.gather(*(one(job) for job in jobs))


async def run_size(url: str, database: str, size: int, clips: int) -> dict[str, Any]:
    """Create ``clips`` clips as projects of ``size`` scenes, process each, measure."""
    # A longer budget than a tool's usual: the largest projects' writes, many at once.
    async with mongo(url, timeout_s=60) as client:
        db = client[database]
        store = ProjectStore(db)
        await store.ensure_indexes()
        pid = embedded_mongo_pid(url)
        assert pid is not None, "the embedded server's process was not found"
        scenes = [
            ClipRequest(prompt=f"scene {j}: a harbour at dusk", duration=4, width=1280, height=720)
            for j in range(size)
        ]
        count = -(-clips // size)
        began_cpu = cpu_seconds(pid) or 0.0
        made = [
            (
                await store.create(
                    NewProject(tenant_id="t", title=f"p{n}", model="m:1@1", scenes=scenes)
                )
            ).project
            for n in range(count)
        ]
        created_cpu = cpu_seconds(pid) or 0.0
        chains = [(project, clip) for project in made for clip in project.clips]
        # Scenes of one project interleaved with the others', as submits arrive.
        chains.sort(key=lambda chain: (chain[1].scene_index, chain[0].id))
        began = time.perf_counter()

        def submitted(project_id: str, scene: int, task: str, token: str) -> Callable[[], Any]:
            return lambda: store.mark_processing(project_id, scene, task, token=token)

        def succeeded(project_id: str, scene: int, task: str) -> Callable[[], Any]:
            video = TaskSucceeded(video_url=f"https://vm.example/{task}.mp4", video_uuid=task)
            return lambda: store.record(project_id, scene, task, video)

        await _in_parallel(
            [
                submitted(p.id, c.scene_index, c.task_uuid, c.lease.token if c.lease else "")
                for p, c in chains
            ]
        )
        await _in_parallel([succeeded(p.id, c.scene_index, c.task_uuid) for p, c in chains])
        wall_s = time.perf_counter() - began
        changed_cpu = cpu_seconds(pid) or 0.0
        done = await db.projects.find_one({"_id": made[0].id})
        assert done is not None
        assert done["status"] == "completed", done["status"]
        n = len(chains)
        clip = done["clips"]["0"]
        return {
            "size": size,
            "clips": n,
            "clips_per_s": round(n / wall_s, 1),
            "db_ms_per_clip_changes": round((changed_cpu - created_cpu) / n * 1000, 2),
            "db_ms_per_clip_create": round((created_cpu - began_cpu) / n * 1000, 2),
            "clip_fields": list(field_paths(clip)),
            "document_fields": sum(1 for _ in field_paths(done)),
        }


async def main(clips: int, sizes: list[int], rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="store-cost-") as data, embedded_mongo(data) as url:
        for round_ in range(rounds):
            for size in sizes:
                found = await run_size(url, f"store_cost_{round_}_{size}", size, clips)
                fields = found.pop("clip_fields")
                print(
                    f"round {round_} size {size:>2}: {found['clips']} clips "
                    f"{found['clips_per_s']:>6} clips/s  DB CPU/clip: changes "
                    f"{found['db_ms_per_clip_changes']:>5} ms, create "
                    f"{found['db_ms_per_clip_create']:>5} ms  fields: clip {len(fields)}, "
                    f"document {found['document_fields']}",
                    flush=True,
                )
        print("a finished clip's fields:", ", ".join(fields))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive whole number")
    return value


def _sizes(text: str) -> list[int]:
    try:
        return [_positive(size) for size in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of whole numbers"
        ) from exc


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; every count is positive, so each round measures at least one clip."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--clips", type=_positive, default=300, help="clips per size (whole projects)"
    )
    parser.add_argument(
        "--sizes", type=_sizes, default=[1, 10, 50], help="scenes per project, comma-separated"
    )
    parser.add_argument("--rounds", type=_positive, default=2, help="runs of every size, in turn")
    return parser.parse_args(argv)


def run() -> None:
    args = parse_args()
    asyncio.run(main(args.clips, args.sizes, args.rounds))


if __name__ == "__main__":
    run()
