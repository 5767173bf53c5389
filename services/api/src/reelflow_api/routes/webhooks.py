"""``POST /v1/webhooks/runware/{secret}``: Runware's task results, without waiting for a poll.

The body is handed to the poller as a ``RecordRunwareResult`` per task, so a
webhook and a poll result go through the same code. The answer is 2xx only once
the broker has confirmed those messages: otherwise Runware retries the delivery.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from reelflow_api.deps import State
from reelflow_api.problems import Problem, not_found
from reelflow_common.logging import bound_context, get_logger
from reelflow_common.messages import RecordRunwareResult
from reelflow_common.runware import parse_task_states
from reelflow_common.topology import RECORD_RESULT

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
log = get_logger(__name__)


@router.post("/runware/{secret}")
async def runware_webhook(
    secret: str,
    state: State,
    project_id: Annotated[str, Query(min_length=1, max_length=100)],
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, int]:
    """Record the task states in a Runware webhook body; a wrong secret answers 404."""
    expected = state.settings.webhook_secret
    if expected is None or not hmac.compare_digest(
        secret.encode(), expected.get_secret_value().encode()
    ):
        raise not_found("webhook")
    task_states = parse_task_states(body)
    if not task_states:
        raise Problem(
            422,
            "Invalid Request",
            "body: no task in 'data' or 'errors'",
            errors=[{"loc": ["body"], "msg": "no task in 'data' or 'errors'"}],
        )
    for task_uuid in task_states:
        with bound_context(project_id=project_id, task_uuid=task_uuid):
            await state.publisher.send(
                RECORD_RESULT,
                RecordRunwareResult(project_id=project_id, task_uuid=task_uuid, body=body),
            )
            log.info("webhook_received")
    return {"received": len(task_states)}
