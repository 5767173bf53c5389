"""The machine-readable contracts in ``docs/``, generated from the code.

* ``docs/asyncapi.json``: an AsyncAPI 3 document of every RabbitMQ message
  (the commands on the work queues and the events on the event exchange), its
  payload schemas taken from the pydantic models in :mod:`reelflow_common.messages`
  and its names from :mod:`reelflow_common.topology`.
* ``docs/openapi.json``: the API's OpenAPI document for the default settings.

``python -m reelflow_devtools.contracts`` writes both; ``--check`` only reports
drift (exit 1). A unit test regenerates them and fails on any difference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from reelflow_api.app import create_app
from reelflow_api.settings import Settings as ApiSettings
from reelflow_common import topology
from reelflow_common.messages import (
    CheckClip,
    CheckHintedTasks,
    ClipUpdated,
    Message,
    ProjectFinished,
    SubmitClip,
)

ROOT = Path(__file__).resolve().parents[4]
ASYNCAPI_PATH = ROOT / "docs" / "asyncapi.json"
OPENAPI_PATH = ROOT / "docs" / "openapi.json"

_AMQP_BINDING = "0.3.0"
_SCHEMA_REF = "#/components/schemas/{model}"

#: work queue -> (command it carries, who sends it, who consumes it)
COMMANDS: dict[str, tuple[type[Message], str, str]] = {
    topology.SUBMIT_CLIP: (
        SubmitClip,
        "the api (a new or retried project), the submitter (its own retries, delayed)"
        " and the poller's reconciler (a clip whose lease ran out)",
        "the submitter",
    ),
    topology.CHECK_CLIP: (
        CheckClip,
        "the submitter (after a submit), the poller (the next check, delayed), the api"
        " (a retried timed-out clip) and the poller's reconciler",
        "the poller",
    ),
    topology.HINTED_CHECK: (
        CheckHintedTasks,
        "the api, for each Runware webhook delivery",
        "the poller",
    ),
}
#: every event, by routing key on the event exchange
EVENTS: dict[str, type[Message]] = {
    topology.CLIP_UPDATED: ClipUpdated,
    topology.PROJECT_FINISHED: ProjectFinished,
}

_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "Correlation ids, also bound into every log line of the consumer.",
    "properties": {
        topology.HEADER_PROJECT_ID: {"type": "string"},
        topology.HEADER_TASK_UUID: {"type": "string"},
        topology.HEADER_REQUEST_ID: {
            "type": "string",
            "description": "the HTTP request that started the chain (`correlation_id`)",
        },
        topology.HEADER_RETRIES: {
            "type": "integer",
            "description": "retries of this message after a broker or backing-service outage",
        },
        topology.HEADER_FAILURES: {
            "type": "integer",
            "description": "times a handler failed on this message with a bug; past"
            " `max_deliveries` it goes to the dead-letter queue",
        },
    },
}


def _channel_id(name: str) -> str:
    head, *rest = name.replace(".", "_").split("_")
    return head + "".join(part.capitalize() for part in rest)


def _message(model: type[Message]) -> dict[str, Any]:
    return {
        "name": model.message_type,
        "title": model.__name__,
        "summary": (model.__doc__ or "").strip().splitlines()[0],
        "description": (model.__doc__ or "").strip(),
        "contentType": "application/json",
        "headers": _HEADERS,
        "correlationId": {"location": f"$message.header#/{topology.HEADER_REQUEST_ID}"},
        "payload": {"$ref": _SCHEMA_REF.format(model=model.__name__)},
        "bindings": {
            "amqp": {
                "messageType": model.message_type,
                "bindingVersion": _AMQP_BINDING,
            }
        },
    }


def _schemas(models: list[type[BaseModel]]) -> dict[str, Any]:
    _, document = models_json_schema(
        [(model, "serialization") for model in models], ref_template=_SCHEMA_REF
    )
    defs: dict[str, Any] = document["$defs"]
    return dict(sorted(defs.items()))


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of reelflow's RabbitMQ traffic."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for queue, (model, senders, consumer) in COMMANDS.items():
        channel = _channel_id(queue)
        ref = {"$ref": f"#/components/messages/{model.__name__}"}
        messages[model.__name__] = _message(model)
        channels[channel] = {
            "address": queue,
            "title": f"work queue {queue}",
            "description": (
                f"A durable quorum queue (`<amqp_prefix>{queue}`), published to through the"
                " default exchange. Delayed copies go through its wait queues"
                f" (`{queue}.wait.<ms>ms`, a fixed TTL each) and come back here; a message"
                f" rejected or delivered too often ends in `{queue}.dlq`."
            ),
            "messages": {model.__name__: ref},
            "bindings": {
                "amqp": {
                    "is": "queue",
                    "queue": {
                        "name": queue,
                        "durable": True,
                        "exclusive": False,
                        "autoDelete": False,
                    },
                    "bindingVersion": _AMQP_BINDING,
                }
            },
        }
        channel_ref = {"$ref": f"#/channels/{channel}"}
        message_ref = {"$ref": f"#/channels/{channel}/messages/{model.__name__}"}
        operations[f"send{model.__name__}"] = {
            "action": "send",
            "channel": channel_ref,
            "summary": f"Sent by {senders}.",
            "messages": [message_ref],
            "bindings": {
                "amqp": {"deliveryMode": 2, "mandatory": True, "bindingVersion": _AMQP_BINDING}
            },
        }
        operations[f"receive{model.__name__}"] = {
            "action": "receive",
            "channel": channel_ref,
            "summary": f"Consumed by {consumer}, one message at a time per prefetch slot.",
            "messages": [message_ref],
            "bindings": {"amqp": {"ack": True, "bindingVersion": _AMQP_BINDING}},
        }
    event_refs = {}
    for routing_key, model in EVENTS.items():
        messages[model.__name__] = _message(model)
        event_refs[model.__name__] = {"$ref": f"#/components/messages/{model.__name__}"}
        assert routing_key == model.message_type  # the routing key is the event's type
    channels["events"] = {
        "address": "{routing_key}",
        "title": f"event exchange {topology.EVENTS_EXCHANGE}",
        "description": (
            f"A durable topic exchange (`<amqp_prefix>{topology.EVENTS_EXCHANGE}`); each"
            " event's routing key is its type. Every notifier replica binds its own"
            f" exclusive queue (`{topology.NOTIFIER_FANOUT}.<uuid>`) with"
            f" {', '.join(f'`{key}`' for key in topology.EVENT_BINDING_KEYS)}."
        ),
        "parameters": {
            "routing_key": {"enum": list(EVENTS), "description": "the event's type"},
        },
        "messages": event_refs,
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {
                    "name": topology.EVENTS_EXCHANGE,
                    "type": "topic",
                    "durable": True,
                    "autoDelete": False,
                },
                "bindingVersion": _AMQP_BINDING,
            }
        },
    }
    event_messages = [{"$ref": f"#/channels/events/messages/{name}"} for name in event_refs]
    operations["publishEvent"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/events"},
        "summary": "Published by whichever service stored the change (api, submitter, poller),"
        " after the store write: the event log in MongoDB is the source of truth.",
        "messages": event_messages,
        "bindings": {
            "amqp": {"deliveryMode": 2, "mandatory": False, "bindingVersion": _AMQP_BINDING}
        },
    }
    operations["receiveEvent"] = {
        "action": "receive",
        "channel": {"$ref": "#/channels/events"},
        "summary": "Consumed by every notifier replica, which pushes it to WebSocket clients.",
        "messages": event_messages,
        "bindings": {"amqp": {"ack": True, "bindingVersion": _AMQP_BINDING}},
    }
    models: list[type[BaseModel]] = [model for model, _, _ in COMMANDS.values()]
    models += list(EVENTS.values())
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "reelflow messages",
            "version": "1.0.0",
            "description": (
                "Every message reelflow's services exchange over RabbitMQ. Commands (one"
                " consumer) go to work queues, events (past tense, fanned out) to the event"
                " exchange. Each is a JSON object with the envelope fields `schema_version`,"
                " `message_id`, `correlation_id` and `occurred_at`; the AMQP `type` property"
                " names the message and consumers check it before parsing. Generated by"
                " `python -m reelflow_devtools.contracts` from reelflow_common.messages."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "localhost:5672",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "REELFLOW_AMQP_URL; every name is prefixed by REELFLOW_AMQP_PREFIX.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": _schemas(models)},
    }


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document for the default settings (no environment read)."""
    return create_app(ApiSettings.model_construct()).openapi()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def generated() -> dict[Path, str]:
    """Each contract file and the text it should hold."""
    return {
        ASYNCAPI_PATH: render(asyncapi_document()),
        OPENAPI_PATH: render(openapi_document()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only report drift (exit 1)")
    args = parser.parse_args(argv)
    drifted = []
    for path, text in generated().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        drifted.append(path)
        if not args.check:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if args.check and drifted:
        for path in drifted:
            print(f"out of date: {path.relative_to(ROOT)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
