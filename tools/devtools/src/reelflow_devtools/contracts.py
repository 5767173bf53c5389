"""The machine-readable contracts in ``docs/``, generated from the code.

* ``docs/asyncapi.json``: an AsyncAPI 3 document of every RabbitMQ message
  (the commands on the work queues and the events on the event exchange), its
  payload schemas taken from the pydantic models in :mod:`reelflow_common.messages`
  and its names from :mod:`reelflow_common.topology`.
* ``docs/asyncapi-websocket.json``: an AsyncAPI 3 document of the notifier's
  WebSocket protocol, from the message models in :mod:`reelflow_notifier.wire`
  and :mod:`reelflow_notifier.multiplex`, with its close codes.
* ``docs/openapi.json``: the API's OpenAPI document for the default settings.

``python -m reelflow_devtools.contracts`` writes both; ``--check`` only reports
drift (exit 1). A unit test regenerates them and fails on any difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from reelflow_api.app import create_app
from reelflow_api.settings import Settings as ApiSettings
from reelflow_common import topology
from reelflow_common.json_schema import as_written
from reelflow_common.messages import (
    AttemptStored,
    AttemptSucceeded,
    CheckClip,
    CheckClips,
    CheckHintedTasks,
    ClipStored,
    ClipUpdated,
    LaneOpened,
    Message,
    ProjectFinished,
    RunwareThrottled,
    StoreVideo,
    SubmitClip,
)
from reelflow_notifier import keyslots, keywatch, routes, session, wire
from reelflow_notifier.main import CLIENT_MESSAGE_MAX_BYTES
from reelflow_notifier.multiplex import Subscribe, Unsubscribe

ROOT = Path(__file__).resolve().parents[4]
ASYNCAPI_PATH = ROOT / "docs" / "asyncapi.json"
WEBSOCKET_PATH = ROOT / "docs" / "asyncapi-websocket.json"
OPENAPI_PATH = ROOT / "docs" / "openapi.json"

_AMQP_BINDING = "0.3.0"
_SCHEMA_REF = "#/components/schemas/{model}"

#: work queue -> (commands it carries, the first the chief one; who sends them, who consumes them)
COMMANDS: dict[str, tuple[tuple[type[Message], ...], str, str]] = {
    topology.SUBMIT_CLIP: (
        (SubmitClip,),
        "the api (a new or retried project), the submitter (its own retries, delayed)"
        " and the poller's reconciler (a clip whose lease ran out)",
        "the submitter",
    ),
    topology.CHECK_CLIP: (
        (CheckClip, CheckClips),
        "the submitter (after a submit), the poller (the next check, delayed), the api"
        " (a retried timed-out clip) and the poller's reconciler; the submitter and the"
        " poller send checks made together in one `CheckClips`",
        "the poller",
    ),
    topology.HINTED_CHECK: (
        (CheckHintedTasks,),
        "the api, for each Runware webhook delivery",
        "the poller",
    ),
    topology.STORE_VIDEO: (
        (StoreVideo,),
        "the poller when it records a video, a clip's success or one in a clip's attempts"
        " (copies on), the poller again (a failed copy, delayed; the copy sweep) and"
        " `reelflow-admin assets retry`",
        "the poller",
    ),
}
#: every event, by routing key on the event exchange
EVENTS: dict[str, type[Message]] = {
    topology.CLIP_UPDATED: ClipUpdated,
    topology.PROJECT_FINISHED: ProjectFinished,
    topology.CLIP_STORED: ClipStored,
    topology.CLIP_ATTEMPT_SUCCEEDED: AttemptSucceeded,
    topology.CLIP_ATTEMPT_STORED: AttemptStored,
}

#: signals between submitter replicas, on their fanout exchange (best effort, no acks)
SIGNALS: dict[str, type[Message]] = {
    LaneOpened.message_type: LaneOpened,
    RunwareThrottled.message_type: RunwareThrottled,
}

_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "Correlation ids, also bound into every log line of the consumer.",
    "properties": {
        topology.HEADER_PROJECT_ID: {
            "type": "string",
            "description": "the project the message is about; every event carries it, and a"
            " notifier replica acknowledges an event unparsed when none of its sockets watch"
            " that project",
        },
        topology.HEADER_TASK_UUID: {"type": "string"},
        topology.HEADER_CORRELATION_ID: {
            "type": "string",
            "description": "the HTTP request that started the chain (its X-Correlation-ID)",
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
        topology.HEADER_REQUEUED: {
            "type": "integer",
            "description": "times an operator moved this message back from its dead-letter"
            " queue (`reelflow-admin dlq requeue`); its handler never takes it for a first"
            " handling",
        },
        topology.HEADER_REDELIVERED: {
            "type": "boolean",
            "description": "a copy the submitter's sorter made of a delivery the broker"
            " redelivered to it (a sorter before it may have made one too): its handler never"
            " takes it for a first handling",
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
        "correlationId": {"location": f"$message.header#/{topology.HEADER_CORRELATION_ID}"},
        "payload": {"$ref": _SCHEMA_REF.format(model=model.__name__)},
        "bindings": {
            "amqp": {
                "messageType": model.message_type,
                "bindingVersion": _AMQP_BINDING,
            }
        },
    }


def _schemas(
    models: list[type[BaseModel]], incoming: tuple[type[BaseModel], ...] = ()
) -> dict[str, Any]:
    """JSON schemas as the models write them (``incoming`` ones: as they are parsed)."""
    _, document = models_json_schema(
        [(model, "validation" if model in incoming else "serialization") for model in models],
        ref_template=_SCHEMA_REF,
    )
    defs: dict[str, Any] = document["$defs"]
    return dict(sorted(defs.items()))


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of reelflow's RabbitMQ traffic."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for queue, (kinds, senders, consumer) in COMMANDS.items():
        channel = _channel_id(queue)
        chief = kinds[0].__name__
        for model in kinds:
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
            "messages": {
                model.__name__: {"$ref": f"#/components/messages/{model.__name__}"}
                for model in kinds
            },
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
        message_refs = [
            {"$ref": f"#/channels/{channel}/messages/{model.__name__}"} for model in kinds
        ]
        operations[f"send{chief}"] = {
            "action": "send",
            "channel": channel_ref,
            "summary": f"Sent by {senders}.",
            "messages": message_refs,
            "bindings": {
                "amqp": {"deliveryMode": 2, "mandatory": True, "bindingVersion": _AMQP_BINDING}
            },
        }
        operations[f"receive{chief}"] = {
            "action": "receive",
            "channel": channel_ref,
            "summary": f"Consumed by {consumer}, one message at a time per prefetch slot.",
            "messages": message_refs,
            "bindings": {"amqp": {"ack": True, "bindingVersion": _AMQP_BINDING}},
        }
    event_refs = {}
    for routing_key, model in EVENTS.items():
        messages[model.__name__] = _message(model)
        event_refs[model.__name__] = {"$ref": f"#/components/messages/{model.__name__}"}
        assert routing_key == model.message_type  # the routing key starts with the type
    channels["events"] = {
        "address": "{event_type}.{project_id}",
        "title": f"event exchange {topology.EVENTS_EXCHANGE}",
        "description": (
            f"A durable topic exchange (`<amqp_prefix>{topology.EVENTS_EXCHANGE}`); each"
            " event's routing key is its type and its project"
            f" (`{topology.event_routing_key('clip.updated', '<project_id>')}`). Every"
            " notifier replica binds its own exclusive queue"
            f" (`{topology.NOTIFIER_FANOUT}.<uuid>`) with"
            f" `{topology.project_events_binding('<project_id>')}` for each project a"
            " socket on it watches (and with"
            f" `{topology.LEGACY_EVENT_BINDING}`, the events of publishers from before"
            " these keys); every api replica binds its own"
            f" (`{topology.API_WAKEUPS}.<uuid>`) with"
            f" `{topology.PROJECT_FINISHED_BINDING}`."
        ),
        "parameters": {
            "event_type": {"enum": list(EVENTS), "description": "the event's type"},
            "project_id": {"description": "the project the event is about"},
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
        "summary": "Consumed by each notifier replica with a WebSocket watching its project,"
        " which pushes it to those clients; an api replica consumes `project.finished`"
        " to answer `?wait=`.",
        "messages": event_messages,
        "bindings": {"amqp": {"ack": True, "bindingVersion": _AMQP_BINDING}},
    }
    _lanes_and_signals(channels, operations, messages)
    models: list[type[BaseModel]] = [model for kinds, _, _ in COMMANDS.values() for model in kinds]
    models += list(EVENTS.values())
    models += list(SIGNALS.values())
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


def _lanes_and_signals(
    channels: dict[str, Any], operations: dict[str, Any], messages: dict[str, Any]
) -> None:
    """The submitter's per-tenant lanes and the signals between its replicas."""
    lane = f"{topology.SUBMIT_LANE}.{{tenant}}"
    submit_ref = {"$ref": f"#/components/messages/{SubmitClip.__name__}"}
    channels["submitClipLane"] = {
        "address": lane,
        "title": "a tenant's submit lane",
        "description": (
            f"A quorum queue per tenant (`<amqp_prefix>{lane}`), with the dead-letter queue"
            f" and limits of `{topology.SUBMIT_CLIP}` and an `x-expires`. The submitter moves"
            f" each `SubmitClip` of `{topology.SUBMIT_CLIP}` here (body and headers as they"
            " are), then serves every lane in turn, a few clips of a tenant at a time. The api"
            " publishes a tenant's new clips here itself while a submitter says (`LaneOpened`)"
            " that it serves the lane."
        ),
        "parameters": {"tenant": {"description": "the tenant's id"}},
        "messages": {SubmitClip.__name__: submit_ref},
    }
    lane_message = {"$ref": f"#/channels/submitClipLane/messages/{SubmitClip.__name__}"}
    for action, summary in (
        (
            "send",
            "Sent by the submitter, sorting the shared queue by tenant; and by the api, for a"
            " lane a submitter serves.",
        ),
        ("receive", "Consumed by every submitter replica, per-tenant prefetch."),
    ):
        operations[f"{action}SubmitClipToLane" if action == "send" else "receiveLaneSubmitClip"] = {
            "action": action,
            "channel": {"$ref": "#/channels/submitClipLane"},
            "summary": summary,
            "messages": [lane_message],
        }
    refs = {}
    for name, model in SIGNALS.items():
        messages[model.__name__] = _message(model)
        refs[model.__name__] = {"$ref": f"#/components/messages/{model.__name__}"}
        assert name == model.message_type
    channels["submitterSignals"] = {
        "address": topology.SUBMITTER_SIGNALS,
        "title": f"signal exchange {topology.SUBMITTER_SIGNALS}",
        "description": (
            f"A durable fanout exchange (`<amqp_prefix>{topology.SUBMITTER_SIGNALS}`); every"
            f" submitter replica binds its own exclusive queue"
            f" (`{topology.SUBMITTER_SIGNAL_QUEUE}.<uuid>`) and reads it without acks: a lost"
            " signal costs time, never a clip. Every api replica binds one too"
            f" (`{topology.API_LANES}.<uuid>`) and reads the `LaneOpened` ones: the lanes it"
            " may publish to."
        ),
        "messages": refs,
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {
                    "name": topology.SUBMITTER_SIGNALS,
                    "type": "fanout",
                    "durable": True,
                    "autoDelete": False,
                },
                "bindingVersion": _AMQP_BINDING,
            }
        },
    }
    signal_refs = [{"$ref": f"#/channels/submitterSignals/messages/{name}"} for name in refs]
    operations["sendSignal"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/submitterSignals"},
        "summary": "Sent by a submitter replica: a lane it opened, or a Runware 429.",
        "messages": signal_refs,
    }
    operations["receiveSignal"] = {
        "action": "receive",
        "channel": {"$ref": "#/channels/submitterSignals"},
        "summary": "Received by every submitter replica (its own included); `LaneOpened` by"
        " every api replica too.",
        "messages": signal_refs,
    }


