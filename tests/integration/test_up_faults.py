"""`cascade up` refuses to start beside a running one, and reports a nats-server that cannot start."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import pytest
import yaml

from services.core.nats import free_port
from tests.support.processes import alive, children_of, processes_using, wait_for_line
from tests.support.up import CASCADE, cascade, replay_config


@pytest.mark.usefixtures("routing_data")
async def test_a_second_cascade_up_fails_at_once_and_leaves_the_first_serving(tmp_path):
    ports = {name: free_port() for name in ("nats", "gateway", "http")}
    data_dir = tmp_path / "nats"
    config = replay_config(tmp_path / "first.yaml", data_dir=data_dir, ports=ports)
    log_path = tmp_path / "first.log"
    with log_path.open("wb") as log:
        first = subprocess.Popen([*CASCADE, "up", "--config", str(config)], stdout=log, stderr=log)
    try:
        await wait_for_line(log_path, "prompt-cascade is up", first)
        lock = data_dir / "cascade-up.lock"
        assert lock.read_text().strip() == str(first.pid)

        code, out = await cascade("up", "--config", str(config))  # the very same config
        assert code == 1, out
        assert f"another `cascade up` (pid {first.pid}) is running on the data directory {data_dir}" in out
        assert "nats-server listening" not in out and "ready" not in out  # nothing was started

        other = replay_config(tmp_path / "other.yaml", data_dir=tmp_path / "other-nats", ports=ports)
        code, out = await cascade("up", "--config", str(other))  # its own data, the same ports
        assert code == 1, out
        assert f"port {ports['nats']} on 127.0.0.1 for the embedded nats-server (nats.embedded) is in use" in out
        assert "nats-server listening" not in out

        assert first.poll() is None and lock.read_text().strip() == str(first.pid)
        target = f"127.0.0.1:{ports['gateway']}"
        code, out = await cascade("ask", "--sample", "--config", str(config), "--target", target, "--policy", "small")
        assert code == 0 and "tier=small" in out, out
    finally:
        first.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(first.wait, 60) == 0, log_path.read_text()[-3000:]


async def test_cascade_up_reports_a_nats_server_that_cannot_start_and_leaves_no_process(tmp_path):
    data_dir = tmp_path / "nats"
    data_dir.mkdir()
    (data_dir / "jetstream").write_text("")  # where JetStream must make its store: nats-server gives up
    ports = {name: free_port() for name in ("nats", "gateway", "http")}
    config = tmp_path / "cascade.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "nats": {"embedded": {"port": ports["nats"], "data_dir": str(data_dir)}},
                "gateway": {"port": ports["gateway"]},
                "http": {"port": ports["http"]},
            }
        )
    )
    code, out = await cascade("up", "--config", str(config))
    assert code == 1, out
    # nats-server's own words on the terminal, not only in its log file:
    assert "Can't start JetStream: storage directory is not a directory" in out, out
    assert str(data_dir / "nats-server.log") in out
    assert processes_using(data_dir) == []


@pytest.mark.usefixtures("routing_data")
async def test_a_second_ctrl_c_while_stopping_kills_the_rest_and_leaves_no_process(tmp_path):
    ports = {name: free_port() for name in ("nats", "gateway", "http")}
    config = replay_config(tmp_path / "up.yaml", data_dir=tmp_path / "nats", ports=ports)
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        up = subprocess.Popen([*CASCADE, "up", "--config", str(config)], stdout=log, stderr=log)
    try:
        await wait_for_line(log_path, "prompt-cascade is up", up)
        children = children_of(up.pid)
        assert len(children) == 7, children  # nats-server, router, tiers small, second and large, gateway, http
    finally:
        up.send_signal(signal.SIGINT)
        await wait_for_line(log_path, "received SIGINT, shutting down", up)
        up.send_signal(signal.SIGINT)  # impatient: the supervisor must not die and orphan its children
        code = await asyncio.to_thread(up.wait, 60)
    out = log_path.read_text()
    assert "received SIGINT again, hurrying" in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert code == 0, out[-3000:]
    assert [pid for pid in children if alive(pid)] == []
