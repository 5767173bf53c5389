"""Submit and poll tasks; a clip's end into its project document."""

from __future__ import annotations

import asyncio
import json
import signal
from contextlib import AsyncExitStack

import aio_pika
import aiohttp
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from reelflow_devtools.bench.task_queue.config import (
    SUBMIT_ATTEMPTS,
    Config,
    Document,
)
from reelflow_devtools.bench.task_queue.topology import (
    Names,
    declare,
    now,
    poll_delays_ms,
    publish,
    submit_retry_ms,
)


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
            clip = f"clips.{job['index']}"
            # What a client reads of the project shows the clip generating, as reelflow's does.
            await self.projects.update_one(
                {"_id": job["project_id"], f"{clip}.status": "queued"},
                {"$set": {f"{clip}.status": "processing", f"{clip}.submitted_at": now()}},
            )
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
        at, clip = now(), f"clips.{job['index']}"
        ok = item.get("status") == "success"
        changes: Document = {f"{clip}.status": "success" if ok else "failed"}
        changes[f"{clip}.completed_at"] = at
        if ok:
            changes[f"{clip}.video_url"] = item.get("videoURL")
            changes[f"{clip}.cost"] = item.get("cost")
        else:
            changes[f"{clip}.error"] = {"code": item.get("code"), "message": item.get("message")}
        counts = await self.projects.find_one_and_update(
            # A redelivered poll must not count the clip twice.
            {"_id": job["project_id"], f"{clip}.status": {"$nin": ["success", "failed"]}},
            {
                "$set": changes | {"updated_at": at},
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
            {"_id": job["project_id"]}, {"$set": {"status": status, "finished_at": at}}
        )
        event = aio_pika.Message(
            json.dumps({"project_id": job["project_id"], "status": status}).encode(),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self.events.publish(event, routing_key=Names.project_finished)


async def run_worker(config: Config, stop: asyncio.Event) -> None:
    """Consume both queues until ``stop`` is set."""
    async with AsyncExitStack() as resources:
        mongo: AsyncMongoClient[Document] = AsyncMongoClient(config.mongo_url)
        resources.push_async_callback(mongo.close)
        http = await resources.enter_async_context(
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        )
        # Closed first: no delivery is handled once the session and the client are gone.
        connection = await aio_pika.connect_robust(config.amqp_url)
        resources.push_async_callback(connection.close)
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


async def run_until_sigterm(config: Config) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await run_worker(config, stop)
