"""Request latency while the registry's router and scorer are swapped under load.

    python -m bench.model_swap [--clients 8] [--swaps 6] [--between 40]

A real nats-server, the services in this process (as tests/support/system.py runs them), the fake
OpenAI server as both tiers. Clients send requests back to back; every ``--between`` answered
requests the next router and scorer versions are promoted (alternating between two of each), and
the bench waits until both services serve them. Prints failures, and p50/p99/max latency of the
requests in flight during a swap (begun between the promotion and the moment both services serve
the new versions) beside all the others.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path

from grpc import aio

from cascade.v1 import cascade_pb2, cascade_pb2_grpc
from services.core.nats import NatsServer, connect_nats
from services.registry.manage import ModelRegistry
from tests.support.model_files import router_variant, scorer_variant
from tests.support.openai_server import start_fake_openai
from tests.support.system import make_settings, openai_tier, run_system

ROUTERS = ("20990101.r1", "20990102.r2")
SCORERS = ("scorer-20990101.s1", "scorer-20990102.s2")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def line(name: str, ms: list[float]) -> str:
    return (
        f"{name:<22} n {len(ms):5d}   p50 {percentile(ms, 0.5):7.2f} ms   "
        f"p99 {percentile(ms, 0.99):7.2f} ms   max {max(ms, default=float('nan')):7.2f} ms"
    )


async def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="cascade-swap-"))
    server = start_fake_openai()
    try:
        async with NatsServer(data_dir=workdir / "js") as nats:
            nc = await connect_nats(nats.url, name="bench-swap")
            registry = ModelRegistry(nc=nc, bucket="models")
            for kind, folders in (
                ("router", [router_variant(workdir, v) for v in ROUTERS]),
                ("scorer", [scorer_variant(workdir, v) for v in SCORERS]),
            ):
                for folder in reversed(folders):  # the first of each ends up active
                    await registry.publish(
                        kind=kind, model_dir=folder, version=folder.name, by="bench", reason="", forced=False, gate=None
                    )
            tier = openai_tier(server.base_url)
            settings = make_settings(
                nats.url,
                {"small": tier, "large": tier},
                router={"published": "latest", "registry_bucket": "models", "cache_dir": workdir / "cache"},
                escalation={"confidence": "scorer", "published": "latest"},
            )
            async with run_system(nats, settings) as system, aio.insecure_channel(system.target) as channel:
                await measure(args, cascade_pb2_grpc.CascadeStub(channel), registry, system)
            await nc.drain()
    finally:
        server.stop()


async def measure(args: argparse.Namespace, stub, registry: ModelRegistry, system) -> None:  # type: ignore[no-untyped-def]
    done: list[tuple[float, float]] = []  # (start, latency ms)
    failures: list[str] = []
    stop = asyncio.Event()

    async def client(i: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            start = time.perf_counter()
            try:
                resp = await stub.Generate(
                    cascade_pb2.GenerateRequest(prompt=f"client {i} question {n}: 2 + {n}?", max_tokens=8), timeout=30
                )
                if resp.route.router_error:
                    failures.append(resp.route.router_error)
            except Exception as exc:
                failures.append(repr(exc))
            done.append((start, (time.perf_counter() - start) * 1e3))

    def serving() -> tuple[str, str]:
        return system.router._holder.model.version, system.gateway.cascade.confidence.version

    windows: list[tuple[float, float]] = []
    tasks = [asyncio.create_task(client(i)) for i in range(args.clients)]
    for swap in range(args.swaps):
        target = len(done) + args.between
        while len(done) < target:
            await asyncio.sleep(0.01)
        want = (ROUTERS[(swap + 1) % 2], SCORERS[(swap + 1) % 2])
        begin = time.perf_counter()
        await registry.promote(kind="router", version=want[0], by="bench", reason="swap")
        await registry.promote(kind="scorer", version=want[1], by="bench", reason="swap")
        while serving() != want:
            await asyncio.sleep(0.005)
        windows.append((begin, time.perf_counter()))
    target = len(done) + args.between
    while len(done) < target:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.gather(*tasks)

    def in_swap(start: float) -> bool:
        return any(a <= start <= b for a, b in windows)

    swap_ms = [ms for start, ms in done if in_swap(start)]
    other_ms = [ms for start, ms in done if not in_swap(start)]
    print(f"{len(done)} requests, {args.clients} clients, {args.swaps} swaps of router + scorer")
    print(f"failed requests        {len(failures)}")
    print(f"swap windows           {', '.join(f'{(b - a) * 1e3:.0f} ms' for a, b in windows)}")
    print(line("during a swap", swap_ms))
    print(line("outside swaps", other_ms))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.model_swap", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--swaps", type=int, default=6)
    parser.add_argument("--between", type=int, default=40, help="requests answered between two swaps")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
