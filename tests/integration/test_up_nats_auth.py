"""`cascade up` makes its embedded nats-server require credentials it generates, and its own commands use them."""

from __future__ import annotations

import asyncio
import signal
import ssl
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from services.core.errors import ConfigError
from services.core.nats import connect_nats, free_port
from services.core.nats_embedded import password_file
from tests.support.processes import children_of, wait_for_line
from tests.support.up import CASCADE, cascade, replay_config


def _visible_to_ps(pid: int) -> bytes:
    """What another local user's `ps e` could see of a process: its command line and environment."""
    proc = Path(f"/proc/{pid}")
    return (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()


@pytest.mark.usefixtures("routing_data")
async def test_cascade_up_requires_the_credentials_it_generates_and_its_commands_present_them(tmp_path, self_signed):
    """On the replay config with TLS for its embedded server: the services and commands present the generated
    password over TLS, trusting the server's self-signed certificate; an anonymous client is refused."""
    ports = {name: free_port() for name in ("nats", "gateway", "http")}
    data_dir = tmp_path / "nats"
    config = replay_config(tmp_path / "cascade.yaml", data_dir=data_dir, ports=ports)
    key, cert = self_signed
    settings = yaml.safe_load(config.read_text())
    settings["nats"]["embedded"] |= {"tls_cert_file": str(cert), "tls_key_file": str(key)}
    config.write_text(yaml.safe_dump(settings))
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        up = subprocess.Popen([*CASCADE, "up", "--config", str(config)], stdout=log, stderr=log)
    try:
        await wait_for_line(log_path, "prompt-cascade is up", up)
        secret_path = password_file(data_dir)
        assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(secret_path.parent.stat().st_mode) == 0o700
        secret = secret_path.read_text().strip().encode()

        url = f"nats://127.0.0.1:{ports['nats']}"
        trusting = ssl.create_default_context(cafile=str(cert))
        with pytest.raises(ConfigError, match="refused the credentials"):  # anonymous (over TLS): refused
            await connect_nats(url, name="anonymous", security={"tls": trusting}, wait_s=30)
        with pytest.raises(ConfigError, match="TLS with NATS"):  # and the server speaks only TLS
            await connect_nats(url, name="plain", security={"user": "cascade", "password": secret.decode()}, wait_s=30)
        # The password is on no command line and in no environment (children get the file's path).
        pids = [up.pid, *children_of(up.pid)]
        assert len(pids) >= 5 and not [pid for pid in pids if secret in _visible_to_ps(pid)]

        target = f"127.0.0.1:{ports['gateway']}"
        code, out = await cascade("ask", "--sample", "--config", str(config), "--target", target, "--policy", "small")
        assert code == 0 and "tier=small" in out, out
        for _ in range(50):  # the gateway stores the outcome in the background
            code, out = await cascade("outcomes", "--config", str(config))
            assert code == 0, out
            if '"OutcomeEvent"' in out:
                break
            await asyncio.sleep(0.2)
        assert '"OutcomeEvent"' in out, out
    finally:
        up.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(up.wait, 60) == 0, log_path.read_text()[-3000:]
    assert secret not in log_path.read_bytes()
