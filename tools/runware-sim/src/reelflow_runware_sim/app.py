"""The HTTP surface: Runware's `POST /v1`, the video files, and `/__sim/` ground truth."""

import asyncio
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
from .persistence import KeptState, dump_state, read_state, write_atomically
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
        #: what an earlier run left in `config.state_file`, taken on at the app's start
        self.kept: KeptState | None = None
        if config.state_file is not None:
            self.kept = read_state(config.state_file, self.state.clock)
        #: the port the server listens on, kept in the state file with the tasks
        self.port: int | None = None
        self._stop_saving = asyncio.Event()

    @property
    def webhooks(self) -> WebhookSender:
        """The webhook sender, which exists while the app's lifespan runs."""
        if self._webhooks is None:
            raise RuntimeError("the simulator app is not running")
        return self._webhooks

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Own the webhook client and deliveries, and the state file, for the life of the app."""
        async with httpx.AsyncClient() as client:
            self._webhooks = WebhookSender(self.state, client)
            self._take_on_kept_state()
            saving = self._start_saving()
            try:
                yield
            finally:
                await self._webhooks.cancel_all()
                self._webhooks = None
                if saving is not None:
                    self._stop_saving.set()
                    await saving
                    self._save()

    def _take_on_kept_state(self) -> None:
        """Go on with the tasks an earlier run accepted, as Runware does while no one asks."""
        kept, self.kept = self.kept, None
        if kept is None:
            return
        self.state.rejected.update(kept.rejected)
        for task in kept.tasks:
            self.state.track(task)
            self.webhooks.schedule(task)

    def _start_saving(self) -> asyncio.Task[None] | None:
        if self.config.state_file is None:
            return None
        self._stop_saving.clear()
        return asyncio.create_task(self._save_while_running())

    async def _save_while_running(self) -> None:
        """Every `state_save_interval` s, save if anything changed: a crash loses little."""
        assert self.config.state_file is not None  # only started with a state file
        saved = self.state.revision
        while True:
            try:
                await asyncio.wait_for(self._stop_saving.wait(), self.config.state_save_interval)
                return
            except TimeoutError:
                pass
            if self.state.revision != saved:
                saved = self.state.revision
                text = dump_state(self.state, self.port)
                try:
                    await asyncio.to_thread(write_atomically, self.config.state_file, text)
                except OSError as exc:  # the save at stop tries again
                    log.warning("state_not_saved path=%s error=%r", self.config.state_file, exc)

    def _save(self) -> None:
        assert self.config.state_file is not None
        write_atomically(self.config.state_file, dump_state(self.state, self.port))
        log.info("state_saved path=%s tasks=%d", self.config.state_file, len(self.state.tasks))

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
