"""NATS credentials and TLS settings, the embedded server's generated credentials, and who may connect how."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
import yaml

from services.core.errors import ConfigError
from services.core.nats_auth import connect_options, redacted
from services.core.nats_embedded import USER, child_env, config_file, password_file, write_server_config
from services.core.settings import EmbeddedNatsSettings, NatsSettings, load_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("nats", "problem"),
    [
        ({"url": "nats://h:4222", "auth": {"user": "u"}}, "user and password"),
        ({"url": "nats://h:4222", "auth": {"password": "p"}}, "user and password"),
        ({"url": "nats://h:4222", "auth": {"user": "u", "password": "p", "password_file": "f"}}, "not both"),
        ({"url": "nats://h:4222", "auth": {"token": "t", "creds_file": "c"}}, "choose one"),
        ({"auth": {"token": "t"}}, "embedded server generates its own"),
        ({"tls": {"cert_file": "c"}}, "cert_file and key_file go together"),
        ({"embedded": {"tls_key_file": "k"}}, "tls_cert_file and tls_key_file go together"),
    ],
)
def test_bad_nats_security_settings_are_refused_at_load(tmp_path, nats, problem):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"nats": nats}))
    with pytest.raises(ConfigError, match=problem):
        load_settings(config)


MAX = 8 << 20  # nats.max_payload_bytes' default


def test_a_password_from_the_environment_is_never_shown(monkeypatch):
    monkeypatch.setenv("CASCADE_NATS__URL", "nats://user:hunter2@h:4222")
    monkeypatch.setenv("CASCADE_NATS__AUTH__USER", "svc")
    monkeypatch.setenv("CASCADE_NATS__AUTH__PASSWORD", "hunter2")
    settings = load_settings()
    assert "hunter2" not in repr(settings.nats.auth) and "hunter2" not in redacted(settings.nats.url or "")
    assert connect_options(settings.nats) == {"user": "svc", "password": "hunter2"}


def test_secret_files_are_read_at_connect_and_a_missing_one_is_named(tmp_path):
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "seed.nk").write_text("SUAEXAMPLE\n")
    url = "nats://h:4222"
    by_file = NatsSettings(url=url, auth={"user": "u", "password_file": tmp_path / "pw"})
    assert connect_options(by_file) == {"user": "u", "password": "s3cret"}
    assert connect_options(NatsSettings(url=url, auth={"nkey_seed_file": tmp_path / "seed.nk"})) == {
        "nkeys_seed_str": "SUAEXAMPLE"
    }
    with pytest.raises(ConfigError, match=r"nats.auth.creds_file .*missing.creds"):
        connect_options(NatsSettings(url=url, auth={"creds_file": tmp_path / "missing.creds"}))
    assert connect_options(NatsSettings(url=url)) == {}


def test_the_embedded_credentials_are_generated_private_once_and_reused(tmp_path):
    embedded = EmbeddedNatsSettings(data_dir=tmp_path / "nats")
    nats = NatsSettings(embedded=embedded)
    assert connect_options(nats) == {}  # before the first `cascade up`: nothing to present
    path = write_server_config(embedded, max_payload_bytes=MAX)
    secret = password_file(embedded.data_dir).read_text().strip()
    assert path == config_file(embedded.data_dir) and f'password: "{secret}"' in path.read_text()
    for private in (path, password_file(embedded.data_dir)):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    write_server_config(embedded, max_payload_bytes=MAX)  # a restart keeps the password the clients have
    assert password_file(embedded.data_dir).read_text().strip() == secret and len(secret) >= 32
    assert connect_options(nats) == {"user": USER, "password": secret}
    env = child_env(nats, "nats://127.0.0.1:4222")
    assert env["CASCADE_NATS__AUTH__PASSWORD_FILE"] == str(password_file(embedded.data_dir).resolve())
    assert secret not in "".join(env.values())
    # A configured server: the embedded credentials are not its business.
    assert child_env(NatsSettings(url="nats://h:4222", embedded=embedded), "nats://h:4222") == {
        "CASCADE_NATS__URL": "nats://h:4222"
    }


def test_an_embedded_server_without_auth_or_tls_gets_only_its_payload_limit(tmp_path, self_signed):
    bare = write_server_config(EmbeddedNatsSettings(data_dir=tmp_path / "a", auth=False), max_payload_bytes=MAX)
    assert bare.read_text().splitlines()[1:] == [f"max_payload: {MAX}"]
    key, cert = self_signed
    tls = EmbeddedNatsSettings(data_dir=tmp_path / "b", auth=False, tls_cert_file=cert, tls_key_file=key)
    written = write_server_config(tls, max_payload_bytes=MAX)
    assert f'cert_file: "{cert}"' in written.read_text()
    assert "authorization" not in written.read_text()
    nats = NatsSettings(embedded=tls)
    assert "tls" in connect_options(nats)  # trusts the embedded server's own certificate
    assert child_env(nats, "nats://127.0.0.1:4222")["CASCADE_NATS__TLS__CA_FILE"] == str(cert.resolve())


def test_nothing_connects_to_nats_around_the_helper():
    """Every service and command connects through services/core/nats.connect_from_settings, which applies
    nats.auth and nats.tls; the bare connect_nats is for tests and benchmarks on their own servers."""
    direct = re.compile(r"\bnats\.connect\(|NatsClient\(\)|\bNATS\(\)")
    bare = re.compile(r"\bconnect_nats\(")
    helper = REPO / "services" / "core" / "nats.py"
    offenders = []
    for package in ("services", "training", "classifier", "bench"):
        for path in (REPO / package).rglob("*.py"):
            text = path.read_text()
            if path != helper and (direct.search(text) or (package != "bench" and bare.search(text))):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
