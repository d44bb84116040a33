"""Metrics: every instrument, defined once, and the per-process setup that exports them.

One instrumentation feeds both a Prometheus endpoint (``telemetry.metrics_port``) and OTLP
(``telemetry.otlp_endpoint``). The instruments are OpenTelemetry API proxies: until
:func:`setup_metrics` installs a meter provider they do nothing, at the cost of one attribute
check per call, so code records unconditionally and a process without an exporter pays ~nothing.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from services.core.errors import ConfigError

if TYPE_CHECKING:  # the SDK is imported by setup_metrics only: a process (or CLI) that exports nothing skips it
    from opentelemetry.sdk.metrics.export import MetricReader

    from services.core.settings import TelemetrySettings

log = logging.getLogger(__name__)
_meter = metrics.get_meter("cascade")
_configured = False

# Histogram buckets: whole requests (LLM answers take seconds), the router's scoring (about a
# millisecond), and probabilities in [0, 1] (router scores, answer confidences).
REQUEST_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
ROUTER_S = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
UNIT = tuple(round(i * 0.1, 1) for i in range(1, 10))

# Each measurement costs the SDK several microseconds, so a count is a histogram's _count, never a
# counter of its own. Gateway, per request: tier (the answering tier, else the last tried), policy, status.
REQUEST_DURATION = _meter.create_histogram(
    "cascade.request.duration",
    unit="s",
    description="Request latency (and, as its count, requests)",
    explicit_bucket_boundaries_advisory=REQUEST_S,
)
ESCALATIONS = _meter.create_counter("cascade.escalations", unit="{request}", description="Escalated requests")
CONFIDENCE = _meter.create_histogram(
    "cascade.confidence", unit="1", description="Answer confidence", explicit_bucket_boundaries_advisory=UNIT
)
COST = _meter.create_counter("cascade.cost", unit="usd", description="USD spent, by tier and purpose of the attempt")
# Gateway, per failed RPC (any method, any cause: token, rate limit, bad request, the cascade's own
# errors): the count of what callers were refused, including requests no cascade ever ran for.
RPC_ERRORS = _meter.create_counter("cascade.rpc.errors", unit="{call}", description="Failed gateway calls by status")
# Router.
ROUTER_DURATION = _meter.create_histogram(
    "cascade.router.duration", unit="s", description="Scoring latency", explicit_bucket_boundaries_advisory=ROUTER_S
)
ROUTER_SCORE = _meter.create_histogram(
    "cascade.router.score", unit="1", description="Router difficulty score", explicit_bucket_boundaries_advisory=UNIT
)
# Tier workers.
TIER_DURATION = _meter.create_histogram(
    "cascade.tier.duration",
    unit="s",
    description="Tier answer latency (and count)",
    explicit_bucket_boundaries_advisory=REQUEST_S,
)
TIER_TOKENS = _meter.create_counter("cascade.tier.tokens", unit="{token}", description="Tokens in and out")
# The HTTP front door: path (the route's template) and status code.
HTTP_DURATION = _meter.create_histogram(
    "cascade.http.duration", unit="s", description="HTTP request latency", explicit_bucket_boundaries_advisory=REQUEST_S
)
# Every NATS client.
NATS_RECONNECTS = _meter.create_counter("cascade.nats.reconnects", unit="{reconnect}", description="NATS reconnects")


class OutcomeBacklog(Protocol):
    @property
    def pending(self) -> int: ...
    @property
    def size_bytes(self) -> int: ...


# The gateways of this process (tests run several): their backlog is read at each collection.
_backlogs: weakref.WeakSet[OutcomeBacklog] = weakref.WeakSet()


def watch_outcomes(backlog: OutcomeBacklog) -> None:
    """Report ``backlog``'s (a gateway's outcome spool) pending events and size while it lives."""
    _backlogs.add(backlog)


def _pending(_: CallbackOptions) -> Iterable[Observation]:
    yield Observation(sum(b.pending for b in list(_backlogs)))


def _spool_bytes(_: CallbackOptions) -> Iterable[Observation]:
    yield Observation(sum(b.size_bytes for b in list(_backlogs)))


OUTCOMES_PENDING = _meter.create_observable_gauge(
    "cascade.outcomes.pending", [_pending], unit="{event}", description="Outcome events not yet stored"
)
OUTCOME_SPOOL = _meter.create_observable_gauge(
    "cascade.outcomes.spool", [_spool_bytes], unit="By", description="Outcome spool size"
)


def setup_metrics(service_name: str, settings: TelemetrySettings) -> int | None:
    """Install the process's meter provider; the Prometheus port, if any.

    Once one is installed later calls are ignored (OpenTelemetry cannot replace it); a call with
    neither a port nor an OTLP endpoint installs nothing, and the instruments stay no-ops.
    """
    global _configured
    if _configured:
        return None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource

    readers: list[MetricReader] = []
    port = settings.metrics_port or None
    if port is not None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        try:
            start_http_server(port, addr=settings.metrics_host)  # a daemon thread: off the event loop
        except OSError as exc:
            where = f"{settings.metrics_host}:{port}"
            raise ConfigError(f"telemetry.metrics_port: cannot listen on {where}: {exc}") from exc
        readers.append(PrometheusMetricReader())
        log.info("%s metrics on http://%s:%d/metrics", service_name, settings.metrics_host, port)
    if settings.otlp_endpoint:
        otlp = _otlp_reader(settings)
        if otlp is not None:
            readers.append(otlp)
    if readers:
        _configured = True
        resource = Resource.create({"service.name": service_name})
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    return port


def _otlp_reader(settings: TelemetrySettings) -> MetricReader | None:
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    try:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    except ImportError:
        log.error("telemetry.otlp_endpoint is set but the `otlp` extra is not installed; metrics are not pushed")
        return None
    interval_ms = settings.metrics_export_interval_s * 1e3
    exporter = OTLPMetricExporter(endpoint=settings.otlp_endpoint, insecure=True)
    return PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms)
