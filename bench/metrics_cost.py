"""CPU the metrics add per request, in each process: what the gateway, router and a tier worker record.

    python -m bench.metrics_cost [--exporter none|prometheus] [--calls 3000] [--repeats 9]

``none``: no meter provider (telemetry.metrics_port and otlp_endpoint unset), the instruments are
no-op proxies; ``prometheus``: the SDK with the Prometheus reader, as a service with a metrics port
runs. Process CPU time, best of ``--repeats`` (robust to other load on the machine). One provider
per process: run it once per exporter. bench/overhead.py measures the whole request path.
"""

from __future__ import annotations

import argparse
import os
import time
import timeit
from collections.abc import Callable

from services.core import metrics
from services.core.settings import PriceSettings
from services.gateway.domain import Piece, Purpose, Usage
from services.gateway.metrics import observe
from services.gateway.record import RequestRecord
from services.gateway.requests import CascadeRequest


def escalated_record() -> RequestRecord:
    """A request answered by the large tier after a small answer scored too low: the most a request records."""
    fields = {"routed_text": "q", "max_tokens": 16, "temperature": None, "stop": (), "policy": "cascade"}
    request = CascadeRequest(request_id="bench", messages=(), tenant="", **fields)  # type: ignore[arg-type]
    prices = {t: PriceSettings(input_per_mtok=p, output_per_mtok=p) for t, p in (("small", 0.2), ("large", 0.9))}
    record = RequestRecord(request=request, prices=prices, large_tier="large", ladder=("small", "large"))
    for tier, purpose, confidence in (("small", Purpose.ANSWER, 0.3), ("large", Purpose.ESCALATION, 0.8)):
        attempt = record.begin(tier, purpose)
        attempt.add(Piece(text="x", final=True, usage=Usage(input_tokens=20, output_tokens=16)))
        attempt.confidence = confidence
        record.answered_by(attempt)
    return record


def router_decision() -> None:
    metrics.ROUTER_DURATION.record(0.001)
    metrics.ROUTER_SCORE.record(0.4, {"tier": "small", "model_version": "v1"})


def tier_answer() -> None:
    labels = {"tier": "small", "status": "OK"}
    metrics.TIER_DURATION.record(0.1, labels)
    metrics.TIER_TOKENS.add(20, {"tier": "small", "kind": "input"})
    metrics.TIER_TOKENS.add(16, {"tier": "small", "kind": "output"})


def best_us(call: Callable[[], object], calls: int, repeats: int) -> float:
    return min(timeit.Timer(call, timer=time.process_time).repeat(repeats, calls)) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exporter", choices=["none", "prometheus"], default="prometheus")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    if args.exporter == "prometheus":
        from opentelemetry import metrics as otel
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider

        otel.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))
    record = escalated_record()
    costs = {
        "gateway (escalated request, 6 measurements)": best_us(lambda: observe(record), args.calls, args.repeats),
        "router (2)": best_us(router_decision, args.calls, args.repeats),
        "tier worker (3)": best_us(tier_answer, args.calls, args.repeats),
    }
    print(f"exporter {args.exporter}, CPU us per request, best of {args.repeats}x{args.calls}:")
    for what, us in costs.items():
        print(f"  {what}: {us:.1f}")
    print("load average", " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
