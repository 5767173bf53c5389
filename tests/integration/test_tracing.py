"""One trace follows a clip from the REST request through RabbitMQ and Runware to the WebSocket.

The four services run in this process (the api through ASGI, the notifier under
uvicorn, the submitter's and poller's ``main()`` in tasks) against the Runware
simulator, each naming its spans (``reelflow.service``); an in-memory exporter
collects what they record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from reelflow_api.settings import Settings as ApiSettings
from reelflow_common.settings import LogSettings
from reelflow_common.tracing import SERVICE_ATTRIBUTE, configure_tracing
from reelflow_notifier.settings import Settings as NotifierSettings
from reelflow_poller.main import main as poller_main
from reelflow_poller.settings import Settings as PollerSettings
from reelflow_runware_sim.config import SimConfig
from reelflow_runware_sim.testing import RunningSimulator
from reelflow_submitter.main import main as submitter_main
from reelflow_submitter.settings import Settings as SubmitterSettings
from tests.integration.api_helpers import running_api
from tests.integration.notifier_helpers import client, receive, running_notifier
from tests.integration.worker_helpers import FAST_LADDERS, running, runware_settings
from tests.waiting import eventually

pytestmark = pytest.mark.integration

#: one scene, so that one clip's chain is the whole story
ONE_SCENE = {"title": "trace me", "scenes": [{"prompt": "a fox crossing a snowy field"}]}


@pytest.fixture
def runware_sim_config() -> SimConfig:
    # Slow enough (a clip takes seconds) for the WebSocket to be watching before it finishes.
    return SimConfig(port=0, speedup=30.0, seed=1234)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Every span finished during the test.

    OpenTelemetry lets a process set its global provider once; this test's is
    swapped in and out so that no other test sees it.
    """
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    yield exporter
    provider.shutdown()


def service_of(span: ReadableSpan) -> str:
    return str((span.attributes or {}).get(SERVICE_ATTRIBUTE))


async def test_one_trace_spans_all_four_services(
    spans: InMemorySpanExporter,
    settings_for: Callable[..., Any],
    runware_sim: RunningSimulator,
    mongo_db: Any,
    amqp_connection: Any,
) -> None:
    workers = {"http_host": "127.0.0.1", "http_port": 0, **FAST_LADDERS}
    workers |= runware_settings(runware_sim)
    stop = asyncio.Event()

    # Each service names its spans from a context variable its own tasks inherit.
    configure_tracing(LogSettings(), service="notifier")
    notifier_settings = settings_for(NotifierSettings, http_host="127.0.0.1", http_port=0)
    async with running_notifier(notifier_settings) as notifier:
        configure_tracing(LogSettings(), service="api")
        api_settings = settings_for(ApiSettings, **FAST_LADDERS)
        async with (
            running_api(api_settings, mongo_db, amqp_connection) as api,
            running(submitter_main(settings_for(SubmitterSettings, **workers), stop=stop), stop),
            running(poller_main(settings_for(PollerSettings, **workers), stop=stop), stop),
        ):
            auth = await api.tenant()
            created = await api.create(auth, ONE_SCENE)
            assert created.status_code == 202, created.text
            project_id = created.json()["project_id"]

            key = auth["Authorization"].removeprefix("Bearer ")
            url = f"{notifier.base_url}/v1/ws/projects/{project_id}"
            async with client(url, key=key) as ws:
                seen = [await receive(ws)]
                while seen[-1]["type"] != "project.finished":
                    seen.append(await receive(ws))
            assert seen[0]["type"] == "snapshot"
            assert "clip.updated" in [message["type"] for message in seen]

    (request,) = [s for s in spans.get_finished_spans() if s.name == "POST /v1/projects"]
    assert request.kind is SpanKind.SERVER
    assert request.context is not None
    trace_id = request.context.trace_id

    def of_the_request() -> list[ReadableSpan]:
        return [
            s
            for s in spans.get_finished_spans()
            if s.context is not None and s.context.trace_id == trace_id
        ]

    # The last push is finished a moment after the client read it.
    await eventually(
        lambda: any(s.name == "project.finished push" for s in of_the_request()),
        "the push of project.finished recorded",
    )
    traced = of_the_request()
    assert {service_of(s) for s in traced} == {"api", "submitter", "poller", "notifier"}
    names = {(service_of(s), s.name, s.kind) for s in traced}
    assert {
        ("api", "POST /v1/projects", SpanKind.SERVER),
        ("api", "submitter.submit_clip publish", SpanKind.PRODUCER),
        ("submitter", "submitter.submit_clip process", SpanKind.CONSUMER),
        ("submitter", "runware videoInference", SpanKind.CLIENT),
        ("submitter", "poller.check_clip publish", SpanKind.PRODUCER),
        ("poller", "poller.check_clip process", SpanKind.CONSUMER),
        ("poller", "runware getResponse", SpanKind.CLIENT),
        ("poller", "clip.updated publish", SpanKind.PRODUCER),
        ("notifier", "clip.updated receive", SpanKind.CONSUMER),
        ("notifier", "clip.updated push", SpanKind.PRODUCER),
        ("notifier", "project.finished push", SpanKind.PRODUCER),
    } <= names
    # Every span but the request's own has its parent in the same trace: no broken links.
    ids = {s.context.span_id for s in traced if s.context is not None}
    orphans = [
        s.name
        for s in traced
        if s is not request and (s.parent is None or s.parent.span_id not in ids)
    ]
    assert orphans == []
