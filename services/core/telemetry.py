"""Tracing, set up once per process; W3C trace context carried in NATS headers and gRPC metadata."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from services.core.settings import TelemetrySettings

log = logging.getLogger(__name__)
_configured = False


def setup_tracing(service_name: str, settings: TelemetrySettings, *, exporter: SpanExporter | None = None) -> None:
    """Install the process's tracer provider (once; later calls are ignored)."""
    global _configured
    if _configured:
        return
    _configured = True
    exporters = list(_exporters(settings, exporter))
    if not exporters:
        return  # nobody collects spans: keep OpenTelemetry's no-op tracer, which costs nothing per request
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    for exp in exporters:
        provider.add_span_processor(BatchSpanProcessor(exp))
    trace.set_tracer_provider(provider)


def _exporters(settings: TelemetrySettings, extra: SpanExporter | None) -> Iterable[SpanExporter]:
    if extra is not None:
        yield extra
    if settings.console:
        yield ConsoleSpanExporter()
    if settings.otlp_endpoint:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.error("telemetry.otlp_endpoint is set but the `otlp` extra is not installed; spans stay local")
            return
        yield OTLPSpanExporter(endpoint=settings.otlp_endpoint, insecure=True)


def span(
    module: str, name: str, *, context: Context | None = None, **kwargs: Any
) -> AbstractContextManager[trace.Span]:
    """``tracer(module).start_as_current_span(name, context=context, **kwargs)``, or, while no tracer
    provider is installed (no exporter configured: the default), no span at all. OpenTelemetry's no-op
    tracer still makes a span object and attaches and detaches a context per call; the gateway made four
    a request. What log records name stays the same: the current context, or ``context`` (a caller's
    trace from a message's headers), attached for the block."""
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return tracer(module).start_as_current_span(name, context=context, **kwargs)
    if context is None or not trace.get_current_span(context).get_span_context().is_valid:
        return nullcontext(trace.INVALID_SPAN)
    return _attached(context)


@contextmanager
def _attached(context: Context) -> Iterator[trace.Span]:
    token = otel_context.attach(context)
    try:
        yield trace.get_current_span(context)
    finally:
        otel_context.detach(token)


@functools.cache
def tracer(name: str) -> trace.Tracer:
    # One per module: get_tracer builds a tracer each call (~30 us of the gateway's every request, three
    # spans a request). Before a provider is set this is a ProxyTracer, which follows the one set later.
    return trace.get_tracer(name)


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """The current trace context as message headers (traceparent, tracestate)."""
    carrier = dict(headers or {})
    if trace.get_current_span().get_span_context().is_valid:  # nothing to pass on otherwise
        propagate.inject(carrier)
    return carrier


def extract_context(headers: Mapping[str, str] | None) -> Context:
    """The trace context a message or call came with (empty when none)."""
    if not headers:
        return Context()
    return propagate.extract(dict(headers))
