"""The services as processes: their spans reach an OTLP collector, their logs carry the id.

A small OTLP/HTTP receiver on 127.0.0.1 stands in for the OpenTelemetry
collector; the four services export to it because ``OTEL_EXPORTER_OTLP_ENDPOINT``
names it, exactly as an operator would configure them.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from reelflow_devtools.launcher import Stack
from tests.e2e.stack import e2e_config, started, watch_until_finished
from tests.waiting import eventually, eventually_returns

pytestmark = pytest.mark.e2e

SERVICES = ("api", "submitter", "poller", "notifier")


class Collector:
    """Receives OTLP/HTTP trace exports; ``spans`` holds (service, trace id, span name)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/v1/traces":
                    collector.take(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def take(self, request: ExportTraceServiceRequest) -> None:
        with self._lock:
            for resource_spans in request.resource_spans:
                attributes = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }
                service = attributes.get("service.name", "")
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append((service, span.trace_id.hex(), span.name))

    def named(self, service: str, name: str) -> list[str]:
        """The trace ids of the spans of that service and name."""
        with self._lock:
            return [trace for who, trace, what in self.spans if (who, what) == (service, name)]

    def of_trace(self, trace_id: str) -> list[tuple[str, str, str]]:
        with self._lock:
            return [span for span in self.spans if span[1] == trace_id]

    def __enter__(self) -> Collector:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as running:
        yield running


@pytest.fixture
def traced_stack(
    amqp_url: str, mongo_url: str, tmp_path: Path, collector: Collector
) -> Iterator[Stack]:
    config = e2e_config(
        amqp_url,
        mongo_url,
        tmp_path / "stack",
        webhooks=False,
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
        # Batches leave every 100 ms rather than every 5 s.
        OTEL_BSP_SCHEDULE_DELAY="100",
        # The notifier logs each push at debug level.
        REELFLOW_LOG_LEVEL="DEBUG",
    )
    yield from started(config)


async def test_a_request_is_one_exported_trace_and_its_id_is_in_every_services_logs(
    traced_stack: Stack, collector: Collector
) -> None:
    key = await traced_stack.issue_key("tenant-traced")
    correlation_id = f"e2e-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(
        base_url=traced_stack.api_url, headers={"Authorization": f"Bearer {key}"}
    ) as api:
        created = await api.post(
            "/v1/projects",
            json={"scenes": [{"prompt": "a fox [sim:latency=10]"}]},
            headers={"X-Correlation-ID": correlation_id},
        )
    assert created.status_code == 202, created.text
    assert created.headers["X-Correlation-ID"] == correlation_id
    project_id = created.json()["project_id"]

    messages = await watch_until_finished(
        f"{traced_stack.ws_url}/v1/ws/projects/{project_id}?token={key}"
    )
    assert messages[-1]["status"] == "completed"

    async def request_trace() -> str | None:
        found = collector.named("reelflow-api", "POST /v1/projects")
        return found[0] if found else None

    trace_id = await eventually_returns(request_trace, "the api's span exported")
    services = {f"reelflow-{name}" for name in SERVICES}
    spans = {"runware videoInference", "runware getResponse", "project.finished push"}

    def whole_trace_exported() -> bool:
        exported = collector.of_trace(trace_id)
        return {service for service, _t, _n in exported} == services and spans <= {
            name for _s, _t, name in exported
        }

    # Each process exports in batches of its own, so they arrive in any order.
    await eventually(whole_trace_exported, "every service's spans in the request's trace")

    for name in SERVICES:
        assert f'"correlation_id": "{correlation_id}"' in traced_stack.logs(name), name
