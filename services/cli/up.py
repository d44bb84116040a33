"""`cascade up`: a supervisor for the whole system on one machine.

Starts a real nats-server with JetStream when no NATS URL is configured, then the router,
one worker per configured tier, the gateway and (unless `http.enabled` is false) the
OpenAI-compatible HTTP front door, each its own process (the same processes a deployment
runs, `python -m services.<name>`). It waits until the gateway reports SERVING and the HTTP
front door answers. Ctrl-C (or SIGTERM) stops them in reverse order: the HTTP front door,
then the gateway, so no accepted request loses its outcome, then the workers, the router and
NATS. If any process dies, everything stops. A second Ctrl-C during that kills what is still
running at once (nothing is left behind either way).

Before it starts anything it takes a lock on the embedded NATS data directory and checks that
every port it will listen on is free (services/cli/preflight.py), so a second `cascade up` on the
same directory or ports fails at once and leaves the running one alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from services.cli.preflight import check_ports, instance_lock, listen_addresses
from services.core import subjects
from services.core.errors import CascadeError, Unavailable
from services.core.lifecycle import setup_logging, stop_event_on_signals
from services.core.nats import NatsServer, connect_nats
from services.core.settings import CascadeSettings, load_settings

log = logging.getLogger("cascade.up")


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


def main(args: argparse.Namespace) -> int:
    setup_logging("up")
    try:
        settings = load_settings(args.config)
        # Before anything starts: a second `cascade up` on the same data directory or ports stops here.
        with contextlib.ExitStack() as held:
            if settings.nats.url is None:
                held.enter_context(instance_lock(settings.nats.embedded.data_dir))
            check_ports(listen_addresses(settings))
            return asyncio.run(_up(settings, args.config))
    except CascadeError as exc:
        log.error("%s", exc)
        return 1


async def _up(settings: CascadeSettings, config: Path | None) -> int:
    hurry = asyncio.Event()
    stop = stop_event_on_signals(again=hurry.set)
    nats: NatsServer | None = None
    url = settings.nats.url
    if url is None:
        e = settings.nats.embedded
        nats = NatsServer(
            data_dir=e.data_dir, host=e.host, port=e.port, max_payload_bytes=settings.nats.max_payload_bytes
        )
        await nats.start()
        url = nats.url
    children: list[Child] = []
    try:
        env = {**os.environ, "CASCADE_NATS__URL": url}
        if config is not None:
            env["CASCADE_CONFIG"] = str(Path(config).resolve())
        children.append(_spawn("router", ["services.router"], env))
        for tier in settings.tiers:
            children.append(_spawn(f"tier-{tier}", ["services.tier", "--tier", tier], env))
        children.append(_spawn("gateway", ["services.gateway"], env))
        await _wait_workers(url, settings, children)
        await _wait_serving(settings, children)
        if settings.http.enabled:
            children.append(_spawn("http", ["services.http"], env))
            await _wait_http(settings, children)
        log.info("prompt-cascade is up: %s, NATS at %s; Ctrl-C stops it", _addresses(settings), url)
        return await _supervise(children, stop)
    finally:
        await _stop_all(children, hurry)
        if nats is not None:
            await nats.stop()
        log.info("prompt-cascade stopped")


def _spawn(name: str, module_args: list[str], env: dict[str, str]) -> Child:
    # Own process group: Ctrl-C reaches only this supervisor, which then stops the children in order.
    process = subprocess.Popen([sys.executable, "-m", *module_args], env=env, process_group=0)
    return Child(name, process)


async def _wait_workers(url: str, settings: CascadeSettings, children: list[Child], timeout_s: float = 120.0) -> None:
    """Wait until the router and a worker of every tier answer on NATS.

    The probe is an empty request: the router answers it, a tier worker refuses it; either
    reply proves a subscriber is there.
    """
    nc = await connect_nats(url, name="cascade-up")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        for subject in [subjects.ROUTE, *(subjects.tier_subject(t) for t in settings.tiers)]:
            while True:
                _raise_if_dead(children)
                if loop.time() > deadline:
                    raise Unavailable(f"nothing answered on {subject} within {timeout_s:.0f}s")
                try:
                    await nc.request(subject, b"", timeout=1)
                    break
                except (NoRespondersError, NatsTimeoutError):
                    await asyncio.sleep(0.2)
    finally:
        await nc.close()


async def _wait_serving(settings: CascadeSettings, children: list[Child], timeout_s: float = 120.0) -> None:
    from grpc import aio
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    host = _local(settings.gateway.host)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aio.insecure_channel(f"{host}:{settings.gateway.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while loop.time() < deadline:
            _raise_if_dead(children)
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)
    raise Unavailable(f"the gateway did not report SERVING within {timeout_s:.0f}s")


async def _wait_http(settings: CascadeSettings, children: list[Child], timeout_s: float = 60.0) -> None:
    import httpx

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    host = _local(settings.http.host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{settings.http.port}/health"
    async with httpx.AsyncClient(timeout=1, trust_env=False) as client:  # no proxy between us and ourselves
        while loop.time() < deadline:
            _raise_if_dead(children)
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(url)).is_success:
                    return
            await asyncio.sleep(0.2)
    raise Unavailable(f"the HTTP front door did not answer within {timeout_s:.0f}s")


def _local(host: str) -> str:
    """An address to reach a server listening on ``host`` from this machine."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _addresses(settings: CascadeSettings) -> str:
    gw, http = settings.gateway, settings.http
    grpc_address = f"gRPC on {gw.host}:{gw.port}"
    return (
        f"{grpc_address}, OpenAI-compatible HTTP on http://{http.host}:{http.port}/v1" if http.enabled else grpc_address
    )


def _raise_if_dead(children: list[Child]) -> None:
    for child in children:
        if child.process.poll() is not None:
            raise Unavailable(f"{child.name} exited with code {child.process.returncode}; see its log above")


async def _supervise(children: list[Child], stop: asyncio.Event) -> int:
    while not stop.is_set():
        try:
            _raise_if_dead(children)
        except Unavailable as exc:
            log.error("%s; stopping everything", exc.message)
            return 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    return 0


async def _stop_all(children: list[Child], hurry: asyncio.Event, grace_s: float = 30.0) -> None:
    # Reverse start order: the HTTP front door stops before the gateway it uses, and the gateway
    # stops taking requests before the tiers go away. Once ``hurry`` is set (a second signal),
    # whatever is still running is killed instead.
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.terminate()
            await _wait_or_kill(child, hurry, grace_s)


async def _wait_or_kill(child: Child, hurry: asyncio.Event, grace_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    while child.process.poll() is None:
        if hurry.is_set() or loop.time() > deadline:
            if not hurry.is_set():
                log.warning("%s did not stop within %.0fs; killing it", child.name, grace_s)
            child.process.kill()
            await asyncio.to_thread(child.process.wait)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hurry.wait(), 0.1)
