"""Log records that name their request and trace: text lines, or JSON lines (``telemetry.log_format``)."""

from __future__ import annotations

import logging
import os
from contextvars import ContextVar
from typing import Literal

from opentelemetry import trace

# The request being handled (set by the cascade, the router and a tier worker; asyncio tasks copy it).
LogFormat = Literal["text", "json"]
REQUEST_ID: ContextVar[str] = ContextVar("cascade_request_id", default="")
TEXT_FORMAT = "%(asctime)s %(levelname)s {service} %(name)s: %(message)s"


class RequestContext(logging.Filter):
    """Adds ``request_id``, ``trace_id`` and ``span_id`` to a record, where known (the current span's ids).

    A process without a tracer provider still has the caller's trace id: OpenTelemetry's no-op
    tracer keeps the parent's context, so the ids are those the caller sent.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        if request_id:
            record.request_id = request_id
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.trace_id, record.span_id = format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
        return True


def json_formatter(service: str) -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        static_fields={"service": service},
    )


def setup_logging(service: str, *, log_format: LogFormat = "text") -> None:
    """The root handler of a process: stderr, in ``log_format``; level from $CASCADE_LOG_LEVEL."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestContext())
    if log_format == "json":
        handler.setFormatter(json_formatter(service))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT.format(service=service)))
    # force: a second call (`cascade up`, once it has read telemetry.log_format) replaces the first handler.
    logging.basicConfig(level=os.environ.get("CASCADE_LOG_LEVEL", "INFO").upper(), handlers=[handler], force=True)
