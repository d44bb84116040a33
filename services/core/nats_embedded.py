"""Credentials and config file of the embedded nats-server `cascade up` starts (no nats.url).

With ``nats.embedded.auth`` the server requires a user and a random password generated into its
data directory at first start (0600, in a 0700 folder) and reused after, so a restart keeps the
services' and the CLI's access. Nothing secret goes on a command line or into the environment:
the children get the *path* of the password file (``child_env``), the CLI finds it from the same
config (services/core/nats_auth.py).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from services.core.settings import EmbeddedNatsSettings, NatsAuthSettings, NatsSettings

USER = "cascade"


def password_file(data_dir: Path) -> Path:
    return data_dir / "credentials" / "password"


def config_file(data_dir: Path) -> Path:
    return data_dir / "nats-server.conf"


def client_auth(embedded: EmbeddedNatsSettings) -> NatsAuthSettings | None:
    """The credentials a client of the embedded server presents (None: it requires none, or never started)."""
    path = password_file(embedded.data_dir)
    if not embedded.auth or not path.exists():
        return None
    return NatsAuthSettings(user=USER, password_file=path)


def write_server_config(embedded: EmbeddedNatsSettings, *, max_payload_bytes: int) -> Path:
    """Write the server's config file (``-c``): its largest message, and auth and TLS as configured."""
    blocks = [f"max_payload: {max_payload_bytes}"]  # no command-line flag sets it
    if embedded.auth:
        password = _password(password_file(embedded.data_dir))
        blocks.append(f"authorization {{\n  user: {json.dumps(USER)}\n  password: {json.dumps(password)}\n}}")
    if embedded.tls_cert_file is not None:
        cert, key = json.dumps(str(embedded.tls_cert_file)), json.dumps(str(embedded.tls_key_file))
        blocks.append(f"tls {{\n  cert_file: {cert}\n  key_file: {key}\n}}")
    path = config_file(embedded.data_dir)
    header = "# Written by `cascade up` at every start from nats.embedded; edits are overwritten.\n"
    _write_private(path, header + "\n".join(blocks) + "\n")  # it may hold the password: 0600 like the password file
    return path


def child_env(nats: NatsSettings, url: str) -> dict[str, str]:
    """What `cascade up`'s services need to reach its embedded server: its URL, credentials and CA, by path."""
    env = {"CASCADE_NATS__URL": url}
    if nats.url is not None:  # not the embedded server: the services read nats.auth and nats.tls as configured
        return env
    auth = client_auth(nats.embedded)
    if auth is not None:
        env["CASCADE_NATS__AUTH__USER"] = USER
        env["CASCADE_NATS__AUTH__PASSWORD_FILE"] = str(Path(auth.password_file or "").resolve())
    if nats.embedded.tls_cert_file is not None and nats.tls.ca_file is None:
        env["CASCADE_NATS__TLS__CA_FILE"] = str(nats.embedded.tls_cert_file.resolve())
    return env


def _password(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(path, secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by its owner only, replacing ``path`` at once (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
