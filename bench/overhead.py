"""The cascade's own cost and capacity: added latency at concurrency 1, latency against throughput up to saturation.

    python -m bench.overhead [--seconds 3] [--concurrency 1 2 4 8 16 32 64 128 256]
                             [--paths direct floor grpc http] [--policy route] [--max-tokens 16]
                             [--router-mode service|embedded] [--tier-mode worker|embedded] [--stages 1000]
                             [--png docs/capacity.png [--save RUN.json] [--baseline BEFORE.json] [--replot RUN.json]]
                             [--profile-at 32 [--profile-path grpc|http] --profile-dir DIR]

The cascade runs as `cascade up` runs it: a nats-server and one process per service (router, one tier
worker per tier, gateway, the OpenAI-compatible HTTP front door). The upstream LLM is bench/upstream.py,
a minimal OpenAI-compatible server streaming a fixed completion (16 tokens with logprobs): it serves
over 10,000 requests/s on these cores, so what saturates is the cascade, not the model server.

Paths, each a closed loop of ``concurrency`` callers for ``--seconds`` per level:
  direct  the upstream straight through the tier's own client (OpenAIBackend), the reference, asked
          for a whole answer as the cascade asks for a unary caller's (Generation.whole);
  floor   the SDK's ``generate`` -> a bare grpc.aio server answering at once (bench.grpc_floor): what
          gRPC alone costs on this machine, so a run says how fast the machine is;
  grpc    the SDK's ``generate`` -> gateway -> NATS -> router -> tier worker -> upstream;
  http    ``POST /v1/chat/completions`` (not streamed) -> HTTP front door -> the grpc path.
"added" at concurrency 1 is a path's latency minus the direct path's, measured back to back; "beyond
the floor" subtracts the floor path's round trip too: what the cascade itself adds on top of gRPC.
Every process (load generator included) shares the machine's cores; the load average is printed.

--policy: route (default) asks the router, never escalates; cascade also scores each small answer
(threshold 0: nothing escalates, the figure is the decision's cost); small and large skip the router.
--profile-at N: while the grpc path (or --profile-path) runs at concurrency N, py-spy samples every service
process (`pip install py-spy`); the raw profiles land in --profile-dir, their top functions are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import uvloop
import yaml

from bench import grpc_floor, profile
from bench.load import Call, HttpPool, Level, closed_loop
from bench.processes import up_children
from bench.upstream import start_upstream
from services.core.nats import free_port
from services.sdk import AsyncCascadeClient
from services.tier.backends.base import Generation, Message
from services.tier.backends.openai import OpenAIBackend

REPO = Path(__file__).resolve().parents[1]
CONCURRENCY = [1, 2, 4, 8, 16, 32, 64, 128, 256]
PATHS = ["direct", "floor", "grpc", "http"]
_HTTP_MODELS = {"cascade": "cascade", "route": "cascade:route", "small": "cascade:small", "large": "cascade:large"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def prompt(i: int) -> str:
    return f"Question {i}: what is {i} plus {i * 7}? Explain briefly."


def write_config(
    base_url: str, workdir: Path, confidence: str, router_mode: str, tier_mode: str = "worker"
) -> tuple[Path, int, int]:
    grpc_port, http_port = free_port(), free_port()
    # max_concurrency above the highest level measured: the limits must not be what the curve shows.
    tier = {
        "backend": "openai",
        "openai": {"base_url": base_url, "model": "fake-model"},
        "max_concurrency": 1024,
        "mode": tier_mode,
    }
    config = {
        "nats": {"embedded": {"port": free_port(), "data_dir": str(workdir / "nats")}},
        "gateway": {"port": grpc_port, "max_in_flight": 1024},
        "http": {"enabled": True, "port": http_port},
        "router": {"reload_interval_s": 0, "mode": router_mode},
        # Threshold 0: every answer is scored but none escalates, so the figure is the decision's cost.
        "escalation": {"confidence": confidence, "min_confidence": 0.0},
        "tiers": {"small": tier, "large": tier},
        # Its own spool: events another run left in ./.cascade/spool would be drained during this one.
        "outcomes": {"spool_dir": str(workdir / "spool")},
    }
    path = workdir / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, grpc_port, http_port


@dataclass
class Bench:
    """A running cascade (as `cascade up` runs it) and the paths into it."""

    cascade: AsyncCascadeClient
    backend: OpenAIBackend
    http: HttpPool
    max_tokens: int
    services: dict[str, int]  # `cascade up`'s processes by name -> pid
    upstream: list[int]
    floor: AsyncCascadeClient | None = None  # bench.grpc_floor's server, when the floor path is measured
    floor_pid: int | None = None

    @property
    def processes(self) -> dict[str, int]:
        floor = {"floor server": self.floor_pid} if self.floor_pid else {}
        return {**self.services, **{f"upstream-{i}": pid for i, pid in enumerate(self.upstream)}, **floor}

    async def direct(self, i: int) -> None:
        # Asked as the cascade asks for a unary caller's answer: whole, in one response (Generation.whole).
        generation = Generation(
            request_id=str(i),
            messages=[Message(role="user", content=prompt(i))],
            max_tokens=self.max_tokens,
            whole=True,
        )
        text = [delta.text async for delta in self.backend.stream(generation)]
        assert "".join(text)

    def through(self, policy: str) -> Call:
        async def call(i: int) -> None:
            result = await self.cascade.generate(prompt(i), policy=policy, max_tokens=self.max_tokens)
            assert result.text and not result.route.escalated

        return call

    def bare(self, policy: str) -> Call:
        assert self.floor is not None, "the floor path needs running_cascade(floor=True)"
        floor = self.floor

        async def call(i: int) -> None:
            assert (await floor.generate(prompt(i), policy=policy, max_tokens=self.max_tokens)).text

        return call

    def via_http(self, policy: str) -> Call:
        async def call(i: int) -> None:
            body = {
                "model": _HTTP_MODELS[policy],
                "messages": [{"role": "user", "content": prompt(i)}],
                "max_tokens": self.max_tokens,
            }
            status, answer = await self.http.post("/v1/chat/completions", body)
            assert status == 200 and json.loads(answer)["choices"][0]["message"]["content"], answer[:200]

        return call

    def path(self, name: str, policy: str) -> Call:
        if name == "floor":
            return self.bare(policy)
        return {"direct": self.direct, "grpc": self.through(policy), "http": self.via_http(policy)}[name]

    async def compare(self, policy: str, *, requests: int, concurrency: int) -> dict[str, tuple[float, float, float]]:
        """(p50 ms, p99 ms, req/s) of the direct path and of the gRPC path under ``policy`` (bench.confidence)."""
        rows = {}
        for name, call in (("direct", self.direct), ("cascade", self.through(policy))):
            level = await closed_loop(call, concurrency=concurrency, seconds=0, min_requests=requests)
            rows[name] = (statistics.median(level.latencies_ms), level.percentile(0.99), level.rps)
        return rows


@asynccontextmanager
async def running_cascade(
    *,
    confidence: str,
    max_tokens: int,
    upstream_processes: int = 1,
    router_mode: str = "service",
    tier_mode: str = "worker",
    floor: bool = False,
) -> AsyncIterator[Bench]:
    upstream = start_upstream(processes=upstream_processes)
    floor_port = free_port() if floor else 0
    floor_server = grpc_floor.start_server(floor_port) if floor else None
    workdir = Path(tempfile.mkdtemp(prefix="cascade-bench-"))
    config, grpc_port, http_port = write_config(upstream.base_url, workdir, confidence, router_mode, tier_mode)
    env = {**os.environ, "CASCADE_LOG_LEVEL": "WARNING"}
    up = subprocess.Popen([sys.executable, "-m", "services.cli.main", "up", "--config", str(config)], env=env)
    backend = OpenAIBackend(base_url=upstream.base_url, model="fake-model")
    http = HttpPool("127.0.0.1", http_port)
    try:
        async with contextlib.AsyncExitStack() as clients:
            cascade = await clients.enter_async_context(AsyncCascadeClient(target=f"127.0.0.1:{grpc_port}", timeout=60))
            bare = None
            if floor_server is not None:
                bare = await clients.enter_async_context(
                    AsyncCascadeClient(target=f"127.0.0.1:{floor_port}", timeout=60)
                )
                await bare.wait_ready(timeout=60)
            await cascade.wait_ready(timeout=120)
            await _wait_http(http)
            bench = Bench(
                cascade=cascade,
                backend=backend,
                http=http,
                max_tokens=max_tokens,
                services=up_children(up.pid),
                upstream=upstream.pids(),
                floor=bare,
                floor_pid=floor_server.pid if floor_server else None,
            )
            warm = [bench.direct, bench.through("cascade"), bench.via_http("cascade")]
            if bare is not None:
                warm.append(bench.bare("route"))
            for call in warm:
                await closed_loop(call, concurrency=8, seconds=0, min_requests=200)
            yield bench
    finally:
        await http.aclose()
        await backend.aclose()
        up.terminate()
        up.wait(60)
        upstream.stop()
        if floor_server is not None:
            floor_server.terminate()
            floor_server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)  # NATS's data and the spool of this run


async def _wait_http(http: HttpPool, timeout_s: float = 60.0) -> None:
    """`cascade up` starts the HTTP front door after the gateway is SERVING: wait until it answers."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            await http.post("/v1/models", {})  # any answer proves it listens (POST: 405)
            return
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU each process has used so far (``self``: this load generator)."""
    used = {"load generator": sum(os.times()[:2])}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            used[name] = (int(fields[11]) + int(fields[12])) * _TICK_S
    return used


def cpu_per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """CPU milliseconds per request by process: robust to a loaded machine where latency is not."""
    return {name: (after[name] - before[name]) * 1e3 / max(requests, 1) for name in after if name in before}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def measure(bench: Bench, args: argparse.Namespace) -> dict[str, list[Level]]:
    curves: dict[str, list[Level]] = {name: [] for name in args.paths}
    costs: dict[str, list[dict[str, float]]] = {name: [] for name in args.paths}
    for concurrency in args.concurrency:
        for name in args.paths:  # paths back to back at each level, so drift in the machine's load hits all
            if name == "direct" and concurrency > args.direct_up_to:
                continue
            call = bench.path(name, args.policy)
            profiling = name == args.profile_path and concurrency == args.profile_at
            python = {k: v for k, v in bench.services.items() if k != "nats-server"}  # py-spy reads Python only
            samplers = profile.start(python, args.profile_dir, seconds=args.seconds) if profiling else []
            before = cpu_seconds(bench.processes)
            level = await closed_loop(call, concurrency=concurrency, seconds=args.seconds, min_requests=concurrency)
            cpu = cpu_per_request(before, cpu_seconds(bench.processes), len(level.latencies_ms))
            curves[name].append(level)
            costs[name].append(cpu)
            print(
                f"| {name} | {concurrency} | {level.rps:.0f} | {statistics.median(level.latencies_ms):.2f} "
                f"| {level.percentile(0.99):.2f} | {sum(cpu.values()):.2f} | {len(level.latencies_ms)} | {loadavg()} |",
                flush=True,
            )
            if samplers:
                profile.finish(samplers)
    report_cpu(costs, args.concurrency)
    return curves


def report_cpu(costs: dict[str, list[dict[str, float]]], concurrency: list[int]) -> None:
    """CPU ms per request by process at each level of each path."""
    for name, levels in costs.items():
        if not levels:
            continue
        processes = list(levels[0])
        print(f"\nCPU ms per request, {name} path")
        print("| concurrency | " + " | ".join(processes) + " | all |")
        print("|---" * (len(processes) + 2) + "|")
        for level, cpu in zip(concurrency, levels, strict=False):
            row = " | ".join(f"{cpu.get(p, 0):.2f}" for p in processes)
            print(f"| {level} | {row} | {sum(cpu.values()):.2f} |")


async def measure_added(bench: Bench, args: argparse.Namespace) -> dict[str, list[float]]:
    """Concurrency-1 latencies of every path, in ``--rounds`` interleaved one-second rounds, pooled:
    a drift in the machine's load falls on all paths alike."""
    pooled: dict[str, list[float]] = {name: [] for name in args.paths}
    for _ in range(args.rounds):
        for name in args.paths:
            level = await closed_loop(bench.path(name, args.policy), concurrency=1, seconds=1.0)
            pooled[name] += level.latencies_ms
    return pooled


