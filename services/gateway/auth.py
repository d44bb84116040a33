"""Who is calling: a bearer token in gRPC metadata -> a tenant of ``gateway.tenants``, its policies and rate.

With no tenant configured the gateway is open and a request's own ``tenant`` field is taken as it
comes (a claim, for accounting). With tenants, every Cascade call needs ``authorization: Bearer TOKEN``
for a token whose SHA-256 a tenant lists, and that tenant's name replaces whatever the request
claims, so budgets (``gateway.budgets``) and outcome events key on who actually called.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping

from google.protobuf.message import Message

from services.core.errors import Overloaded, PermissionDenied, Unauthenticated
from services.core.settings import GatewaySettings, TenantSettings
from services.gateway.requests import POLICIES

Clock = Callable[[], float]


class TokenBucket:
    """``rate_per_s`` requests per second on average, at most ``burst`` at once."""

    def __init__(self, rate_per_s: float, burst: int, *, clock: Clock = time.monotonic) -> None:
        self.rate_per_s, self.burst, self._clock = rate_per_s, burst, clock
        self._tokens, self._at = float(burst), clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class Authenticator:
    """Checks one call's metadata and request messages against ``gateway.tenants``."""

    def __init__(self, settings: GatewaySettings, *, clock: Clock = time.monotonic) -> None:
        self._tenants = settings.tenants
        self._default_policy = settings.default_policy
        # Looked up by digest: timing can tell at most something of a SHA-256, nothing of a token.
        self._by_digest = {bytes.fromhex(d): name for name, t in self._tenants.items() for d in t.tokens_sha256}
        self._buckets = {name: _bucket(t, clock) for name, t in self._tenants.items() if t.rate_per_s is not None}

    def authenticate(self, metadata: Mapping[str, str]) -> str | None:
        """The calling tenant (None: no tenants configured, anyone may call); one request of its rate."""
        if not self._tenants:
            return None
        scheme, _, token = metadata.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("this gateway requires `authorization: Bearer TOKEN` metadata (gateway.tenants)")
        tenant = self._by_digest.get(hashlib.sha256(token.strip().encode()).digest())
        if tenant is None:
            raise Unauthenticated("the bearer token is not one of a tenant's in gateway.tenants")
        bucket = self._buckets.get(tenant)
        if bucket is not None and not bucket.take():
            raise Overloaded(
                f"tenant {tenant!r} is over its request rate ({bucket.rate_per_s:g}/s, burst {bucket.burst})"
            )
        return tenant

    def admit(self, tenant: str | None, request: Message) -> Message:
        """``request`` with the authenticated tenant on it; PermissionDenied for a policy it may not use."""
        if tenant is None:
            return request
        fields = request.DESCRIPTOR.fields_by_name
        if "tenant" in fields:
            request.tenant = tenant  # type: ignore[attr-defined]
        allowed = self._tenants[tenant].policies
        if "policy" in fields and allowed is not None:
            number = request.policy  # type: ignore[attr-defined]
            # An unknown number is left to request validation (INVALID_ARGUMENT).
            policy = POLICIES.get(number) if number else self._default_policy
            if policy is not None and policy not in allowed:
                raise PermissionDenied(f"tenant {tenant!r} may not use policy {policy!r}; it may use {list(allowed)}")
        return request


def _bucket(tenant: TenantSettings, clock: Clock) -> TokenBucket:
    assert tenant.rate_per_s is not None
    burst = tenant.burst if tenant.burst is not None else max(1, math.ceil(tenant.rate_per_s))
    return TokenBucket(tenant.rate_per_s, burst, clock=clock)
