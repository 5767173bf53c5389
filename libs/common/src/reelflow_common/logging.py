"""structlog set-up: JSON lines in production, a readable console in development.

Context (``service``: ``reelflow-api`` and so on, as traces and scrape jobs name it;
``correlation_id``, ``project_id``, ``tenant_id``, ``task_uuid``) is bound
with :func:`bound_context` and appears on every line logged inside it. Values
that look like secrets are masked before a line is written, and secrets inside
URLs (``?token=``, the webhook path) are redacted on every line, uvicorn's too.
uvicorn's access line of a probe or a scrape answered 2xx is not written
(:class:`QuietProbes`): a kubelet's probes and Prometheus alone made thousands a day.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog
from opentelemetry import trace

from reelflow_common.redact import redact_event
from reelflow_common.settings import LogSettings

_SECRET_KEYS = ("api_key", "apikey", "token", "authorization", "password", "secret")


def _mask_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if any(word in key.lower() for word in _SECRET_KEYS):
            event_dict[key] = "***"
    return event_dict


def _add_trace_ids(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``trace_id``/``span_id`` of the current span, so a log line leads to its trace."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict


class QuietProbes(logging.Filter):
    """Drops uvicorn's access line of a request to one of ``paths`` (exactly: no query)
    answered 2xx: probes and scrapes every few seconds, each a line saying nothing. Any
    other answer of theirs (a 503 of ``/readyz``) is still written."""

    def __init__(self, paths: frozenset[str]) -> None:
        super().__init__()
        self.paths = paths

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn's access line: '%s - "%s %s HTTP/%s" %d' (client, method, path, version, status)
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            path, status = args[2], args[4]
            if path in self.paths and isinstance(status, int) and 200 <= status < 300:
                return False
        return True


def logs_as_json(settings: LogSettings) -> bool:
    """Whether log lines are JSON, for a collector, rather than console lines for a person."""
    return settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stderr.isatty()
    )


def configure_logging(settings: LogSettings, *, service: str) -> None:
    """Route structlog and the stdlib loggers (uvicorn, aio_pika, pymongo) through one formatter."""
    use_json = logs_as_json(settings)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_trace_ids,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_secrets,
        # Here, not as a filter on uvicorn's loggers: every line of every logger passes.
        redact_event,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        # A line below the level is dropped first, before any processor builds it: at
        # WARNING the per-message info lines otherwise cost the whole chain, then nothing.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            # Again: a traceback is text only from here, and an error may name a URL.
            redact_event,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # uvicorn may have set up its loggers already in this process (a Config with
    # access_log=False silences "uvicorn.access" for every server after it): reset.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # Here, not at the top: ops logs through this module.
    from reelflow_common.ops import OPS_PATHS

    access = logging.getLogger("uvicorn.access")
    access.filters[:] = [kept for kept in access.filters if not isinstance(kept, QuietProbes)]
    access.addFilter(QuietProbes(OPS_PATHS))
    for noisy in ("aio_pika", "aiormq", "pymongo", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    structlog.contextvars.clear_contextvars()
    # As traces (service.name) and scrape jobs name it: reelflow-api, not api.
    structlog.contextvars.bind_contextvars(service=f"reelflow-{service}")


@contextmanager
def bound_context(**values: str | None) -> Iterator[None]:
    """Bind correlation ids (correlation_id, project_id, tenant_id, task_uuid) for the lines
    logged inside."""
    present = {key: value for key, value in values.items() if value is not None}
    with structlog.contextvars.bound_contextvars(**present):
        yield


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
