"""Each `python -m services.*` entry point on its own: it serves until SIGINT or SIGTERM and then stops
cleanly (exit 0), and a bad configuration ends it at once with exit status 1 and the reason."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.system import openai_tier


def config_file(tmp_path: Path, nats_url: str | None, base_url: str = "http://127.0.0.1:9/v1") -> Path:
    tier = openai_tier(base_url)
    config: dict = {"tiers": {"small": tier, "large": tier}, "gateway": {"port": 0}}
    if nats_url:
        config["nats"] = {"url": nats_url}
    path = tmp_path / "cascade.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def start(module: str, *args: str, config: Path, log: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, "--config", str(config), *args, stdout=out, stderr=out, env=env
        )


async def wait_for(log: Path, text: str, process: asyncio.subprocess.Process) -> None:
    for _ in range(600):
        if text in log.read_text():
            return
        assert process.returncode is None, log.read_text()[-3000:]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {text!r} in {log}")


@pytest.mark.parametrize(
    ("module", "args", "name", "sig"),
    [
        ("services.router", (), "router", signal.SIGINT),
        ("services.tier", ("--tier", "small"), "tier", signal.SIGTERM),
        ("services.gateway", (), "gateway", signal.SIGTERM),
    ],
)
async def test_a_service_runs_until_a_signal_then_stops_cleanly(nats_server, tmp_path, module, args, name, sig):
    log = tmp_path / "service.log"
    process = await start(module, *args, config=config_file(tmp_path, nats_server.url), log=log)
    try:
        await wait_for(log, f"{name} ready", process)
        process.send_signal(sig)
        assert await asyncio.wait_for(process.wait(), 60) == 0, log.read_text()[-3000:]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = log.read_text()
    assert f"received {sig.name}, shutting down" in text and text.rstrip().endswith(f"{name} stopped")


@pytest.mark.parametrize(
    ("module", "args", "nats", "message"),
    [
        ("services.tier", ("--tier", "medium"), True, "unknown tier 'medium'"),
        ("services.gateway", (), False, "no NATS URL configured"),
    ],
)
async def test_a_bad_configuration_ends_the_service_with_status_1(nats_server, tmp_path, module, args, nats, message):
    log = tmp_path / "service.log"
    process = await start(module, *args, config=config_file(tmp_path, nats_server.url if nats else None), log=log)
    assert await asyncio.wait_for(process.wait(), 60) == 1
    assert message in log.read_text()


def test_an_unreadable_config_file_is_exit_status_2(tmp_path):
    (tmp_path / "bad.yaml").write_text("tiers: [not, a, mapping")
    proc = subprocess.run(
        [sys.executable, "-m", "services.router", "--config", str(tmp_path / "bad.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stderr.strip()
