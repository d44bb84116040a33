"""This test process's Prometheus endpoint (services/core/metrics.py), and reading it over HTTP."""

from __future__ import annotations

import functools

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.core.metrics import setup_metrics
from services.core.nats import free_port
from services.core.settings import TelemetrySettings

Labels = frozenset[tuple[str, str]]


@functools.cache
def metrics_url() -> str:
    """Opened once per process: a meter provider, like a tracer provider, cannot be replaced."""
    port = free_port()
    assert setup_metrics("cascade-tests", TelemetrySettings(metrics_port=port)) == port
    return f"http://127.0.0.1:{port}/metrics"


async def scrape(url: str | None = None) -> dict[tuple[str, Labels], float]:
    """Every sample an endpoint (this process's by default) serves, by name and labels (OpenTelemetry's
    scope labels left out)."""
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        response = await client.get(url or metrics_url())
    response.raise_for_status()
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            labels = frozenset((k, v) for k, v in s.labels.items() if not k.startswith("otel_scope_"))
            samples[(s.name, labels)] = s.value
    return samples


def value(samples: dict[tuple[str, Labels], float], name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels`` (0 when absent: a counter not yet incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: dict[tuple[str, Labels], float], name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)
