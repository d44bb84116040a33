"""The authentication and TLS options of a NATS connection, from the `nats` settings section.

One place turns nats.auth and nats.tls into nats-py's connect options, so every service and
command that connects through services/core/nats.py presents the same credentials. Secrets are
read here at connect time (from the settings or their files) and never logged.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from services.core.errors import ConfigError
from services.core.nats_embedded import client_auth
from services.core.settings import NatsAuthSettings, NatsSettings


def connect_options(nats: NatsSettings) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect``: credentials and a TLS context, as configured."""
    options = _auth_options(_auth(nats))
    context = _tls_context(nats)
    if context is not None:
        options["tls"] = context
    return options


def redacted(url: str) -> str:
    """``url`` without a user or password in it, for messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def _auth(nats: NatsSettings) -> NatsAuthSettings:
    # With no nats.url the client talks to the embedded server, whose credentials are in its data directory.
    embedded = client_auth(nats.embedded) if nats.url is None else None
    return embedded or nats.auth


def _auth_options(auth: NatsAuthSettings) -> dict[str, Any]:
    if auth.user is not None:
        secret = auth.password.get_secret_value() if auth.password else _read(auth.password_file, "password_file")
        return {"user": auth.user, "password": secret}
    if auth.token is not None:
        return {"token": auth.token.get_secret_value()}
    if auth.nkey_seed_file is not None:
        return {"nkeys_seed_str": _read(auth.nkey_seed_file, "nkey_seed_file")}
    if auth.creds_file is not None:
        _read(auth.creds_file, "creds_file")  # a clear error now rather than nats-py's at connect
        return {"user_credentials": str(auth.creds_file)}
    return {}


def _tls_context(nats: NatsSettings) -> ssl.SSLContext | None:
    tls = nats.tls
    embedded_tls = nats.url is None and nats.embedded.tls_cert_file is not None
    wanted = tls.enabled or embedded_tls or (nats.url or "").startswith("tls://")
    if not (wanted or tls.ca_file or tls.cert_file):
        return None
    # A self-signed embedded server is trusted through its own certificate unless a CA is configured.
    ca = tls.ca_file or (nats.embedded.tls_cert_file if embedded_tls else None)
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
        if tls.cert_file is not None:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the NATS TLS files (nats.tls): {exc}") from exc
    return context


def _read(path: Path | None, key: str) -> str:
    assert path is not None
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read nats.auth.{key} {path}: {exc.strerror}") from exc
