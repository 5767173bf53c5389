"""The task-queue baseline: reelflow's job done the straightforward way, for ``make bench``.

What issue 8 compares reelflow with: an HTTP endpoint that inserts one project
document with its clips and publishes one submit task per clip; workers that
submit each clip to Runware, then poll it with a task that reschedules itself on
the Runware SDK's schedule (1 s, then 0.5 s x1.5, capped at 10 s) through
per-queue-TTL wait queues; and, when the task ends, one update of the clip in the
project document (``$set`` its fields, ``$inc`` the counts). Written as a
competent engineer would in an afternoon, on FastAPI, aio-pika, pymongo and
aiohttp and Runware's wire protocol: nothing of reelflow's own libraries. What it
leaves out (leases, fair share, a reconciler, ...) is in docs/BENCHMARKS.md,
"The task-queue baseline".

``python -m reelflow_devtools.bench.task_queue api|worker``, configured by ``TQ_*``
variables (:class:`Config`); :mod:`reelflow_devtools.bench.task_queue_run` starts it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiohttp
import uvicorn
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage
from aiormq.abc import FieldTable
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

#: the Runware SDK's polling schedule (docs/RUNWARE.md), in provider seconds
SDK_FIRST_S, SDK_SECOND_S, SDK_BACKOFF, SDK_CAP_S = 1.0, 0.5, 1.5, 10.0
#: submits tried in all when Runware cannot be reached or answers 429/5xx
SUBMIT_ATTEMPTS = 5
PROJECT_FINISHED = "project.finished"
QUORUM: FieldTable = {"x-queue-type": "quorum"}
Document = dict[str, Any]


@dataclass(frozen=True)
class Config:
    """Everything from the environment (``TQ_<FIELD>``)."""

    amqp_url: str
    mongo_url: str
    database: str
    runware_url: str
    runware_api_key: str
    #: the simulator's speedup: the SDK's schedule is divided by it, as reelflow's is
    speedup: float = 1.0
    prefix: str = ""
    port: int = 0
    #: deliveries in flight per worker, as reelflow's submitter and poller default to
    #: (``submit_concurrency``, ``poll_concurrency``)
    submit_prefetch: int = 16
    poll_prefetch: int = 32
    model: str = "google:3@3"

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ
        return cls(
            amqp_url=env["TQ_AMQP_URL"],
            mongo_url=env["TQ_MONGO_URL"],
            database=env["TQ_DATABASE"],
            runware_url=env["TQ_RUNWARE_URL"],
            runware_api_key=env["TQ_RUNWARE_API_KEY"],
            speedup=float(env.get("TQ_SPEEDUP", "1")),
            prefix=env.get("TQ_PREFIX", ""),
            port=int(env.get("TQ_PORT", "0")),
            submit_prefetch=int(env.get("TQ_SUBMIT_PREFETCH", "16")),
            poll_prefetch=int(env.get("TQ_POLL_PREFETCH", "32")),
        )

    def env(self) -> dict[str, str]:
        """The variables :meth:`from_env` reads back."""
        return {
            "TQ_AMQP_URL": self.amqp_url,
            "TQ_MONGO_URL": self.mongo_url,
            "TQ_DATABASE": self.database,
            "TQ_RUNWARE_URL": self.runware_url,
            "TQ_RUNWARE_API_KEY": self.runware_api_key,
            "TQ_SPEEDUP": f"{self.speedup:g}",
            "TQ_PREFIX": self.prefix,
            "TQ_PORT": str(self.port),
            "TQ_SUBMIT_PREFETCH": str(self.submit_prefetch),
            "TQ_POLL_PREFETCH": str(self.poll_prefetch),
        }


# --- names and topology ----------------------------------------------------------------


@dataclass(frozen=True)
class Names:
    prefix: str

    @property
    def submit(self) -> str:
        return f"{self.prefix}tq.submit"

    @property
    def poll(self) -> str:
        return f"{self.prefix}tq.poll"

    @property
    def events(self) -> str:
        return f"{self.prefix}tq.events"

    def wait(self, queue: str, delay_ms: int) -> str:
        return f"{queue}.wait.{delay_ms}ms"


def poll_delays_ms(speedup: float) -> list[int]:
    """The SDK's wait before each poll, divided by ``speedup``; the last one repeats."""
    delays, delay = [SDK_FIRST_S], SDK_SECOND_S
    while delay < SDK_CAP_S:
        delays.append(delay)
        delay = min(delay * SDK_BACKOFF, SDK_CAP_S)
    delays.append(SDK_CAP_S)
    return [max(1, round(seconds * 1000 / speedup)) for seconds in delays]


