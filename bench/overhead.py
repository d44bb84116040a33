"""How much latency the cascade adds: the same requests straight to an OpenAI-compatible server,
and through the cascade (gRPC -> gateway -> NATS -> router -> tier worker -> the same server).

    python -m bench.overhead [--requests 400] [--concurrency 1 32] [--max-tokens 16]
                             [--policy cascade|route|small|large] [--confidence logprob|agreement|scorer]

The cascade runs as `cascade up` runs it: a nats-server and one process per service. The LLM
server is the project's fake OpenAI server (tests/support/openai_server.py), so the figures
are the routing overhead alone. Both paths stream the answer with logprobs and read it whole, and
both reach the server through the tier's own client (`OpenAIBackend`), so "added" is the cascade's
hops and nothing else.
Prints p50/p99 latency of each path, the difference, and requests per second.

--policy: cascade asks the router and scores each small answer with the confidence model (the
escalation threshold is 0, so nothing escalates: the figure is the decision overhead);
route asks the router only; small and large skip it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from services.core.nats import free_port
from services.sdk import AsyncCascadeClient
from services.tier.backends.base import Generation, Message
from services.tier.backends.openai import OpenAIBackend
from tests.support.openai_server import start_fake_openai

REPO = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def timed(n: int, concurrency: int, call) -> tuple[list[float], float]:  # type: ignore[no-untyped-def]
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            start = time.perf_counter()
            await call(i)
            latencies.append((time.perf_counter() - start) * 1e3)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, n / (time.perf_counter() - start)


def prompt(i: int) -> str:
    return f"Question {i}: what is {i} plus {i * 7}? Explain briefly."


def direct_path(base_url: str, max_tokens: int) -> tuple[OpenAIBackend, Callable[[int], Awaitable[None]]]:
    backend = OpenAIBackend(base_url=base_url, model="fake-model")

    async def call(i: int) -> None:
        generation = Generation(
            request_id=str(i), messages=[Message(role="user", content=prompt(i))], max_tokens=max_tokens
        )
        text = [delta.text async for delta in backend.stream(generation)]
        assert "".join(text)

    return backend, call


def write_config(base_url: str, workdir: Path, confidence: str) -> tuple[Path, int]:
    port = free_port()
    tier = {"backend": "openai", "openai": {"base_url": base_url, "model": "fake-model"}}
    config = {
        "nats": {"embedded": {"port": free_port(), "data_dir": str(workdir / "nats")}},
        "gateway": {"port": port},
        "http": {"enabled": False},
        "router": {"reload_interval_s": 0},
        # Threshold 0: every answer is scored but none escalates, so the figure is the decision's cost.
        "escalation": {"confidence": confidence, "min_confidence": 0.0},
        "tiers": {"small": tier, "large": tier},
    }
    path = workdir / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, port


@dataclass
class Bench:
    """A running cascade (as `cascade up` runs it) and the direct path to the same fake server."""

    cascade: AsyncCascadeClient
    direct: Callable[[int], Awaitable[None]]
    max_tokens: int

    def through(self, policy: str) -> Callable[[int], Awaitable[None]]:
        async def call(i: int) -> None:
            result = await self.cascade.generate(prompt(i), policy=policy, max_tokens=self.max_tokens)
            assert result.text and not result.route.escalated

        return call

    async def compare(self, policy: str, *, requests: int, concurrency: int) -> dict[str, tuple[float, float, float]]:
        """(p50 ms, p99 ms, req/s) of the direct path and of the cascade under ``policy``."""
        rows = {}
        for name, call in (("direct", self.direct), ("cascade", self.through(policy))):
            lat, rps = await timed(requests, concurrency, call)
            rows[name] = (statistics.median(lat), percentile(lat, 0.99), rps)
        return rows


@asynccontextmanager
async def running_cascade(*, confidence: str, max_tokens: int) -> AsyncIterator[Bench]:
    server = start_fake_openai()
    workdir = Path(tempfile.mkdtemp(prefix="cascade-bench-"))
    config, port = write_config(server.base_url, workdir, confidence)
    env = {**os.environ, "CASCADE_LOG_LEVEL": "WARNING"}
    up = subprocess.Popen([sys.executable, "-m", "services.cli.main", "up", "--config", str(config)], env=env)
    backend, direct = direct_path(server.base_url, max_tokens)
    try:
        async with AsyncCascadeClient(target=f"127.0.0.1:{port}", timeout=30) as cascade:
            await cascade.wait_ready(timeout=120)
            bench = Bench(cascade=cascade, direct=direct, max_tokens=max_tokens)
            await timed(50, 8, direct)  # warm both paths (connections, code paths)
            await timed(50, 8, bench.through("cascade"))
            yield bench
    finally:
        await backend.aclose()
        up.terminate()
        up.wait(60)
        server.stop()


async def run(args: argparse.Namespace) -> None:
    async with running_cascade(confidence=args.confidence, max_tokens=args.max_tokens) as bench:
        print(
            f"requests={args.requests} max_tokens={args.max_tokens} policy={args.policy} "
            f"confidence={args.confidence} cores={os.cpu_count()}"
        )
        print(f"{'conc':>4} {'path':>8} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
        for concurrency in args.concurrency:
            rows = await bench.compare(args.policy, requests=args.requests, concurrency=concurrency)
            for name, (p50, p99, rps) in rows.items():
                print(f"{concurrency:>4} {name:>8} {p50:>8.2f} {p99:>8.2f} {rps:>8.1f}")
            d, c = rows["direct"], rows["cascade"]
            print(
                f"{concurrency:>4} {'added':>8} {c[0] - d[0]:>8.2f} {c[1] - d[1]:>8.2f} "
                f"{'x%.2f' % (d[2] / c[2]):>8}  (throughput direct/cascade)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests per path and concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument(
        "--policy",
        default="cascade",
        choices=["cascade", "route", "small", "large"],
        help="cascade: router + confidence scoring of small answers; route: router only (default: %(default)s)",
    )
    parser.add_argument(
        "--confidence", default="logprob", help="the gateway's confidence model (escalation.confidence)"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