def report_added(pooled: dict[str, list[float]], rounds: int) -> None:
    """Each path's latency at concurrency 1; for the cascade's paths, what they add to the direct call, and
    what they add beyond the floor's round trip too (bare gRPC: the machine's own share)."""
    if "direct" not in pooled:
        return
    d50, d99 = statistics.median(pooled["direct"]), percentile(pooled["direct"], 0.99)
    f50 = statistics.median(pooled["floor"]) if pooled.get("floor") else None
    print(f"\nadded latency at concurrency 1 (path minus direct; {rounds} interleaved rounds of 1 s per path)")
    print("| path | requests | p50 ms | p99 ms | added p50 ms | added p99 ms | added p50 beyond the floor ms |")
    print("|---|---|---|---|---|---|---|")
    for name, latencies in pooled.items():
        p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
        if name in ("direct", "floor"):
            added = "| | | |"
        else:
            beyond = f"{p50 - d50 - f50:.2f}" if f50 is not None else ""
            added = f"| {p50 - d50:.2f} | {p99 - d99:.2f} | {beyond} |"
        print(f"| {name} | {len(latencies)} | {p50:.2f} | {p99:.2f} {added}")


async def report_stages(bench: Bench, policy: str, requests: int) -> None:
    """Where a request's time goes at concurrency 1 (grpc path): what the caller waited, against the
    gateway's own account of its cascade (the response's StageTimings: routing, the tier call, scoring)."""
    rows: list[tuple[float, float, float]] = []
    for i in range(requests):
        began = time.perf_counter()
        result = await bench.cascade.generate(prompt(i), policy=policy, max_tokens=bench.max_tokens)
        rows.append(((time.perf_counter() - began) * 1e3, result.timings.total_ms, result.timings.route_ms))
    caller, cascade, route = (statistics.median(column) for column in zip(*rows, strict=True))
    print(f"\nwhere the time goes at concurrency 1, grpc path, p50 of {requests} requests (ms)")
    print("| caller's latency | gateway's cascade (total_ms) | of which routing (route_ms) | outside the cascade |")
    print("|---|---|---|---|")
    print(f"| {caller:.2f} | {cascade:.2f} | {route:.2f} | {caller - cascade:.2f} |")
    print("(outside the cascade: gRPC both ways, interceptor and parsing, the outcome events, and the wait")
    print(" until the outcome survives the process; `python -m bench.grpc_floor` measures gRPC alone)")


