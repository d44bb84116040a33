"""With telemetry.otlp_endpoint, a service pushes its spans and metrics to an OTLP/gRPC receiver.

The receiver is a real grpc.aio server implementing OTLP's trace and metrics services (what an
OpenTelemetry collector listens with); the service is a real `python -m services.router` process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import yaml
from grpc import aio
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from cascade.v1 import events_pb2
from services.core import subjects
from services.core.nats import connect_nats
from tests.support.processes import wait_for_line
from tests.support.system import eventually, openai_tier


class Receiver(metrics_service_pb2_grpc.MetricsServiceServicer, trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.metrics: set[str] = set()
        self.span_attributes: dict[str, dict[str, object]] = {}

    async def Export(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802 - OTLP's method name
        if isinstance(request, metrics_service_pb2.ExportMetricsServiceRequest):
            for rm in request.resource_metrics:
                self.metrics.update(m.name for sm in rm.scope_metrics for m in sm.metrics)
            return metrics_service_pb2.ExportMetricsServiceResponse()
        for rs in request.resource_spans:
            for span in (s for ss in rs.scope_spans for s in ss.spans):
                attrs = {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}
                self.span_attributes[span.name] = attrs
        return trace_service_pb2.ExportTraceServiceResponse()


async def test_a_router_pushes_metrics_and_spans_over_otlp(nats_server, tmp_path):
    receiver, server = Receiver(), aio.server()
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(receiver, server)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    tier = openai_tier("http://127.0.0.1:9/v1")
    config = {
        "nats": {"url": nats_server.url},
        "tiers": {"small": tier, "large": tier},
        "telemetry": {"otlp_endpoint": f"http://127.0.0.1:{port}", "metrics_export_interval_s": 0.5},
    }
    (tmp_path / "cascade.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
    log = tmp_path / "router.log"
    with log.open("wb") as out:
        cmd = [sys.executable, "-m", "services.router", "--config", str(tmp_path / "cascade.yaml")]
        process = subprocess.Popen(cmd, stdout=out, stderr=out, env=env)
    try:
        await wait_for_line(log, "router ready", process)
        nc = await connect_nats(nats_server.url, name="otlp-probe")
        try:
            request = events_pb2.RouteRequest(request_id="otlp-route", text="What is 2 + 2?")
            await nc.request(subjects.ROUTE, request.SerializeToString(), timeout=5)
        finally:
            await nc.close()
        assert await eventually(lambda: "cascade.router.score" in receiver.metrics, within_s=20), receiver.metrics
    finally:
        process.send_signal(signal.SIGTERM)  # the tracer's batch processor flushes at exit
        await asyncio.to_thread(process.wait, 30)
        await server.stop(None)
    span = receiver.span_attributes["router.route"]
    assert span["cascade.request_id"] == "otlp-route" and span["cascade.router.model_version"], span
