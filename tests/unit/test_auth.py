"""gateway.tenants: settings checks, the token bucket and the Authenticator, without a socket.

Calls through a real gateway are in tests/integration/test_gateway_auth.py.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys

import pytest

from cascade.v1 import cascade_pb2
from services.core.errors import ConfigError, Overloaded, PermissionDenied, Unauthenticated
from services.core.settings import CascadeSettings, GatewaySettings, load_settings
from services.gateway.auth import Authenticator, TokenBucket


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def gateway(**tenants: dict) -> GatewaySettings:
    return GatewaySettings(tenants=tenants, default_policy="route")


def test_the_bucket_allows_its_burst_then_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(2.0, 3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now = 0.5  # one request's worth refilled
    assert [bucket.take(), bucket.take()] == [True, False]
    clock.now = 100.0  # never more than the burst
    assert sum(bucket.take() for _ in range(10)) == 3


def test_no_tenants_is_open_and_keeps_the_claimed_tenant() -> None:
    auth = Authenticator(GatewaySettings())
    assert auth.authenticate({}) is None
    request = cascade_pb2.GenerateRequest(tenant="claimed", policy=cascade_pb2.POLICY_LARGE)
    assert auth.admit(None, request).tenant == "claimed"


@pytest.mark.parametrize(
    "header", ["", "Bearer", "Bearer  ", "Basic tok-a", "tok-a", "Bearer tok-b", "Bearer tok-a-not"]
)
def test_a_missing_or_unknown_token_is_unauthenticated(header: str) -> None:
    auth = Authenticator(gateway(a={"tokens_sha256": [sha("tok-a")]}))
    with pytest.raises(Unauthenticated):
        auth.authenticate({"authorization": header} if header else {})


def test_a_token_names_its_tenant_whose_name_replaces_the_claim() -> None:
    auth = Authenticator(gateway(a={"tokens_sha256": [sha("tok-a"), sha("tok-a2")]}, b={"tokens_sha256": [sha("b")]}))
    assert auth.authenticate({"authorization": "Bearer tok-a2"}) == "a"
    assert auth.authenticate({"authorization": "bearer b"}) == "b"
    assert auth.admit("a", cascade_pb2.GenerateRequest(tenant="b")).tenant == "a"
    assert auth.admit("a", cascade_pb2.FeedbackRequest(tenant="")).tenant == "a"


def test_policies_are_checked_after_the_default() -> None:
    auth = Authenticator(gateway(a={"tokens_sha256": [sha("t")], "policies": ["cascade", "small"]}))
    auth.admit("a", cascade_pb2.GenerateRequest(policy=cascade_pb2.POLICY_AUTO))  # an alias of cascade
    for policy in (cascade_pb2.POLICY_LARGE, cascade_pb2.POLICY_UNSPECIFIED):  # unspecified: default "route"
        with pytest.raises(PermissionDenied, match="tenant 'a' may not use policy"):
            auth.admit("a", cascade_pb2.GenerateRequest(policy=policy))
    auth.admit("a", cascade_pb2.GenerateRequest(policy=99))  # unknown: request validation says INVALID_ARGUMENT


def test_each_tenant_has_its_own_rate() -> None:
    clock = Clock()
    tenants = {"a": {"tokens_sha256": [sha("a")], "rate_per_s": 1.0}, "b": {"tokens_sha256": [sha("b")]}}
    auth = Authenticator(gateway(**tenants), clock=clock)
    assert auth.authenticate({"authorization": "Bearer a"}) == "a"
    with pytest.raises(Overloaded, match=r"tenant 'a' is over its request rate \(1/s, burst 1\)"):
        auth.authenticate({"authorization": "Bearer a"})
    assert all(auth.authenticate({"authorization": "Bearer b"}) == "b" for _ in range(20))
    clock.now = 1.0
    assert auth.authenticate({"authorization": "Bearer a"}) == "a"


@pytest.mark.parametrize(
    ("gateway_section", "http", "message"),
    [
        ({"tenants": {"a": {"tokens_sha256": ["not-hex"]}}}, {}, "lowercase hex SHA-256"),
        ({"tenants": {"a": {"tokens_sha256": []}}}, {}, "at least 1"),
        ({"tenants": {"a": {"tokens_sha256": [sha("x")], "burst": 3}}}, {}, "burst needs rate_per_s"),
        ({"tenants": {"a": {"tokens_sha256": [sha("x")], "policies": ["fast"]}}}, {}, "policies"),
        ({"tenants": {"a": {"tokens_sha256": [sha("x")]}, "b": {"tokens_sha256": [sha("x")]}}}, {}, "both 'a' and 'b'"),
        ({"tenants": {"a": {"tokens_sha256": [sha("x")]}}}, {"api_keys_sha256": [sha("y")]}, "not both"),
    ],
)
def test_bad_tenant_settings_are_refused(tmp_path, gateway_section, http, message) -> None:
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"gateway": gateway_section, "http": http}))
    with pytest.raises(ConfigError, match=message):
        load_settings(path)


def test_tenant_settings_load() -> None:
    settings = CascadeSettings(gateway={"tenants": {"a": {"tokens_sha256": [sha("x")], "rate_per_s": 5}}})
    assert settings.gateway.tenants["a"].policies is None and settings.gateway.tenants["a"].burst is None


def test_cascade_token_hash_reads_stdin(monkeypatch, capsys) -> None:
    from services.cli import token

    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-token\n"))
    assert token.main(argparse.Namespace()) == 0
    assert capsys.readouterr().out.strip() == sha("s3cret-token")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert token.main(argparse.Namespace()) == 2
    assert "no token on stdin" in capsys.readouterr().err
