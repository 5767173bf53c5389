"""``POST /v1/webhooks/runware/{secret}``: Runware says a task may have finished.

A webhook is a hint, never a fact: anyone who learns the URL could send one. So
the body's results are not recorded; the route publishes ONE ``CheckHintedTasks``
naming the task UUIDs in the body, and the poller asks Runware about each of
them now (``getResponse``) and records what Runware answers. The answer is 202
only once the broker has confirmed that message: otherwise a 503 with
``Retry-After`` (whether Runware delivers it again is undocumented; polling finds
the result anyway).

The secret is checked before anything else is looked at, so a wrong one answers
``404`` whatever the query and body hold: the route cannot be probed. Then the
body's size (``webhook_max_body_bytes``) is checked before it is parsed.
"""

from __future__ import annotations

import hmac
import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from reelflow_api.deps import State
from reelflow_api.problems import Problem, not_found, problem_responses
from reelflow_api.schemas import WebhookReceived
from reelflow_api.telemetry import correlation_id
from reelflow_common.logging import bound_context, get_logger
from reelflow_common.messages import MAX_HINTED_TASKS, CheckHintedTasks
from reelflow_common.runware.parsing import error_entries
from reelflow_common.topology import HINTED_CHECK

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
log = get_logger(__name__)

_BODY_SCHEMA = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": "Runware's answer: {'data': [...]} or {'errors': [...]}",
            }
        }
    },
    "required": True,
}


async def _check_secret(secret: str, state: State) -> None:
    expected = state.settings.webhook_secret
    if expected is None or not hmac.compare_digest(
        secret.encode("utf-8", "surrogatepass"), expected.get_secret_value().encode()
    ):
        raise not_found("webhook")


def _invalid_body(msg: str) -> Problem:
    return Problem(422, "Invalid Request", f"body: {msg}", errors=[{"loc": ["body"], "msg": msg}])


def _too_large(detail: str) -> Problem:
    return Problem(413, "Content Too Large", detail)


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The body, read no further than ``limit`` bytes: a larger one is a 413."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(f"the body is larger than {limit} bytes")
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise _too_large(f"the body is larger than {limit} bytes")
    return bytes(received)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, or nested too deep
        raise _invalid_body("not a JSON document") from exc
    if not isinstance(body, dict):
        raise _invalid_body("not a JSON object")
    return body


def _named_tasks(body: dict[str, Any]) -> list[str]:
    """The task UUIDs a body names (in ``data`` items and error entries), canonical, in order.

    Only the names: whatever the body says about them is not believed.
    """
    items: list[Any] = []
    data = body.get("data")
    items += data if isinstance(data, list) else [data]
    items += error_entries(body)
    named: dict[str, None] = {}
    for item in items:
        if not isinstance(item, dict) or "taskUUID" not in item:
            continue
        value = item["taskUUID"]
        try:
            # Never echoed back: a lone surrogate in it could not even be written as JSON.
            named[str(uuid.UUID(value))] = None
        except (TypeError, ValueError, AttributeError) as exc:
            raise _invalid_body("taskUUID must be a UUID string") from exc
    return list(named)


@router.post(
    "/runware/{secret}",
    status_code=202,
    dependencies=[Depends(_check_secret)],
    response_model=WebhookReceived,
    openapi_extra={"requestBody": _BODY_SCHEMA},
    responses=problem_responses(404, 413, 422, 503),
)
async def runware_webhook(
    request: Request,
    state: State,
    project_id: Annotated[str, Query(min_length=1, max_length=100)],
    scene: Annotated[int | None, Query(ge=0, le=10_000, description="the clip's scene")] = None,
) -> JSONResponse:
    """Have the tasks a Runware webhook names checked with Runware now; a wrong secret is 404."""
    body = _json_object(await _bounded_body(request, state.settings.webhook_max_body_bytes))
    task_uuids = _named_tasks(body)
    if not task_uuids:
        raise _invalid_body("no taskUUID in 'data' or 'errors'")
    if len(task_uuids) > MAX_HINTED_TASKS:
        raise _too_large(f"a webhook may name at most {MAX_HINTED_TASKS} tasks")
    with bound_context(project_id=project_id):
        hint = CheckHintedTasks(
            project_id=project_id,
            scene_index=scene,
            task_uuids=task_uuids,
            correlation_id=correlation_id(request),
        )
        await state.publisher.send(HINTED_CHECK, hint)
        log.info("webhook_received", tasks=len(task_uuids), scene=scene)
    return JSONResponse(WebhookReceived(received=len(task_uuids)).model_dump(), status_code=202)
