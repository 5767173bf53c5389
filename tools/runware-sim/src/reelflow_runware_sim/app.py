"""The HTTP surface: Runware's `POST /v1`, the video files, and `/__sim/` ground truth."""

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from .config import SimConfig
from .errors import INVALID_API_KEY
from .faults import DroppedAnswer, roll_http_fault
from .state import SimState
from .tasks import authenticated, run_tasks
from .validation import TaskRejected, task_uuid_of
from .webhooks import WebhookSender

log = logging.getLogger(__name__)

_BAD_BODY = {
    "code": "invalidRequestBody",
    "message": "The request body must be a non-empty JSON array of task objects.",
}


class Simulator:
    """One simulator's state and background work; the app reads it from `app.state.sim`."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.state = SimState(config, clock=time.monotonic)
        self.video = files("reelflow_runware_sim").joinpath("assets/sample.mp4").read_bytes()
        self._webhooks: WebhookSender | None = None

    @property
    def webhooks(self) -> WebhookSender:
        """The webhook sender, which exists while the app's lifespan runs."""
        if self._webhooks is None:
            raise RuntimeError("the simulator app is not running")
        return self._webhooks

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Own the webhook client and deliveries for the life of the app."""
        async with httpx.AsyncClient() as client:
            self._webhooks = WebhookSender(self.state, client)
            try:
                yield
            finally:
                await self._webhooks.cancel_all()
                self._webhooks = None

    async def reset(self) -> None:
        """Forget all tasks and counters and stop pending webhook deliveries."""
        await self.webhooks.cancel_all()
        self.state.reset()


def create_app(sim: Simulator) -> FastAPI:
    """Build the simulator's ASGI app around `sim`."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with sim.running():
            yield

    app = FastAPI(title="Runware simulator", lifespan=lifespan, openapi_url="/__sim/openapi.json")
    app.state.sim = sim
    state = sim.state

    def respond(status: int, body: dict[str, Any]) -> Response:
        state.http_status[str(status)] += 1
        return JSONResponse(body, status_code=status)

    @app.post("/v1")
    async def inference(request: Request) -> Response:
        state.endpoints["POST /v1"] += 1
        try:
            tasks = await request.json()
        except ValueError:
            tasks = None
        if not isinstance(tasks, list) or not tasks or not all(isinstance(t, dict) for t in tasks):
            return respond(400, {"errors": [_BAD_BODY]})
        state.task_types.update(str(task.get("taskType")) for task in tasks)
        fault = roll_http_fault(state.fault_rng, sim.config)
        if fault is not None:
            return respond(fault.status, {"errors": [fault.body()]})
        if not authenticated(sim.config.api_keys, request.headers.get("authorization"), tasks):
            return respond(401, {"errors": [INVALID_API_KEY]})
        outcome = run_tasks(state, sim.webhooks, tasks)
        if outcome.drop:
            log.warning("answer_dropped tasks=%d", len(tasks))
            state.http_status["dropped"] += 1
            return DroppedAnswer(len(json.dumps(outcome.answer.body())))
        return respond(outcome.answer.status(), outcome.answer.body())

    @app.api_route("/video/{video_uuid}.mp4", methods=["GET", "HEAD"])
    async def video(video_uuid: str) -> Response:
        state.endpoints["GET /video"] += 1
        found = state.video_state(video_uuid)
        if found == "expired":
            state.endpoints["GET /video expired"] += 1
            raise HTTPException(404, "video link expired")
        if found != "ready":
            raise HTTPException(404, "no such video")
        return Response(sim.video, media_type="video/mp4")

    @app.get("/__sim/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/__sim/tasks")
    async def list_tasks() -> list[dict[str, Any]]:
        now = state.clock()
        return [task.view(now) for task in state.tasks.values()]

    @app.get("/__sim/tasks/{task_uuid}")
    async def get_task(task_uuid: str) -> dict[str, Any]:
        """Ground truth; `accepted: false` for a UUID the simulator never accepted."""
        try:
            return state.view(task_uuid_of({"taskUUID": task_uuid}))
        except TaskRejected:
            raise HTTPException(404, "not a UUID") from None

    @app.get("/__sim/stats")
    async def stats() -> dict[str, Any]:
        return state.stats()

    @app.post("/__sim/reset", status_code=204)
    async def reset() -> None:
        await sim.reset()

    return app