def submit_retry_ms(speedup: float) -> int:
    return max(1, round(SDK_FIRST_S * 1000 / speedup))


def queue_names(config: Config) -> list[str]:
    """Every queue :func:`declare` makes (for deleting them again)."""
    names = Names(config.prefix)
    waits = [names.wait(names.poll, ms) for ms in sorted(set(poll_delays_ms(config.speedup)))]
    return [
        names.submit,
        names.poll,
        names.wait(names.submit, submit_retry_ms(config.speedup)),
        *waits,
    ]


async def declare(channel: AbstractChannel, config: Config) -> None:
    """Work queues, wait queues that dead-letter into them when their TTL ends, the events."""
    names = Names(config.prefix)
    await channel.declare_exchange(names.events, aio_pika.ExchangeType.TOPIC, durable=True)
    for queue in (names.submit, names.poll):
        await channel.declare_queue(queue, durable=True, arguments=QUORUM)
    waits = [(names.submit, submit_retry_ms(config.speedup))]
    waits += [(names.poll, ms) for ms in sorted(set(poll_delays_ms(config.speedup)))]
    for target, delay_ms in waits:
        arguments: FieldTable = {
            **QUORUM,
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": target,
        }
        await channel.declare_queue(names.wait(target, delay_ms), durable=True, arguments=arguments)


async def delete_topology(channel: AbstractChannel, config: Config) -> None:
    """Every queue and the exchange :func:`declare` makes."""
    for name in queue_names(config):
        await channel.queue_delete(name)
    await channel.exchange_delete(Names(config.prefix).events)


