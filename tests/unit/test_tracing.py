"""Tracing is off without an endpoint; the trace context survives a trip through AMQP headers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import NonRecordingSpan
from opentelemetry.util._once import Once

from reelflow_common import tracing
from reelflow_common.settings import LogSettings
from reelflow_common.tracing import (
    SERVICE_ATTRIBUTE,
    configure_tracing,
    extract,
    inject,
    span,
    traces_url,
)


@pytest.fixture
def no_provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process with no tracer provider yet (OpenTelemetry sets one once per process).

    The service name configure_tracing sets is put back too, for the tests after this one.
    """
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    token = tracing._service.set("reelflow")
    yield
    tracing._service.reset(token)


@pytest.mark.usefixtures("no_provider")
def test_without_an_endpoint_no_provider_is_installed_and_no_header_written() -> None:
    assert configure_tracing(LogSettings(otel_exporter_otlp_endpoint=None), service="api") is None
    assert configure_tracing(LogSettings(otel_exporter_otlp_endpoint=""), service="api") is None

    headers: dict[str, str] = {}
    with span("anything") as current:
        inject(headers)
    assert isinstance(current, NonRecordingSpan)
    assert headers == {}


@pytest.mark.usefixtures("no_provider")
def test_with_an_endpoint_the_service_exports_under_its_own_name() -> None:
    settings = LogSettings(otel_exporter_otlp_endpoint="http://otel-collector:4318")

    provider = configure_tracing(settings, service="poller")

    assert provider is not None
    try:
        assert trace.get_tracer_provider() is provider
        assert provider.resource.attributes[SERVICE_NAME] == "reelflow-poller"
        # A second service in the same process keeps the first one's provider.
        assert configure_tracing(settings, service="api") is None
    finally:
        provider.shutdown()


def test_the_traces_url_is_the_endpoint_with_the_otlp_path() -> None:
    assert traces_url("http://otel-collector:4318") == "http://otel-collector:4318/v1/traces"
    assert traces_url("https://otel.example.com/") == "https://otel.example.com/v1/traces"


@pytest.mark.usefixtures("no_provider")
def test_a_span_started_from_amqp_headers_continues_their_trace() -> None:
    trace.set_tracer_provider(TracerProvider())
    configure_tracing(LogSettings(), service="submitter")
    headers: dict[str, object] = {"project_id": "p1"}
    with span("publish") as sent:
        inject(headers)
    # aio-pika may hand header values back as bytes.
    received = {
        key: value.encode() if isinstance(value, str) else value for key, value in headers.items()
    }

    with span("process", parent=extract(received)) as handled:
        pass

    assert isinstance(headers["traceparent"], str)
    assert isinstance(handled, ReadableSpan)
    assert handled.get_span_context().trace_id == sent.get_span_context().trace_id
    assert handled.parent is not None
    assert handled.parent.span_id == sent.get_span_context().span_id
    assert handled.attributes is not None
    assert handled.attributes[SERVICE_ATTRIBUTE] == "submitter"
