"""Chaos: steady load through `cascade up` while its processes are killed, then what was lost.

    python -m bench.chaos [--duration 60] [--clients 4] [--deadline 10] [--every 8] [--kills N] [--keep]

`cascade up` runs configs/cascade.replay.yaml (replay tiers: no GPU) on free ports with its own data
directory. ``--clients`` SDK clients send recorded MMLU-Pro prompts back to back (policy cascade: router,
small tier, second opinion, escalation) with a deadline of ``--deadline`` seconds each. Every ``--every``
seconds one process is killed, in turn nats-server, a tier worker, the router and the gateway, by SIGTERM
and by SIGKILL alternately (``--kills``: at most that many); the supervisor in `cascade up` restarts it,
and the next kill waits until it is back and the gateway is SERVING. At the end the load stops, `cascade
up` stops (Ctrl-C: the gateway flushes its outcome spool), and the outcome events are read back from
JetStream by request id (see bench/chaos_tally.py for what is counted). The last line is machine-readable:

    chaos: sent=N answered=N failed=N hung=N lost_outcomes=N duplicate_outcomes=N
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import yaml

from bench.chaos_tally import Accounting, Tally, account, last_line
from bench.processes import up_children
from cascade.v1 import events_pb2
from services.core import subjects
from services.core.errors import CascadeError
from services.core.nats import NatsServer, connect_nats, free_port
from services.core.settings import CascadeSettings, load_settings
from services.outcomes import read_events
from services.outcomes.seen import seen_subject
from services.outcomes.spool import read_journal
from services.sdk import AsyncCascadeClient, RemoteError
from services.tier.backends.replay import ReplayBackend

REPO = Path(__file__).resolve().parents[1]
REPLAY_CONFIG = REPO / "configs" / "cascade.replay.yaml"
# Who is killed, in turn; the signal alternates (SIGTERM first) through the list.
TARGETS = ("nats-server", "tier-small", "router", "gateway", "tier-large")
SIGNALS = (signal.SIGTERM, signal.SIGKILL)
# A call still running this long after its deadline has hung (the SDK's own deadline should end it).
HANG_GRACE_S = 5.0


def write_config(workdir: Path) -> tuple[Path, int]:
    """The replay config on free ports, its NATS data and outcome spool under ``workdir``."""
    config = yaml.safe_load(REPLAY_CONFIG.read_text())
    gateway_port = free_port()
    config["nats"]["embedded"] = {"port": free_port(), "data_dir": str(workdir / "nats")}
    config["gateway"]["port"] = gateway_port
    config["http"] = {"enabled": False}
    config["outcomes"]["spool_dir"] = str(workdir / "spool")
    for tier in config["tiers"].values():
        tier["replay"]["data"] = str((REPLAY_CONFIG.parent / tier["replay"]["data"]).resolve())
    if "supervisor" in CascadeSettings.model_fields:  # restarts for as long as the bench kills
        config["supervisor"] = {
            "restart": "always",
            "backoff_initial_s": 0.2,
            "backoff_max_s": 2.0,
            "max_restarts": 1000,
            "restart_window_s": 60.0,
        }
    path = workdir / "chaos.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, gateway_port


@dataclass
class Up:
    process: subprocess.Popen[bytes]
    log: Path
    settings: CascadeSettings

    def children(self) -> dict[str, int]:
        return up_children(self.process.pid)

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise SystemExit(f"cascade up exited with code {self.process.returncode}; see {self.log}")


@asynccontextmanager
async def cascade_up(config: Path, workdir: Path) -> AsyncIterator[Up]:
    log = workdir / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "up", "--config", str(config)], stdout=out, stderr=out
        )
    up = Up(process=process, log=log, settings=load_settings(config))
    try:
        await _wait_for_line(up, "prompt-cascade is up", timeout_s=180)
        yield up
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # the gateway flushes its outcome spool, NATS stops last
            try:
                await asyncio.to_thread(process.wait, 120)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)


async def _wait_for_line(up: Up, text: str, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in up.log.read_text(errors="replace"):
        up.check_alive()
        if time.monotonic() > deadline:
            raise SystemExit(f"cascade up did not log {text!r} within {timeout_s:.0f}s; see {up.log}")
        await asyncio.sleep(0.2)


class Load:
    """``clients`` callers sending prompts back to back until stopped; every end goes into the tally."""

    def __init__(self, target: str, prompts: list[str], *, clients: int, deadline_s: float, seed: int) -> None:
        self._target, self._prompts, self._clients, self._deadline_s = target, prompts, clients, deadline_s
        self._random = random.Random(seed)
        self._ids = itertools.count()
        self._run = f"chaos-{os.getpid()}-{int(time.time())}"
        self.tally = Tally()
        self._stop = asyncio.Event()

    async def run(self) -> None:
        async with AsyncCascadeClient(target=self._target) as client:
            await asyncio.gather(*(self._caller(client) for _ in range(self._clients)))

    def stop(self) -> None:
        self._stop.set()

    async def _caller(self, client: AsyncCascadeClient) -> None:
        while not self._stop.is_set():
            request_id = f"{self._run}-{next(self._ids)}"
            self.tally.sent += 1
            if not await self._call(client, request_id):
                await asyncio.sleep(0.1)  # the system is down: do not spin

    async def _call(self, client: AsyncCascadeClient, request_id: str) -> bool:
        prompt = self._random.choice(self._prompts)
        call = client.generate(prompt, request_id=request_id, timeout=self._deadline_s, max_tokens=64)
        try:
            await asyncio.wait_for(call, self._deadline_s + HANG_GRACE_S)
        except TimeoutError:
            self.tally.hang(request_id, f"no end {HANG_GRACE_S:g}s after the deadline")
            return False
        except RemoteError as exc:
            if exc.grpc_code == grpc.StatusCode.DEADLINE_EXCEEDED and _from_client(exc.message):
                self.tally.hang(request_id, "the client's deadline passed")  # the gateway said nothing
            else:
                self.tally.fail(request_id, exc.grpc_code.name, exc.message)
            return False
        except CascadeError as exc:
            self.tally.fail(request_id, type(exc).__name__, exc.message)
            return False
        self.tally.answer(request_id)
        return True


def _from_client(message: str) -> bool:
    """gRPC's own deadline message (the gateway's say what had not finished)."""
    return message.strip().lower() == "deadline exceeded"


async def kill_in_turn(up: Up, *, every_s: float, kills: int, log: list[str], stop: asyncio.Event) -> None:
    """Kill one process every ``every_s`` seconds; wait for its restart and a SERVING gateway after each."""
    schedule = zip(itertools.cycle(TARGETS), itertools.cycle(SIGNALS), strict=False)
    for n, (name, sig) in enumerate(schedule):
        if n >= kills:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
        if stop.is_set():
            return
        pid = up.children().get(name)
        if pid is None:
            log.append(f"{name}: not running, skipped")
            continue
        began = time.monotonic()
        os.kill(pid, sig)
        back = await _restarted(up, name, pid)
        took = time.monotonic() - began
        log.append(f"{sig.name:7} {name:12} back after {took:5.1f}s" if back else f"{sig.name} {name}: NOT back")


async def _restarted(up: Up, name: str, old_pid: int, timeout_s: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        up.check_alive()
        pid = up.children().get(name)
        if pid is not None and pid != old_pid and await _serving(up):
            return True
        await asyncio.sleep(0.2)
    return False


async def _serving(up: Up) -> bool:
    from grpc import aio
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with aio.insecure_channel(f"127.0.0.1:{up.settings.gateway.port}") as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except aio.AioRpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def read_back(settings: CascadeSettings, data_dir: Path) -> tuple[Counter[str], set[str]]:
    """Outcome events per request id, and the subjects of the seen request ids, from the stopped system's data."""
    server = NatsServer(data_dir=data_dir)
    await server.start()
    try:
        nc = await connect_nats(server.url, name="chaos-reader")
        try:
            js = nc.jetstream()
            out = settings.outcomes
            events = [e async for e in read_events(js, stream=out.stream, durable=None)]
            stored = Counter(e.request_id for e in events if isinstance(e, events_pb2.OutcomeEvent))
            sub = await js.pull_subscribe(subjects.SEEN_ALL, durable=None, stream=out.seen_stream)
            seen: set[str] = set()
            with contextlib.suppress(TimeoutError):
                while True:
                    for msg in await sub.fetch(512, timeout=1.0):
                        seen.add(msg.subject)
                        await msg.ack()
        finally:
            await nc.close()
    finally:
        await server.stop()
    return stored, seen


