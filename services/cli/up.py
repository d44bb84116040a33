"""`cascade up`: a supervisor for the whole system on one machine.

Starts a real nats-server with JetStream when no NATS URL is configured, then the router (unless
`router.mode` is embedded: the gateway then scores prompts itself),
one worker per configured tier (unless its `mode` is embedded: the gateway calls it), the gateway
and (unless `http.enabled` is false) the
OpenAI-compatible HTTP front door, each its own process (the same processes a deployment
runs, `python -m services.<name>`). It waits until the gateway reports SERVING and the HTTP
front door answers. Ctrl-C (or SIGTERM) stops them in reverse order: the HTTP front door,
then the gateway, so no accepted request loses its outcome, then the workers, the router and
NATS. A second Ctrl-C during that kills what is still running at once (nothing is left behind
either way). A process that dies during start-up stops everything; once the system is up, the
supervisor (services/cli/supervisor.py) restarts dead processes or stops everything, by config.

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
from pathlib import Path

from services.cli.children import Child, EmbeddedNats, ServiceProcess
from services.cli.preflight import check_ports, instance_lock, listen_addresses, metrics_ports
from services.cli.supervisor import ChildFailed, Supervisor, stop_all
from services.core import subjects
from services.core.errors import CascadeError, Unavailable
from services.core.lifecycle import setup_logging, stop_event_on_signals
from services.core.liveness import ping
from services.core.nats import NatsServer, connect_from_settings
from services.core.nats_embedded import child_env, write_server_config
from services.core.settings import CascadeSettings, load_settings

log = logging.getLogger("cascade.up")


def main(args: argparse.Namespace) -> int:
    setup_logging("up")
    try:
        settings = load_settings(args.config)
        setup_logging("up", log_format=settings.telemetry.log_format)
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
    children: list[Child] = []
    url = settings.nats.url
    try:
        if url is None:
            e = settings.nats.embedded
            config_file = write_server_config(e, max_payload_bytes=settings.nats.max_payload_bytes)
            server = NatsServer(data_dir=e.data_dir, host=e.host, port=e.port, config_file=config_file)
            nats = EmbeddedNats(server)
            await nats.start()
            children.append(nats)
            url = nats.server.url
        env = {**os.environ, **child_env(settings.nats, url)}  # credentials by file path, never on a command line
        if config is not None:
            env["CASCADE_CONFIG"] = str(Path(config).resolve())
        ports = dict(metrics_ports(settings))

        def env_of(name: str) -> dict[str, str]:  # each process its own metrics port
            return {**env, "CASCADE_TELEMETRY__METRICS_PORT": str(ports[name])} if name in ports else env

        if settings.router.mode == "service":  # embedded: each gateway scores prompts itself
            await _spawn(children, "router", ["services.router"], env_of("router"))
        for tier in settings.worker_tiers:  # an embedded tier is called by the gateway itself
            await _spawn(children, f"tier-{tier}", ["services.tier", "--tier", tier], env_of(f"tier-{tier}"))
        await _spawn(children, "gateway", ["services.gateway"], env_of("gateway"))
        await _wait_workers(url, settings, children)
        await _wait_serving(settings, children)
        if settings.http.enabled:
            await _spawn(children, "http", ["services.http"], env_of("http"))
            await _wait_http(settings, children)
        log.info("prompt-cascade is up: %s, NATS at %s; Ctrl-C stops it", _addresses(settings), url)
        await Supervisor(settings.supervisor, stop).run(children)
        return 0
    except ChildFailed as exc:
        log.error("%s", exc.message)
        return 1
    finally:
        await stop_all(children, hurry)
        log.info("prompt-cascade stopped")


async def _spawn(children: list[Child], name: str, module_args: list[str], env: dict[str, str]) -> None:
    child = ServiceProcess(name, module_args, env)
    await child.start()
    children.append(child)


async def _wait_workers(url: str, settings: CascadeSettings, children: list[Child], timeout_s: float = 120.0) -> None:
    """Wait until the router and a worker of every tier answer pings (their NATS micro services)."""
    nc = await connect_from_settings(settings.nats, name="cascade-up", url=url)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        routers = [subjects.ROUTER_SERVICE] if settings.router.mode == "service" else []
        for name in [*routers, *(subjects.tier_service(t) for t in settings.worker_tiers)]:
            while await ping(nc, name) is None:
                _raise_if_dead(children)
                if loop.time() > deadline:
                    raise Unavailable(f"{name} did not answer pings within {timeout_s:.0f}s")
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
    """During start-up a death is fatal at once: it is a configuration or environment problem."""
    for child in children:
        if child.returncode is not None:
            raise Unavailable(f"{child.name} {child.exit_reason()}")
