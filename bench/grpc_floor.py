"""What grpc.aio alone costs here: the cascade's own gRPC API, answered at once by a servicer that does nothing.

    python -m bench.grpc_floor [--seconds 3] [--concurrency 1 32]

The floor under bench/overhead's grpc path: a server process (uvloop, grpc.aio, the Cascade service
answering Generate with a fixed GenerateResponse) and the same closed-loop SDK client, both on these
cores. Its round trip at concurrency 1 is what any Python gRPC front of the cascade pays before routing,
calling a tier or recording an outcome; its requests/s at concurrency 32 bound one gateway process.
bench.overhead measures the same server as its ``floor`` path, interleaved with the cascade's paths.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

import uvloop
from grpc import aio

from bench.load import closed_loop
from cascade.v1 import cascade_pb2, cascade_pb2_grpc
from services.core.nats import free_port
from services.sdk import AsyncCascadeClient


class _Instant(cascade_pb2_grpc.CascadeServicer):
    async def Generate(  # noqa: N802 - gRPC method name
        self, request: cascade_pb2.GenerateRequest, context: aio.ServicerContext
    ) -> cascade_pb2.GenerateResponse:
        return cascade_pb2.GenerateResponse(request_id=request.request_id or "r", text="The answer is four.")


async def serve(port: int) -> None:
    server = aio.server()
    cascade_pb2_grpc.add_CascadeServicer_to_server(_Instant(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        await server.wait_for_termination()
    finally:  # cancelled (the test runs it as a task): a grpc server left running keeps the process alive
        await server.stop(0)


async def measure(port: int, seconds: float, levels: list[int]) -> None:
    async with AsyncCascadeClient(target=f"127.0.0.1:{port}", timeout=10) as client:
        await client.wait_ready(timeout=30)

        async def call(i: int) -> None:
            assert (await client.generate(f"Question {i}", policy="route")).text

        await closed_loop(call, concurrency=8, seconds=0, min_requests=500)  # warm up
        print(f"bare grpc.aio (bench.grpc_floor), cores={os.cpu_count()}, {seconds:g} s per level")
        print("| concurrency | req/s | p50 ms | p99 ms |")
        print("|---|---|---|---|")
        for n in levels:
            level = await closed_loop(call, concurrency=n, seconds=seconds)
            p50 = statistics.median(level.latencies_ms)
            print(f"| {n} | {level.rps:.0f} | {p50:.2f} | {level.percentile(0.99):.2f} |")


def start_server(port: int) -> subprocess.Popen[bytes]:
    """The do-nothing server in a process of its own, as bench.overhead's ``floor`` path uses it."""
    return subprocess.Popen([sys.executable, "-m", "bench.grpc_floor", "--serve", str(port)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the server process
    args = parser.parse_args()
    if args.serve:
        uvloop.run(serve(args.serve))
        return
    port = free_port()
    server = start_server(port)
    try:
        uvloop.run(measure(port, args.seconds, args.concurrency))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