def load_prompts(settings: CascadeSettings) -> list[str]:
    """The prompts every tier has a recorded answer for (else some requests fail NOT_FOUND by design)."""
    known: set[str] | None = None
    for tier in settings.tiers.values():
        assert tier.replay is not None, "the chaos bench runs on replay tiers"
        prompts = set(ReplayBackend(data_path=tier.replay.data, model=tier.replay.model).prompts())
        known = prompts if known is None else known & prompts
    return sorted(known or ())


async def chaos(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="cascade-chaos-"))
    config, port = write_config(workdir)
    settings = load_settings(config)
    prompts = load_prompts(settings)
    kills: list[str] = []
    began = time.monotonic()
    async with cascade_up(config, workdir) as up:
        load = Load(f"127.0.0.1:{port}", prompts, clients=args.clients, deadline_s=args.deadline, seed=args.seed)
        stop = asyncio.Event()
        loading = asyncio.create_task(load.run())
        killing = asyncio.create_task(kill_in_turn(up, every_s=args.every, kills=args.kills, log=kills, stop=stop))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(loading), args.duration)  # ends early only by raising
        stop.set()
        await killing
        load.stop()
        await loading
    ran_s = time.monotonic() - began
    stored, seen_subjects = await read_back(settings, workdir / "nats")
    tally = load.tally
    seen = {i for i in (tally.answered | set(tally.failed) | tally.hung) if seen_subject(i) in seen_subjects}
    accounting = account(tally, seen=seen, stored=stored)
    _report(args, tally, accounting, kills, workdir, ran_s)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    print(last_line(tally, accounting))
    return 0


