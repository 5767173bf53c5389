"""Webhook delivery: POST each finished item to its task's `webhookURL`, with retries.

Runware documents neither its retry schedule nor a signature, so: one POST per finished
item (as the docs say for multi-result tasks), body `{"data": [item]}` (or the failure
shape), no signature header, retries on a non-2xx answer or a connection error after
`webhook_retry_delays` simulated seconds each, then give up.
"""

import asyncio
import logging
from typing import Any

import httpx

from .responses import Answer, render_generation
from .state import Generation, SimState, SimTask

log = logging.getLogger(__name__)


class WebhookSender:
    """Runs one background asyncio task per pending delivery; `aclose()` cancels them all."""

    def __init__(self, state: SimState, client: httpx.AsyncClient) -> None:
        self._state = state
        self._client = client
        self._pending: set[asyncio.Task[None]] = set()

    def schedule(self, task: SimTask) -> None:
        """Arrange delivery of each of the task's items when it finishes."""
        if task.request.webhook_url is None or task.outcome == "hang":
            return
        for generation in task.generations:
            if generation.video_uuid in task.webhooks_settled:
                continue  # ended in an earlier run of a simulator that keeps its state
            delivery = asyncio.create_task(self._deliver(task, generation))
            self._pending.add(delivery)
            delivery.add_done_callback(self._pending.discard)

    async def cancel_all(self) -> None:
        """Stop every pending delivery and wait until they have stopped."""
        pending = list(self._pending)
        for delivery in pending:
            delivery.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _deliver(self, task: SimTask, generation: Generation) -> None:
        await self._deliver_copies(task, generation)
        task.webhooks_settled |= {generation.video_uuid}

    async def _deliver_copies(self, task: SimTask, generation: Generation) -> None:
        state = self._state
        await asyncio.sleep(max(0.0, task.submitted_at + generation.latency - state.clock()))
        if task.webhook_plan == "drop":
            log.info("webhook_dropped task_uuid=%s", task.request.task_uuid)
            task.webhook_dropped += 1
            state.notify()
            return
        answer = Answer()
        # Render at the finish time itself, so the item is terminal even if the clock lags.
        finished_at = task.submitted_at + generation.latency
        shape = state.config.failure_shape
        render_generation(task, generation, finished_at, state.public_url, shape, answer)
        copies = 2 if task.webhook_plan == "duplicate" else 1
        for _ in range(copies):
            if not await self._post_with_retries(task, answer.body()):
                return

    async def _post_with_retries(self, task: SimTask, body: dict[str, Any]) -> bool:
        config, url = self._state.config, task.request.webhook_url
        assert url is not None  # schedule() only runs deliveries for tasks with a URL
        delays = config.webhook_retry_delays
        for attempt in range(len(delays) + 1):
            task.webhook_attempts += 1
            try:
                response = await self._client.post(url, json=body, timeout=config.webhook_timeout)
                delivered = response.is_success
            except httpx.HTTPError as exc:
                log.info("webhook_failed url=%s error=%r", url, exc)
                delivered = False
            if delivered:
                task.webhook_deliveries += 1
            self._state.notify()
            if delivered:
                return True
            if attempt < len(delays):
                await asyncio.sleep(config.real_seconds(delays[attempt]))
        log.warning("webhook_abandoned task_uuid=%s url=%s", task.request.task_uuid, url)
        return False
