"""`cascade up` restarts a process that dies, or stops everything naming it, by `supervisor.restart`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest

from services.core.nats import connect_from_settings
from services.core.settings import load_settings
from services.outcomes import read_events
from services.sdk.aio import AsyncCascadeClient
from services.tier.backends.replay import ReplayBackend
from tests.support.processes import alive, child_with, children_of, wait_for_line
from tests.support.up import CASCADE, free_ports, replay_config

FAST = {"backoff_initial_s": 0.1, "backoff_max_s": 1.0}


async def _ask_small(config: Path, port: int) -> str:
    """Ask the small tier through the gateway a question it knows; the request id."""
    settings = load_settings(config)
    replay = settings.tiers["small"].replay
    assert replay is not None
    prompt = sorted(ReplayBackend(data_path=replay.data, model=replay.model).prompts())[0]
    async with AsyncCascadeClient(target=f"127.0.0.1:{port}", timeout=60) as client:
        result = await client.generate(prompt, policy="small")
    assert result.route.tier == "small" and result.text
    return result.request_id


async def _stored(config: Path, *request_ids: str) -> None:
    """Wait until the outcomes of ``request_ids`` are in JetStream (the gateway publishes in the background)."""
    settings = load_settings(config)
    nc = await connect_from_settings(settings.nats, name="test-reader")
    try:
        for _ in range(60):  # a hang guard, not a timing assertion
            events = [e async for e in read_events(nc.jetstream(), stream=settings.outcomes.stream, durable=None)]
            if set(request_ids) <= {e.request_id for e in events}:
                return
            await asyncio.sleep(0.5)
    finally:
        await nc.drain()
    raise AssertionError(f"outcomes of {request_ids} never stored")


async def _count_in(path: Path, text: str, count: int, process: subprocess.Popen[bytes]) -> None:
    for _ in range(600):  # a hang guard, not a timing assertion
        if path.read_text().count(text) >= count:
            return
        assert process.poll() is None, path.read_text()[-3000:]
        await asyncio.sleep(0.2)
    raise AssertionError(f"fewer than {count} {text!r} in {path}")


@pytest.mark.usefixtures("routing_data")
async def test_a_killed_tier_worker_and_nats_server_are_restarted_and_serve_again(tmp_path):
    ports = free_ports()
    config = replay_config(
        tmp_path / "up.yaml", data_dir=tmp_path / "nats", ports=ports, supervisor={"restart": "always", **FAST}
    )
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        up = subprocess.Popen([*CASCADE, "up", "--config", str(config)], stdout=log, stderr=log)
    try:
        await wait_for_line(log_path, "prompt-cascade is up", up)
        os.kill(child_with(up.pid, "--tier small"), signal.SIGKILL)
        await wait_for_line(log_path, "tier-small was killed by SIGKILL; its last log line:", up)
        await wait_for_line(log_path, "tier-small restarted", up)
        await _count_in(log_path, "tier small serving through", 2, up)
        before = await _ask_small(config, ports["gateway"])
        await _stored(config, before)

        os.kill(child_with(up.pid, "nats-server"), signal.SIGKILL)
        await wait_for_line(log_path, "nats-server was killed by SIGKILL; its last log line: ", up)
        await wait_for_line(log_path, "nats-server restarted", up)
        await _count_in(log_path, "nats reconnected (cascade-gateway)", 1, up)
        await _count_in(log_path, "nats reconnected (cascade-tier)", 1, up)
        after = await _ask_small(config, ports["gateway"])  # same port, and the services found it again
        await _stored(config, before, after)  # same JetStream directory: what was stored before is still there
        assert len(children_of(up.pid)) == 7
    finally:
        up.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(up.wait, 60)
    assert code == 0, log_path.read_text()[-3000:]


@pytest.mark.usefixtures("routing_data")
async def test_with_restart_never_a_dead_worker_stops_everything_with_its_name_status_and_last_line(tmp_path):
    ports = free_ports()
    config = replay_config(
        tmp_path / "up.yaml", data_dir=tmp_path / "nats", ports=ports, supervisor={"restart": "never"}
    )
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        up = subprocess.Popen([*CASCADE, "up", "--config", str(config)], stdout=log, stderr=log)
    try:
        await wait_for_line(log_path, "prompt-cascade is up", up)
        children = children_of(up.pid)
        os.kill(child_with(up.pid, "--tier large"), signal.SIGKILL)
        code = await asyncio.to_thread(up.wait, 60)
    finally:
        if up.poll() is None:
            up.kill()
    out = log_path.read_text()
    assert code == 1, out[-3000:]
    assert "tier-large was killed by SIGKILL; its last log line: " in out, out[-3000:]
    assert "stopping everything (supervisor.restart: never)" in out
    assert "restarting" not in out
    assert [pid for pid in children if alive(pid)] == []