#: uvicorn's close code for open WebSockets when the notifier shuts down (a deploy)
CLOSE_SERVICE_RESTART = 1012
#: the websockets protocol's close code for a client message over the notifier's limit
CLOSE_MESSAGE_TOO_BIG = 1009
#: every close code the notifier sends, what it means and what a client does
CLOSE_CODES: dict[int, str] = {
    routes.CLOSE_BAD_REQUEST: "bad query (after_seq not an integer >= 0): fix the URL",
    keywatch.CLOSE_UNAUTHORIZED: "no valid key or ticket, or the key was revoked while"
    " connected: get a new ticket; if POST /v1/ws-tickets answers 401, stop",
    session.CLOSE_NOT_FOUND: "no such project for this tenant: stop",
    keyslots.CLOSE_TOO_MANY_CONNECTIONS: "the API key has REELFLOW_WS_MAX_CONNECTIONS_PER_KEY"
    " sockets open on this notifier: close those no longer needed, or reconnect later with"
    " backoff",
    CLOSE_MESSAGE_TOO_BIG: f"the client sent a message over {CLIENT_MESSAGE_MAX_BYTES} bytes:"
    " fix the client",
    session.CLOSE_SERVER_ERROR: "server error, or the keepalive ping went unanswered:"
    " reconnect later with after_seq",
    CLOSE_SERVICE_RESTART: "the notifier is restarting (a deploy): reconnect with after_seq",
    routes.CLOSE_TRY_AGAIN_LATER: "this notifier holds REELFLOW_WS_MAX_CONNECTIONS sockets"
    " (reason: server full), or too many keys it has not seen are being checked at once (a"
    " flood of wrong ones; reason: server busy): reconnect later with backoff (a new ticket),"
    " which may reach another replica",
}

