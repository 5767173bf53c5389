"""Answer the tasks of one `POST /v1` request, each on its own, as Runware does."""

from dataclasses import dataclass
from typing import Any

from .errors import task_error
from .responses import Answer, render_generation
from .state import SimState
from .validation import TaskRejected, task_uuid_of, validate_video
from .webhooks import WebhookSender


@dataclass(frozen=True)
class Outcome:
    """The answer to a request, and whether the simulator loses it on the way back."""

    answer: Answer
    drop: bool


def authenticated(keys: list[str], authorization: str | None, tasks: list[dict[str, Any]]) -> bool:
    """Whether the Bearer header, or an authentication task first in the array, has a key."""
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip() in keys:
            return True
    first = tasks[0]
    return first.get("taskType") == "authentication" and first.get("apiKey") in keys


def run_tasks(state: SimState, webhooks: WebhookSender, tasks: list[dict[str, Any]]) -> Outcome:
    """Process every task in order; one task's error never stops the others."""
    answer, drop, now = Answer(), False, state.clock()
    for task in tasks:
        kind = task.get("taskType")
        try:
            if kind == "authentication":
                continue
            if kind == "videoInference":
                drop |= _submit(state, webhooks, task, answer)
            elif kind == "getResponse":
                _poll(state, task, answer, now)
            else:
                message = f"Unsupported taskType {kind!r}."
                raise TaskRejected(
                    task_error("unsupportedTaskType", message, task, parameter="taskType")
                )
        except TaskRejected as exc:
            answer.errors.append(exc.error.body())
            answer.statuses.append(exc.error.status)
    return Outcome(answer, drop)


def _submit(state: SimState, webhooks: WebhookSender, task: dict[str, Any], answer: Answer) -> bool:
    """Accept a videoInference task; return whether its answer is to be dropped."""
    task_uuid = task_uuid_of(task)
    known = state.tasks.get(task_uuid)
    if known is not None:
        # Checked before validation: the UUID names a task that exists, whatever the body.
        known.submissions += 1
        state.notify()
        message = "A task with this taskUUID already exists. Use a new taskUUID."
        raise TaskRejected(task_error("conflictTaskUUID", message, task, parameter="taskUUID"))
    try:
        request = validate_video(task)
    except TaskRejected:
        state.rejected[task_uuid] += 1
        raise
    sim_task = state.accept(request)
    webhooks.schedule(sim_task)
    answer.data.append({"taskType": "videoInference", "taskUUID": task_uuid})
    if sim_task.drop_first_answer:
        sim_task.dropped_answers += 1
    return sim_task.drop_first_answer


def _poll(state: SimState, task: dict[str, Any], answer: Answer, now: float) -> None:
    task_uuid = task_uuid_of(task)
    sim_task = state.tasks.get(task_uuid)
    if sim_task is None:
        # Guess: undocumented; the SDKs' error catalogs name taskFailedOrNotFound.
        message = "The task was not found, or it failed and is no longer available."
        error = task_error(
            "taskFailedOrNotFound",
            message,
            task,
            parameter="taskUUID",
            status=state.config.unknown_task_status,
        )
        raise TaskRejected(error)
    sim_task.polls += 1
    if sim_task.first_polled is None:
        sim_task.first_polled = now - sim_task.submitted_at
    if sim_task.first_seen_ended is None and sim_task.state(now) in ("success", "error"):
        sim_task.first_seen_ended = now - sim_task.submitted_at
    shape = state.config.failure_shape
    for generation in sim_task.generations:
        render_generation(sim_task, generation, now, state.public_url, shape, answer)
