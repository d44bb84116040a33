"""NATS nkeys and a decentralised (operator/JWT) server setup, made here for tests: no `nsc` needed.

The JWTs follow nats-io/jwt v2: base64url header and claims, signed with the issuer's ed25519 nkey.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path

import nkeys

_UNLIMITED = {"subs": -1, "data": -1, "payload": -1}
_ACCOUNT_LIMITS = {**_UNLIMITED, "imports": -1, "exports": -1, "wildcards": True, "conn": -1, "leaf": -1}


def new_key(prefix: int = nkeys.PREFIX_BYTE_USER) -> nkeys.KeyPair:
    """A fresh key pair: users (SU... seed, U... public key), accounts, operators by ``prefix``."""
    return nkeys.from_seed(bytearray(nkeys.encode_seed(os.urandom(32), prefix)))


def operator_setup(folder: Path) -> tuple[Path, Path]:
    """(server config, user creds file): an operator, a system account and an account with one user."""
    operator = new_key(nkeys.PREFIX_BYTE_OPERATOR)
    system, account, user = new_key(nkeys.PREFIX_BYTE_ACCOUNT), new_key(nkeys.PREFIX_BYTE_ACCOUNT), new_key()
    accounts = {_public(a): _jwt(operator, a, "account", {"limits": _ACCOUNT_LIMITS}) for a in (system, account)}
    preload = ", ".join(f'{key}: "{token}"' for key, token in accounts.items())
    config = folder / "operator.conf"
    config.write_text(
        f'operator: "{_jwt(operator, operator, "operator", {})}"\nresolver: MEMORY\n'
        f"system_account: {_public(system)}\nresolver_preload: {{ {preload} }}\n"
    )
    user_jwt = _jwt(account, user, "user", {"pub": {}, "sub": {}, **_UNLIMITED})
    creds = folder / "user.creds"
    creds.write_text(
        f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{user.seed.decode()}\n------END USER NKEY SEED------\n"
    )
    return config, creds


def _public(key: nkeys.KeyPair) -> str:
    return str(key.public_key.decode())


def _jwt(issuer: nkeys.KeyPair, subject: nkeys.KeyPair, kind: str, nats: dict[str, object]) -> str:
    claims: dict[str, object] = {"iat": int(time.time()), "iss": _public(issuer), "sub": _public(subject)}
    claims |= {"name": kind, "nats": {"type": kind, "version": 2, **nats}}
    claims["jti"] = base64.b32encode(hashlib.sha256(json.dumps(claims).encode()).digest()).decode().rstrip("=")
    head = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(issuer.sign(f'{head}.{body}'.encode()))}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
