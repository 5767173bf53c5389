"""``POST /v1/webhooks/runware/{secret}``: Runware's task results, without waiting for a poll.

The body is handed to the poller as a ``RecordRunwareResult`` per task, so a
webhook and a poll result go through the same code. The answer is 2xx only once
the broker has confirmed those messages: otherwise Runware retries the delivery.

The secret is checked before anything else is looked at, so a wrong one answers
``404`` whatever the query and body hold: the route cannot be probed.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from reelflow_api.deps import State
from reelflow_api.problems import Problem, not_found, problem_responses
from reelflow_common.logging import bound_context, get_logger
from reelflow_common.messages import RecordRunwareResult
from reelflow_common.runware import parse_task_states
from reelflow_common.topology import RECORD_RESULT

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
        secret.encode(), expected.get_secret_value().encode()
    ):
        raise not_found("webhook")


def _invalid_body(msg: str) -> Problem:
    return Problem(422, "Invalid Request", f"body: {msg}", errors=[{"loc": ["body"], "msg": msg}])


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, or nested too deep
        raise _invalid_body("not a JSON document") from exc
    if not isinstance(body, dict):
        raise _invalid_body("not a JSON object")
    return body


@router.post(
    "/runware/{secret}",
    dependencies=[Depends(_check_secret)],
    openapi_extra={"requestBody": _BODY_SCHEMA},
    responses=problem_responses(404, 422, 503),
)
async def runware_webhook(
    request: Request,
    state: State,
    project_id: Annotated[str, Query(min_length=1, max_length=100)],
) -> dict[str, int]:
    """Record the task states in a Runware webhook body; a wrong secret answers 404."""
    body = await _json_object(request)
    task_states = parse_task_states(body)
    if not task_states:
        raise _invalid_body("no task in 'data' or 'errors'")
    for task_uuid in task_states:
        with bound_context(project_id=project_id, task_uuid=task_uuid):
            await state.publisher.send(
                RECORD_RESULT,
                RecordRunwareResult(project_id=project_id, task_uuid=task_uuid, body=body),
            )
            log.info("webhook_received")
    return {"received": len(task_states)}