async def publish(channel: AbstractChannel, routing_key: str, body: Document) -> None:
    """A persistent message on the default exchange, confirmed by the broker."""
    message = aio_pika.Message(
        json.dumps(body).encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    await channel.default_exchange.publish(message, routing_key=routing_key)


def _now() -> datetime:
    return datetime.now(UTC)


# --- the API ---------------------------------------------------------------------------


class SceneIn(BaseModel):
    prompt: str = Field(min_length=2, max_length=2000)
    duration: float = Field(default=4, gt=0, le=60)
    width: int = Field(default=1280, ge=64, le=4096)
    height: int = Field(default=720, ge=64, le=4096)


class ProjectIn(BaseModel):
    title: str = Field(default="", max_length=500)
    model: str | None = None
    scenes: list[SceneIn] = Field(min_length=1, max_length=50)


def create_app(config: Config) -> FastAPI:
    """``POST /v1/projects``, ``GET /v1/projects/{id}``, ``GET /healthz``."""
    names = Names(config.prefix)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        mongo: AsyncMongoClient[Document] = AsyncMongoClient(config.mongo_url)
        connection = await aio_pika.connect_robust(config.amqp_url)
        channel = await connection.channel(publisher_confirms=True)
        await declare(channel, config)
        app.state.projects = mongo[config.database]["projects"]
        app.state.channel = channel
        try:
            yield
        finally:
            await connection.close()
            await mongo.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/projects", status_code=202)
    async def create_project(body: ProjectIn) -> Document:
        now, project_id, model = _now(), uuid.uuid4().hex, body.model or config.model
        clips = [
            {
                "task_uuid": str(uuid.uuid4()),
                "status": "queued",
                "prompt": scene.prompt,
                "duration": scene.duration,
                "width": scene.width,
                "height": scene.height,
                "video_url": None,
                "cost": None,
                "error": None,
                "completed_at": None,
            }
            for scene in body.scenes
        ]
        await app.state.projects.insert_one(
            {
                "_id": project_id,
                "title": body.title,
                "model": model,
                "status": "generating",
                "counts": {"total": len(clips), "pending": len(clips), "completed": 0, "failed": 0},
                "clips": clips,
                "created_at": now,
                "updated_at": now,
                "finished_at": None,
            }
        )
        await asyncio.gather(
            *(
                publish(app.state.channel, names.submit, _submit_task(project_id, i, clip, model))
                for i, clip in enumerate(clips)
            )
        )
        return {"project_id": project_id, "status": "generating"}

    @app.get("/v1/projects/{project_id}")
    async def get_project(project_id: str) -> Document:
        found: Document | None = await app.state.projects.find_one({"_id": project_id})
        if found is None:
            raise HTTPException(404, "no such project")
        return found

    @app.get("/healthz")
    async def healthz() -> Document:
        return {"ok": True}

    return app


def _submit_task(project_id: str, index: int, clip: Document, model: str) -> Document:
    return {
        "project_id": project_id,
        "index": index,
        "task_uuid": clip["task_uuid"],
        "model": model,
        "prompt": clip["prompt"],
        "duration": clip["duration"],
        "width": clip["width"],
        "height": clip["height"],
        "attempt": 0,
    }


# --- the workers -----------------------------------------------------------------------


class RunwareUnavailable(Exception):
    """Runware could not be reached, or answered 429 or 5xx: worth asking again."""


class Worker:
    """Consumes both the submit and the poll queue (any worker runs any task)."""

    def __init__(
        self,
        config: Config,
        channel: AbstractChannel,
        projects: AsyncCollection[Document],
        http: aiohttp.ClientSession,
        events: AbstractExchange,
    ) -> None:
        self.config = config
        self.events = events
        self.names = Names(config.prefix)
        self.channel = channel
        self.projects = projects
        self.http = http
        self.delays_ms = poll_delays_ms(config.speedup)

    async def runware(self, task: Document) -> Document:
        """One task to Runware; its answer's item for the task (``data`` or ``errors``)."""
        try:
            async with self.http.post(
                f"{self.config.runware_url}/v1",
                json=[task],
                headers={"Authorization": f"Bearer {self.config.runware_api_key}"},
            ) as answer:
                if answer.status == 429 or answer.status >= 500:
                    raise RunwareUnavailable(f"HTTP {answer.status}")
                body: Document = await answer.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise RunwareUnavailable(repr(exc)) from exc
        for item in body.get("errors") or []:
            if item.get("taskUUID") in (task["taskUUID"], None):
                return {"status": "error", **item}
        for item in body.get("data") or []:
            if item.get("taskUUID") == task["taskUUID"]:
                return dict(item)
        return {"status": "processing"}

    async def on_submit(self, message: AbstractIncomingMessage) -> None:
        async with message.process(requeue=True):
            job = json.loads(message.body)
            task = {
                "taskType": "videoInference",
                "taskUUID": job["task_uuid"],
                "deliveryMethod": "async",
                "includeCost": True,
                "outputType": "URL",
                "outputFormat": "MP4",
                "numberResults": 1,
                "model": job["model"],
                "positivePrompt": job["prompt"],
                "duration": job["duration"],
                "width": job["width"],
                "height": job["height"],
            }
            try:
                item = await self.runware(task)
            except RunwareUnavailable as exc:
                if job["attempt"] + 1 < SUBMIT_ATTEMPTS:
                    wait = self.names.wait(self.names.submit, submit_retry_ms(self.config.speedup))
                    await publish(self.channel, wait, job | {"attempt": job["attempt"] + 1})
                else:
                    await self.finish(job, {"status": "error", "message": str(exc)})
                return
            if item.get("status") == "error" and item.get("code") != "conflictTaskUUID":
                await self.finish(job, item)
                return
            poll = {key: job[key] for key in ("project_id", "index", "task_uuid")}
            await self.schedule_poll(poll | {"polls": 0})

    async def schedule_poll(self, job: Document) -> None:
        delay_ms = self.delays_ms[min(job["polls"], len(self.delays_ms) - 1)]
        await publish(self.channel, self.names.wait(self.names.poll, delay_ms), job)

    async def on_poll(self, message: AbstractIncomingMessage) -> None:
        async with message.process(requeue=True):
            job = json.loads(message.body)
            try:
                item = await self.runware({"taskType": "getResponse", "taskUUID": job["task_uuid"]})
            except RunwareUnavailable:
                item = {"status": "processing"}
            if item.get("status") in ("success", "error"):
                await self.finish(job, item)
            else:
                await self.schedule_poll(job | {"polls": job["polls"] + 1})

    async def finish(self, job: Document, item: Document) -> None:
        """The clip's end into the project document; the project's too, after its last clip."""
        now, clip = _now(), f"clips.{job['index']}"
        ok = item.get("status") == "success"
        changes: Document = {f"{clip}.status": "success" if ok else "failed"}
        changes[f"{clip}.completed_at"] = now
        if ok:
            changes[f"{clip}.video_url"] = item.get("videoURL")
            changes[f"{clip}.cost"] = item.get("cost")
        else:
            changes[f"{clip}.error"] = {"code": item.get("code"), "message": item.get("message")}
        counts = await self.projects.find_one_and_update(
            # A redelivered poll must not count the clip twice.
            {"_id": job["project_id"], f"{clip}.status": {"$nin": ["success", "failed"]}},
            {
                "$set": changes | {"updated_at": now},
                "$inc": {"counts.pending": -1, f"counts.{'completed' if ok else 'failed'}": 1},
            },
            projection={"counts": 1},
            return_document=ReturnDocument.AFTER,
        )
        if counts is None or counts["counts"]["pending"] > 0:
            return
        done = counts["counts"]
        status = (
            "completed" if not done["failed"] else "failed" if not done["completed"] else "partial"
        )
        await self.projects.update_one(
            {"_id": job["project_id"]}, {"$set": {"status": status, "finished_at": now}}
        )
        event = aio_pika.Message(
            json.dumps({"project_id": job["project_id"], "status": status}).encode(),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self.events.publish(event, routing_key=PROJECT_FINISHED)


async def run_worker(config: Config, stop: asyncio.Event) -> None:
    """Consume both queues until ``stop`` is set."""
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(config.mongo_url)
    connection = await aio_pika.connect_robust(config.amqp_url)
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        channel = await connection.channel(publisher_confirms=True)
        await declare(channel, config)
        names = Names(config.prefix)
        events = await channel.get_exchange(names.events)
        worker = Worker(config, channel, mongo[config.database]["projects"], http, events)
        # A channel's prefetch applies to each consumer started after it is set.
        await channel.set_qos(prefetch_count=config.submit_prefetch)
        await (await channel.get_queue(names.submit)).consume(worker.on_submit)
        await channel.set_qos(prefetch_count=config.poll_prefetch)
        await (await channel.get_queue(names.poll)).consume(worker.on_poll)
        await stop.wait()
    finally:
        await connection.close()
        await http.close()
        await mongo.close()


async def _worker_until_sigterm(config: Config) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await run_worker(config, stop)


def main(argv: list[str] | None = None) -> None:
    role = (sys.argv[1:] if argv is None else argv)[:1]
    config = Config.from_env()
    if role == ["api"]:
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(config),
                host="127.0.0.1",
                port=config.port,
                log_level="warning",
                access_log=False,
            )
        )
        server.run()
    elif role == ["worker"]:
        asyncio.run(_worker_until_sigterm(config))
    else:
        raise SystemExit("usage: python -m reelflow_devtools.bench.task_queue api|worker")


if __name__ == "__main__":
    main()