_QUERY_AUTH: dict[str, Any] = {
    "ticket": {
        "type": "string",
        "description": "a single-use ticket from POST /v1/ws-tickets (browsers)",
    },
    "token": {
        "type": "string",
        "description": "the API key itself; prefer a ticket, or the Authorization header",
    },
}


def _ws_message(model: type[BaseModel]) -> dict[str, Any]:
    message_type = typing.get_args(model.model_fields["type"].annotation)[0]
    doc = (model.__doc__ or "").strip()
    return {
        "name": message_type,
        "title": model.__name__,
        "summary": doc.splitlines()[0],
        "contentType": "application/json",
        "payload": {"$ref": _SCHEMA_REF.format(model=model.__name__)},
    }


def _ws_binding(query: dict[str, Any]) -> dict[str, Any]:
    return {
        "ws": {
            "method": "GET",
            "query": {"type": "object", "properties": query},
            "headers": {
                "type": "object",
                "properties": {
                    "Authorization": {
                        "type": "string",
                        "description": "`Bearer <api key>`, for clients that can set headers",
                    }
                },
            },
            "bindingVersion": "0.1.0",
        }
    }


def websocket_asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the notifier's WebSocket protocol, as the notifier sees it."""
    server_models: list[type[BaseModel]] = list(wire.SERVER_MESSAGES)
    client_models: tuple[type[BaseModel], ...] = (Subscribe, Unsubscribe)
    # One project's socket carries every change of it, as a subscription does; nothing the
    # client sends is answered (no error, no unsubscribe).
    project_models: list[type[BaseModel]] = [
        model
        for model in wire.SERVER_MESSAGES
        if model not in (wire.ErrorMessage, wire.UnsubscribedMessage)
    ]
    messages = {model.__name__: _ws_message(model) for model in [*server_models, *client_models]}

    def refs(models: list[type[BaseModel]] | tuple[type[BaseModel], ...]) -> dict[str, Any]:
        return {m.__name__: {"$ref": f"#/components/messages/{m.__name__}"} for m in models}

    close_codes = {str(code): meaning for code, meaning in sorted(CLOSE_CODES.items())}
    after_seq = {
        "type": "integer",
        "minimum": 0,
        "description": "the last seq received: every change after it is sent (or a snapshot)",
    }
    channels = {
        "project": {
            "address": "/v1/ws/projects/{project_id}",
            "title": "one project",
            "description": "A snapshot (or the changes after `after_seq`), then every change"
            " of the project. Text the client sends is ignored.",
            "parameters": {"project_id": {"description": "the project to follow"}},
            "messages": refs(project_models),
            "bindings": _ws_binding(_QUERY_AUTH | {"after_seq": after_seq}),
            "x-close-codes": close_codes,
        },
        "multiplexed": {
            "address": "/v1/ws",
            "title": "many projects on one connection",
            "description": "The client subscribes to projects; each one's messages are those"
            " of the one-project channel.",
            "messages": refs([*server_models, *client_models]),
            "bindings": _ws_binding(_QUERY_AUTH),
            "x-close-codes": {
                code: meaning for code, meaning in close_codes.items() if code != "4404"
            },
        },
    }
    operations = {
        "sendProjectUpdates": {
            "action": "send",
            "channel": {"$ref": "#/channels/project"},
            "summary": "The notifier sends the project's snapshot and changes, in seq order.",
            "messages": [
                {"$ref": f"#/channels/project/messages/{m.__name__}"} for m in project_models
            ],
        },
        "sendSubscribedUpdates": {
            "action": "send",
            "channel": {"$ref": "#/channels/multiplexed"},
            "summary": "The notifier sends each subscribed project's messages, and answers"
            " to the client's messages.",
            "messages": [
                {"$ref": f"#/channels/multiplexed/messages/{m.__name__}"} for m in server_models
            ],
        },
        "receiveSubscriptions": {
            "action": "receive",
            "channel": {"$ref": "#/channels/multiplexed"},
            "summary": "The client subscribes to and unsubscribes from projects.",
            "messages": [
                {"$ref": f"#/channels/multiplexed/messages/{m.__name__}"} for m in client_models
            ],
        },
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "reelflow live updates",
            "version": "1.0.0",
            "description": (
                "The notifier's WebSocket protocol for frontends (docs/API.md explains it"
                " with a browser client). Every message is a JSON object whose `type` names"
                " it; a project's messages carry its `seq`, which grows by one with every"
                " change. Refusals are close frames with a code (`x-close-codes`); a"
                " handshake to another path is refused with an HTTP 404 problem+json."
                " Generated by `python -m reelflow_devtools.contracts` from"
                " reelflow_notifier.wire."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "notifier": {
                "host": "127.0.0.1:8001",
                "protocol": "ws",
                "description": "`ws_url` of GET /v1/config (REELFLOW_PUBLIC_WS_URL in production).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": as_written(
                _schemas([*server_models, *client_models], incoming=client_models),
                read=[model.__name__ for model in client_models],
            ),
        },
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
        WEBSOCKET_PATH: render(websocket_asyncapi_document()),
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