def _report(
    args: argparse.Namespace, tally: Tally, accounting: Accounting, kills: list[str], workdir: Path, ran_s: float
) -> None:
    print(
        f"bench.chaos: {ran_s:.0f}s, {args.clients} clients, deadline {args.deadline:g}s, load average "
        f"{Path('/proc/loadavg').read_text().split()[:3]}; data in {workdir}{'' if args.keep else ' (removed)'}"
    )
    for line in kills:
        print(f"  kill: {line}")
    ends = f"answered {len(tally.answered)}, failed {len(tally.failed)}, hung {len(tally.hung)}"
    print(f"requests: sent {tally.sent}, {ends}")
    for code, n in sorted(tally.by_code().items()):
        print(f"  failed {code}: {n}")
        for message, m in tally.messages[code].most_common(3):
            print(f"      {m:5} x {message}")
    spooled = sum(len(read_journal(lock.parent).events) for lock in (workdir / "spool").rglob(".lock"))
    print(
        f"outcomes: expected {accounting.expected}, stored {accounting.stored}, lost {len(accounting.lost)}, "
        f"duplicates {accounting.duplicates}; events left in the spool: {spooled}"
    )
    for request_id in [*accounting.lost[:10], *sorted(tally.hung)[:10]]:
        lost = "outcome lost" if request_id in accounting.lost else "outcome stored"
        print(f"  {request_id}: {lost}; {tally.end_of(request_id)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent SDK clients (default 4)")
    parser.add_argument("--deadline", type=float, default=10.0, help="deadline of each request, s (default 10)")
    parser.add_argument("--every", type=float, default=8.0, help="seconds between kills (default 8)")
    parser.add_argument("--kills", type=int, default=10**6, help="at most this many kills (default: no limit)")
    parser.add_argument("--seed", type=int, default=0, help="prompt choice seed (default 0)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and logs")
    return asyncio.run(chaos(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