Points = dict[str, list[tuple[int, float, float, float]]]  # path -> (concurrency, req/s, p50 ms, p99 ms)


def points(curves: dict[str, list[Level]]) -> Points:
    return {
        name: [(lv.concurrency, lv.rps, statistics.median(lv.latencies_ms), lv.percentile(0.99)) for lv in levels]
        for name, levels in curves.items()
    }


def plot(runs: dict[str, Points], path: Path, title: str) -> None:
    """p50 and p99 against throughput, one panel each; several runs (e.g. before and after) overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"direct": "tab:gray", "floor": "tab:green", "grpc": "tab:blue", "http": "tab:orange"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for (label, run), style in zip(runs.items(), ("o:", "o-"), strict=False):
        faded = style == "o:" and len(runs) > 1
        for name, rows in run.items():
            for ax, column, which in ((axes[0], 2, "p50"), (axes[1], 3, "p99")):
                rps, latency = [r[1] for r in rows], [r[column] for r in rows]
                line_label = f"{name} ({label})" if len(runs) > 1 else name
                ax.plot(rps, latency, style, color=colors.get(name), label=line_label, alpha=0.45 if faded else 1.0)
                if not faded:
                    for row in rows:
                        ax.annotate(
                            str(row[0]), (row[1], row[column]), fontsize=7, xytext=(3, 3), textcoords="offset points"
                        )
                ax.set_title(f"{which} latency against throughput (labels: concurrency)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("throughput (requests/s)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("latency (ms, log scale)")
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    print(f"wrote {path}")


async def run(args: argparse.Namespace) -> None:
    async with running_cascade(
        confidence=args.confidence,
        max_tokens=args.max_tokens,
        upstream_processes=args.upstream_processes,
        router_mode=args.router_mode,
        tier_mode=args.tier_mode,
        floor="floor" in args.paths,
    ) as bench:
        print(
            f"policy={args.policy} router.mode={args.router_mode} tiers' mode={args.tier_mode} "
            f"confidence={args.confidence} max_tokens={args.max_tokens} "
            f"seconds={args.seconds} per level, cores={os.cpu_count()}, load average at start {loadavg()}"
        )
        pooled = await measure_added(bench, args) if args.rounds else {}
        report_added(pooled, args.rounds)
        if args.stages:
            await report_stages(bench, args.policy, args.stages)
        print(f"\nlatency against throughput, {args.seconds:g} s per level, load average now {loadavg()}")
        print("| path | concurrency | req/s | p50 ms | p99 ms | CPU ms/request | requests | load average |")
        print("|---|---|---|---|---|---|---|---|")
        curves = await measure(bench, args)
    for name, levels in curves.items():
        print(f"{name}: peak {max(level.rps for level in levels):.0f} req/s")
    draw(points(curves), args)


def draw(measured: Points, args: argparse.Namespace) -> None:
    if args.save:
        args.save.write_text(json.dumps(measured))
    if args.png:
        runs = {args.baseline_label: json.loads(args.baseline.read_text())} if args.baseline else {}
        runs[args.label] = measured
        title = (
            f"bench.overhead: policy {args.policy}, {args.max_tokens} tokens, every process on {os.cpu_count()} cores"
        )
        plot(runs, args.png, title)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per path and concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=CONCURRENCY)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds for the added latency (0: skip)")
    parser.add_argument(
        "--stages", type=int, default=0, help="requests for the stage breakdown at concurrency 1 (0: none)"
    )
    parser.add_argument("--paths", nargs="+", default=PATHS, choices=PATHS)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument(
        "--policy",
        default="route",
        choices=list(_HTTP_MODELS),
        help="route: router only; cascade: router + confidence scoring of small answers (default: %(default)s)",
    )
    parser.add_argument(
        "--confidence", default="logprob", help="the gateway's confidence model (escalation.confidence)"
    )
    parser.add_argument(
        "--direct-up-to",
        type=int,
        default=8,
        help="highest concurrency of the direct path: the reference for 'added'; httpx's pool, not the upstream, "
        "limits it beyond a few callers (default: %(default)s)",
    )
    parser.add_argument(
        "--router-mode",
        default="service",
        choices=["service", "embedded"],
        help="router.mode: router processes on NATS, or scoring inside the gateway (default: %(default)s)",
    )
    parser.add_argument(
        "--tier-mode",
        default="worker",
        choices=["worker", "embedded"],
        help="tiers.<name>.mode: tier worker processes on NATS, or the backend called by the gateway "
        "(default: %(default)s)",
    )
    parser.add_argument("--upstream-processes", type=int, default=1, help="bench/upstream.py server processes")
    parser.add_argument("--png", type=Path, help="write the latency-throughput curves here")
    parser.add_argument("--save", type=Path, help="write the curves' points here (JSON), e.g. for --baseline")
    parser.add_argument("--baseline", type=Path, help="a saved run to draw beside this one in the PNG")
    parser.add_argument("--baseline-label", default="before")
    parser.add_argument("--label", default="after", help="this run's name in the PNG when a baseline is drawn")
    parser.add_argument("--profile-at", type=int, help="profile the services while the grpc path runs at this level")
    parser.add_argument("--profile-path", default="grpc", choices=["grpc", "http"], help="the path to profile")
    parser.add_argument("--profile-dir", type=Path, default=Path(tempfile.gettempdir()) / "cascade-profile")
    # uvloop for the load generator too: it shares the cores with what it measures.
    parser.add_argument("--replot", type=Path, help="measure nothing: draw this saved run (and --baseline) to --png")
    args = parser.parse_args()
    if args.replot:
        draw(json.loads(args.replot.read_text()), args)
        return
    uvloop.run(run(args))


if __name__ == "__main__":
    main()
