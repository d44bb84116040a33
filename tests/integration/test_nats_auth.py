"""NATS authentication and TLS through the one connect helper, against real nats-servers that require them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from nats.aio.msg import Msg

from services.core.errors import ConfigError
from services.core.nats import NatsServer, connect_from_settings, connect_nats
from services.core.nats_embedded import USER, password_file, write_server_config
from services.core.settings import EmbeddedNatsSettings, NatsSettings
from tests.support.nats_keys import new_key, operator_setup

DOCKER = Path(__file__).resolve().parents[2] / "docker"


async def _round_trip(settings: NatsSettings) -> bytes:
    """Connect as configured and get a reply through the server: proof the connection is usable."""
    nc = await connect_from_settings(settings, name="t", wait_s=5)

    async def echo(msg: Msg) -> None:
        await msg.respond(msg.data)

    try:
        sub = await nc.subscribe("auth.echo", cb=echo)
        reply = await nc.request("auth.echo", b"hello", timeout=2)
        await sub.unsubscribe()
        return reply.data
    finally:
        await nc.close()


def _conf(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


async def test_a_password_server_refuses_anonymous_and_wrong_credentials_and_accepts_the_configured_ones(tmp_path):
    config = write_server_config(EmbeddedNatsSettings(data_dir=tmp_path / "nats"), max_payload_bytes=8 << 20)
    secret = password_file(tmp_path / "nats").read_text().strip()
    async with NatsServer(data_dir=tmp_path / "nats", config_file=config) as server:
        # Refused credentials fail at once with ConfigError (nats-py alone would retry them until the wait ends).
        with pytest.raises(ConfigError, match="refused the credentials of t .*Authorization Violation"):
            await connect_nats(server.url, name="t", wait_s=30)
        wrong = NatsSettings(url=server.url, auth={"user": USER, "password": "not-it"})
        with pytest.raises(ConfigError, match="refused the credentials") as refused:
            await connect_from_settings(wrong, name="t", wait_s=30)
        assert "not-it" not in str(refused.value)
        by_value = NatsSettings(url=server.url, auth={"user": USER, "password": secret})
        by_file = NatsSettings(url=server.url, auth={"user": USER, "password_file": password_file(tmp_path / "nats")})
        assert await _round_trip(by_value) == b"hello"
        assert await _round_trip(by_file) == b"hello"


async def test_nkey_authentication(tmp_path):
    user = new_key()
    public = user.public_key.decode()
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(user.seed + b"\n")
    config = _conf(tmp_path / "nkey.conf", f"authorization {{ users = [ {{ nkey: {json.dumps(public)} }} ] }}\n")
    async with NatsServer(data_dir=tmp_path / "nats", config_file=config) as server:
        with pytest.raises(ConfigError, match="refused"):
            await connect_nats(server.url, name="t", wait_s=30)
        assert await _round_trip(NatsSettings(url=server.url, auth={"nkey_seed_file": seed_file})) == b"hello"


async def test_a_creds_file_on_a_server_in_operator_mode(tmp_path):
    config, creds = operator_setup(tmp_path)
    async with NatsServer(data_dir=tmp_path / "nats", config_file=config) as server:
        with pytest.raises(ConfigError, match="refused"):
            await connect_nats(server.url, name="t", wait_s=30)
        assert await _round_trip(NatsSettings(url=server.url, auth={"creds_file": creds})) == b"hello"


async def test_tls_with_a_self_signed_certificate(tmp_path, self_signed):
    key, cert = self_signed
    config = write_server_config(
        EmbeddedNatsSettings(data_dir=tmp_path / "nats", auth=False, tls_cert_file=cert, tls_key_file=key),
        max_payload_bytes=8 << 20,
    )
    async with NatsServer(data_dir=tmp_path / "nats", config_file=config) as server:
        # Without the CA the certificate is not trusted: a ConfigError at once (not a retry until the wait ends).
        untrusted = NatsSettings(url=server.url, tls={"enabled": True})
        with pytest.raises(ConfigError, match="TLS with NATS at .* failed for t .*CERTIFICATE_VERIFY_FAILED"):
            await connect_from_settings(untrusted, name="t", wait_s=30)
        with pytest.raises(ConfigError, match="self-signed certificate"):  # no TLS settings: the system's CAs
            await connect_nats(server.url, name="t", wait_s=30)
        assert await _round_trip(NatsSettings(url=server.url, tls={"ca_file": cert})) == b"hello"


async def test_mutual_tls_needs_the_client_certificate(tmp_path, self_signed):
    key, cert = self_signed
    tls = f"cert_file: {json.dumps(str(cert))}, key_file: {json.dumps(str(key))}, ca_file: {json.dumps(str(cert))}"
    config = _conf(tmp_path / "mtls.conf", f"tls {{ {tls}, verify: true }}\n")
    async with NatsServer(data_dir=tmp_path / "nats", config_file=config) as server:
        no_client_cert = NatsSettings(url=server.url, tls={"ca_file": cert})
        with pytest.raises(ConfigError, match="TLS with NATS .*CERTIFICATE_REQUIRED"):
            await connect_from_settings(no_client_cert, name="t", wait_s=30)
        client = NatsSettings(url=server.url, tls={"ca_file": cert, "cert_file": cert, "key_file": key})
        assert await _round_trip(client) == b"hello"


async def test_the_compose_nats_server_requires_the_password_compose_gives_the_services(tmp_path, monkeypatch):
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    server_env, service_env = compose["services"]["nats"]["environment"], compose["x-cascade"]["environment"]
    assert service_env["CASCADE_NATS__AUTH__PASSWORD"] == server_env["NATS_PASSWORD"]  # one variable for both
    assert server_env["NATS_PASSWORD"].startswith("${NATS_PASSWORD:?")  # compose refuses to start without it
    monkeypatch.setenv("NATS_USER", server_env["NATS_USER"])
    monkeypatch.setenv("NATS_PASSWORD", "from-the-environment")
    async with NatsServer(data_dir=tmp_path / "nats", config_file=DOCKER / "nats-server.conf") as server:
        with pytest.raises(ConfigError, match="refused"):
            await connect_nats(server.url, name="t", wait_s=30)
        auth = {"user": service_env["CASCADE_NATS__AUTH__USER"], "password": "from-the-environment"}
        assert await _round_trip(NatsSettings(url=server.url, auth=auth)) == b"hello"
