"""OpenTelemetry traces: one provider per process, the W3C trace context in AMQP headers.

A clip's trace runs from the REST request (the api's server span) through every
publish (a producer span that writes ``traceparent``/``tracestate`` into the
message's headers) and every consume (a consumer span whose parent is read back
from them), the Runware HTTP calls (client spans) and the WebSocket push (the
notifier's send of the event). A retry or a delayed check is a copy of the
message with the same headers, so it stays in the trace of the request that
started the chain.

Nothing is exported unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set: without a
provider, OpenTelemetry's API hands out non-recording spans that cost next to
nothing and inject no header. With it, spans go in batches over OTLP/HTTP to
``<endpoint>/v1/traces`` (the exporter reads the other ``OTEL_EXPORTER_OTLP_*``
variables, such as headers, itself), and the provider flushes at exit.

Every span names the reelflow service that made it (``reelflow.service``), from
a context variable :func:`configure_tracing` sets: in a deployment each process
is one service (also its resource's ``service.name``); tests run several
services in one process under one provider, and tell them apart by it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from reelflow_common.settings import LogSettings

#: the instrumentation scope of every reelflow span
TRACER_NAME = "reelflow"
#: span attribute: which reelflow service made the span
SERVICE_ATTRIBUTE = "reelflow.service"

_service: ContextVar[str] = ContextVar("reelflow_tracing_service", default="reelflow")
#: the last provider asked and its tracer (tests swap the provider)
_cached: tuple[trace.TracerProvider, trace.Tracer] | None = None

__all__ = [
    "Context",
    "Span",
    "SpanKind",
    "configure_tracing",
    "current_context",
    "extract",
    "inject",
    "mark_error",
    "span",
]


def configure_tracing(settings: LogSettings, *, service: str) -> TracerProvider | None:
    """Name this service's spans; install the OTLP exporter when an endpoint is set.

    Returns the provider it installed, or None: no endpoint, or a provider is
    installed already (another service in this process, or a test's).
    """
    _service.set(service)
    endpoint = settings.otel_exporter_otlp_endpoint
    if not endpoint or isinstance(trace.get_tracer_provider(), TracerProvider):
        return None
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: f"reelflow-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint))))
    trace.set_tracer_provider(provider)
    return provider


def traces_url(endpoint: str) -> str:
    """Where OTLP/HTTP takes spans, given ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the collector's base)."""
    return f"{endpoint.rstrip('/')}/v1/traces"


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Context | None = None,
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> Iterator[Span]:
    """A current span named ``name``; an exception leaving the block marks it as an error.

    ``parent`` is a context from :func:`extract` or :func:`current_context`
    (default: the current one).
    """
    with _tracer().start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes={SERVICE_ATTRIBUTE: _service.get(), **(attributes or {})},
    ) as current:
        yield current


def _tracer() -> trace.Tracer:
    """The current provider's tracer, made once per provider (no provider: a no-op one)."""
    global _cached
    provider = trace.get_tracer_provider()
    if _cached is None or _cached[0] is not provider:
        _cached = (provider, provider.get_tracer(TRACER_NAME))
    return _cached[1]


def mark_error(current: Span, description: str) -> None:
    """Mark ``current`` failed without an exception (an HTTP 5xx, a dead-lettered message)."""
    current.set_status(Status(StatusCode.ERROR, description))


def inject(headers: MutableMapping[str, Any]) -> None:
    """Write the current trace context into ``headers`` (``traceparent``, ``tracestate``)."""
    propagate.inject(headers)


def extract(headers: Mapping[str, Any] | None) -> Context:
    """The trace context carried by ``headers`` (AMQP headers may hold bytes)."""
    text = {
        key: value.decode() if isinstance(value, bytes) else value
        for key, value in (headers or {}).items()
        if isinstance(value, str | bytes)
    }
    return propagate.extract(text)


def current_context() -> Context:
    """The current trace context, to parent a span started later elsewhere."""
    return otel_context.get_current()


def is_sampled(context: Context) -> bool:
    """Whether ``context`` holds a span being recorded: a child of it would be recorded too."""
    return trace.get_current_span(context).get_span_context().trace_flags.sampled
