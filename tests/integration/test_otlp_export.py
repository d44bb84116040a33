"""With telemetry.otlp_endpoint, a service pushes its spans and metrics to an OTLP/gRPC receiver.

The receiver is a real grpc.aio server implementing OTLP's trace and metrics services (what an
OpenTelemetry collector listens with); the service is a real `python -m services.router` process.
"""

from __future__ import annotations

from grpc import aio
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.support.router_process import routed_router_process
from tests.support.system import eventually


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
    telemetry = {"otlp_endpoint": f"http://127.0.0.1:{port}", "metrics_export_interval_s": 0.5}
    try:
        async with routed_router_process(tmp_path, nats_server.url, telemetry=telemetry, request_id="otlp-route"):
            assert await eventually(lambda: "cascade.router.score" in receiver.metrics, within_s=20), receiver.metrics
        # the process has exited: the tracer's batch processor flushed its spans at exit
    finally:
        await server.stop(None)
    span = receiver.span_attributes["router.route"]
    assert span["cascade.request_id"] == "otlp-route" and span["cascade.router.model_version"], span
