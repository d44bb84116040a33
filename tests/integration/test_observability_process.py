"""A service process started as a deployment starts it: its own Prometheus endpoint, JSON log lines."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys

import httpx
import yaml

from services.core.nats import free_port
from services.sdk import AsyncCascadeClient
from tests.support.metrics import scrape
from tests.support.processes import wait_for_line
from tests.support.router_process import routed_router_process
from tests.support.system import openai_tier


def free_ports_in_a_row(n: int) -> int:
    """The first of ``n`` consecutive free ports (what telemetry.metrics_port gives `cascade up`)."""
    for _ in range(50):
        first = random.randrange(20000, 60000)
        socks = [socket.socket() for _ in range(n)]
        try:
            for i, sock in enumerate(socks):
                sock.bind(("127.0.0.1", first + i))
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError(f"no {n} consecutive free ports")


async def test_a_router_process_serves_metrics_and_logs_json(nats_server, tmp_path):
    port = free_port()
    telemetry = {"metrics_port": port, "log_format": "json"}
    async with routed_router_process(tmp_path, nats_server.url, telemetry=telemetry, request_id="obs-route") as log:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        assert "cascade_router_score_count{" in text and 'service_name="cascade-router"' in text, text[-2000:]
    records = [json.loads(line) for line in log.read_text().splitlines()]  # every line is JSON
    assert any(r["message"] == "router ready" and r["service"] == "router" for r in records)


async def test_cascade_up_gives_each_process_its_own_metrics_port(tmp_path, fake_openai):
    first, ports = free_ports_in_a_row(4), {name: free_port() for name in ("nats", "gateway")}
    config = tmp_path / "cascade.yaml"
    tier = openai_tier(fake_openai.base_url)
    settings = {
        "nats": {"embedded": {"port": ports["nats"], "data_dir": str(tmp_path / "nats")}},
        "gateway": {"port": ports["gateway"]},
        "http": {"enabled": False},
        "escalation": {"confidence": "logprob"},
        "outcomes": {"spool_dir": str(tmp_path / "spool")},
        "tiers": {"small": tier, "large": tier},
        "telemetry": {"metrics_port": first, "log_format": "json"},  # ports: gateway, router, tier-small, tier-large
    }
    config.write_text(yaml.safe_dump(settings, sort_keys=False))  # the tiers in this order
    log_path = tmp_path / "up.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
    with log_path.open("wb") as log:
        cmd = [sys.executable, "-m", "services.cli.main", "up", "--config", str(config)]
        up = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
    try:
        await wait_for_line(log_path, "prompt-cascade is up", up)
        async with AsyncCascadeClient(target=f"127.0.0.1:{ports['gateway']}") as client:
            await client.generate("Name a prime number.", policy="large", timeout=20)
        gateway, router, small, large = await asyncio.gather(
            *(scrape(f"http://127.0.0.1:{first + i}/metrics") for i in range(4))
        )
    finally:
        up.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(up.wait, 60) == 0
    request = frozenset({"tier": "large", "policy": "large", "status": "OK"}.items())
    assert gateway[("cascade_request_duration_seconds_count", request)] == 1
    assert large[("cascade_tier_duration_seconds_count", frozenset({"tier": "large", "status": "OK"}.items()))] == 1
    assert not any(name == "cascade_tier_duration_seconds_count" for name, _ in small)  # the small tier did nothing
    assert not any(name.startswith("cascade_request_") for name, _ in router)  # the router process is its own
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line]  # every process: JSON
    assert {"up", "router", "tier", "gateway"} <= {r["service"] for r in records}
