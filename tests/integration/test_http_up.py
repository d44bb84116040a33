"""`cascade up` runs the HTTP front door beside the gateway; its settings come from the file and environment."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import openai
import pytest
import yaml

from services.core.errors import ConfigError
from services.core.nats import free_port
from services.core.settings import load_settings
from tests.support.processes import wait_for_line
from tests.support.system import openai_tier


@pytest.mark.parametrize("router_mode", ["service", "embedded"])
async def test_cascade_up_serves_asks_and_stops_in_reverse_order(tmp_path, fake_openai, router_mode):
    """`cascade up` starts every `python -m services.*` entry point; `cascade ask` gets an answer through them;
    SIGINT stops the children by SIGTERM in reverse start order, each one handling its signal.
    With router.mode embedded no router process runs and the gateway routes by itself."""
    ports = {name: free_port() for name in ("nats", "gateway", "http")}
    config = tmp_path / "cascade.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "nats": {"embedded": {"port": ports["nats"], "data_dir": str(tmp_path / "nats")}},
                "gateway": {"port": ports["gateway"]},
                "http": {"port": ports["http"]},
                "router": {"mode": router_mode},
                "escalation": {"confidence": "logprob"},
                "outcomes": {"spool_dir": str(tmp_path / "spool")},
                "tiers": {"small": openai_tier(fake_openai.base_url), "large": openai_tier(fake_openai.base_url)},
            }
        )
    )
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "up", "--config", str(config)], stdout=log, stderr=log
        )
    try:
        await wait_for_line(log_path, "prompt-cascade is up", up)
        base_url = f"http://127.0.0.1:{ports['http']}/v1"
        async with openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=20) as client:
            messages = [{"role": "user", "content": "Name a prime number."}]
            answer = await client.chat.completions.create(model="cascade:large", messages=messages)
            routed = await client.chat.completions.create(model="cascade:route", messages=messages)
        assert answer.choices[0].message.content and answer.cascade["tier"] == "large"
        assert routed.cascade["router_model_version"] and not routed.cascade["router_error"]
        ask = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "services.cli.main", "ask", "Name a prime number.", "--policy", "large"],
            *["--target", f"127.0.0.1:{ports['gateway']}", "--timeout", "20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await ask.communicate()
        assert ask.returncode == 0, err.decode()
        assert out.decode().strip() and "tier=large path=large" in err.decode()
    finally:
        up.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(up.wait, 60) == 0
    lines = log_path.read_text().splitlines()
    stopped = [line.rsplit(" ", 2)[-2] for line in lines if line.endswith(" stopped")]
    # Children by SIGTERM in reverse start order, then the supervisor; each child shut down on its signal.
    router = ["router"] if router_mode == "service" else []
    assert stopped == ["http", "gateway", "tier", "tier", *router, "prompt-cascade"]
    shutting_down = [line.split()[3] for line in lines if line.endswith("received SIGTERM, shutting down")]
    assert sorted(shutting_down) == sorted(["gateway", "http", *router, "tier", "tier"])


# ---------------------------------------------------------------------------- settings


def test_http_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("CASCADE_HTTP__PORT", "9090")
    monkeypatch.setenv("CASCADE_HTTP__API_KEYS_SHA256", f'["{"ab" * 32}"]')
    settings = load_settings()
    assert settings.http.port == 9090 and settings.http.api_keys_sha256 == ("ab" * 32,)
    monkeypatch.setenv("CASCADE_HTTP__API_KEYS_SHA256", '["not-a-digest"]')
    with pytest.raises(ConfigError, match="SHA-256"):
        load_settings()
