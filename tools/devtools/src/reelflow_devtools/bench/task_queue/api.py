"""``POST /v1/projects``: one project document, one submit message per clip."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from pymongo import AsyncMongoClient

from reelflow_devtools.bench.task_queue.config import Config, Document
from reelflow_devtools.bench.task_queue.topology import Names, declare, now, publish


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
        at, project_id, model = now(), uuid.uuid4().hex, body.model or config.model
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
                "created_at": at,
                "updated_at": at,
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
