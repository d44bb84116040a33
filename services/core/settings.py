"""Configuration: one validated object, loaded once at process start and passed down.

Sources, later ones winning: built-in defaults, a YAML file (``--config`` or
``$CASCADE_CONFIG``), then environment variables ``CASCADE_<SECTION>__<KEY>``
(for example ``CASCADE_NATS__URL=nats://10.0.0.5:4222``). Relative paths in the
YAML file are resolved against the file's own folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# Re-exported: the settings' defaults, where services and training have always imported them from.
from cascade_common.models import DEFAULT_CONFIDENCE_MODEL as DEFAULT_CONFIDENCE_MODEL
from cascade_common.models import DEFAULT_ROUTER_MODEL as DEFAULT_ROUTER_MODEL
from services.core.errors import ConfigError
from services.core.payloads import DEFAULT_MAX_PAYLOAD


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmbeddedNatsSettings(_Section):
    """The nats-server that `cascade up` starts when no URL is configured."""

    host: str = "127.0.0.1"
    port: int = Field(4222, ge=0, le=65535)
    data_dir: Path = Path(".cascade/nats")
    # Require a user and password, generated into data_dir at first start (0600) and reused after;
    # `cascade up`'s services and the CLI read them from there (services/core/nats_embedded.py).
    auth: bool = True
    # TLS for its clients; a client trusts it through nats.tls.ca_file (the cert itself if self-signed).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> EmbeddedNatsSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("nats.embedded.tls_cert_file and tls_key_file go together")
        return self


class NatsAuthSettings(_Section):
    """How every service and command authenticates to the NATS server at nats.url: one method at most."""

    user: str | None = None
    # The password itself (better from CASCADE_NATS__AUTH__PASSWORD), or a file holding it.
    password: SecretStr | None = None
    password_file: Path | None = None
    token: SecretStr | None = None
    # A user nkey seed file (SU...), or a creds file (a user JWT and its seed, as `nsc` writes).
    nkey_seed_file: Path | None = None
    creds_file: Path | None = None

    @model_validator(mode="after")
    def _one_method(self) -> NatsAuthSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("nats.auth: set password or password_file, not both")
        has_password = self.password is not None or self.password_file is not None
        if has_password != (self.user is not None):
            raise ValueError("nats.auth: user and password (or password_file) go together")
        methods = [has_password, self.token is not None, self.nkey_seed_file is not None, self.creds_file is not None]
        if sum(methods) > 1:
            raise ValueError("nats.auth: choose one of user/password, token, nkey_seed_file, creds_file")
        return self

    @property
    def configured(self) -> bool:
        return self != NatsAuthSettings()


class NatsTlsSettings(_Section):
    """TLS to NATS: the CA to trust (unset: the system's) and a client certificate for mutual TLS."""

    # Use TLS even with a nats:// URL and no file set here (a tls:// URL does too).
    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _cert_pair(self) -> NatsTlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("nats.tls.cert_file and key_file go together")
        return self


class NatsSettings(_Section):
    # None: `cascade up` starts an embedded nats-server and points every service at it.
    url: str | None = None
    embedded: EmbeddedNatsSettings = EmbeddedNatsSettings()
    auth: NatsAuthSettings = NatsAuthSettings()
    tls: NatsTlsSettings = NatsTlsSettings()
    connect_timeout_s: float = Field(2.0, gt=0)
    # How long a starting service waits for NATS before it exits with an error.
    connect_wait_s: float = Field(60.0, gt=0)
    # Largest NATS message a service accepts (and the embedded nats-server's max_payload): a larger
    # payload is refused with a clear error, never decoded.
    max_payload_bytes: int = Field(DEFAULT_MAX_PAYLOAD, ge=64 << 10, le=64 << 20)

    @model_validator(mode="after")
    def _auth_needs_url(self) -> NatsSettings:
        if self.url is None and self.auth.configured:
            raise ValueError(
                "nats.auth is for the server at nats.url; the embedded server generates its own "
                "credentials (nats.embedded.auth)"
            )
        return self

    @property
    def client_url(self) -> str:
        """Where a command connects: the configured URL, else the embedded server `cascade up` starts."""
        return self.url or f"nats://{self.embedded.host}:{self.embedded.port}"


class PriceSettings(_Section):
    """USD per million tokens."""

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


class OpenAIBackendSettings(_Section):
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str
    api_key: SecretStr | None = None
    timeout_s: float = Field(120.0, gt=0)
    connect_timeout_s: float = Field(2.0, gt=0)
    max_connections: int = Field(256, ge=1)


class ReplayBackendSettings(_Section):
    data: Path
    model: str


class TierSettings(_Section):
    backend: Literal["openai", "replay"]
    openai: OpenAIBackendSettings | None = None
    replay: ReplayBackendSettings | None = None
    price: PriceSettings = PriceSettings()
    # Where the backend is called: "worker", by tier worker processes on NATS (cascade.tier.<name>; they
    # scale out and fail apart from the gateway), or "embedded", by each gateway process itself (no NATS
    # hop, no worker process per request; for a remote OpenAI-compatible server, see README's capacity).
    mode: Literal["worker", "embedded"] = "worker"
    # Requests one worker process (or, embedded, one gateway) runs at once; more are refused with
    # RESOURCE_EXHAUSTED.
    max_concurrency: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _backend_section_present(self) -> TierSettings:
        if getattr(self, self.backend) is None:
            raise ValueError(f"backend {self.backend!r} needs a '{self.backend}:' section")
        return self


class RouterSettings(_Section):
    # Where prompts are scored: "service", the router processes on NATS (cascade.route; they scale out
    # and fail apart from the gateway), or "embedded", inside each gateway process (no NATS round trip
    # and no process hop per request; the same model loading, hot reload and decision fields).
    mode: Literal["service", "embedded"] = "service"
    # Where the model comes from: a local path (`model`), or a version published to the JetStream
    # object store with `cascade train publish` (`published`). Set one of the two, not both.
    # A model folder (router.onnx + model_card.json) or an .onnx file.
    model: Path = DEFAULT_ROUTER_MODEL
    # "latest" (follow every new publication) or one version (pinned); set: `model` is not used.
    published: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    # The model registry's object store bucket: routers and answer scorers (escalation.published),
    # also where `cascade train publish` and `cascade model` read and write.
    registry_bucket: str = Field(default="cascade-models", pattern=r"^[A-Za-z0-9_-]+$")
    # Published versions are downloaded here, one folder per kind and version (<kind>/<version>/).
    cache_dir: Path = Path(".cascade/models")
    # Score at or above which a prompt goes to the large tier. Unset: taken from the model's
    # threshold table for `target_large_share`, else the model's own default.
    threshold: float | None = Field(None, ge=0, le=1)
    target_large_share: float | None = Field(None, ge=0, le=1)
    # The tiers in order of cost, cheapest first: the router picks the starting one, the cascade
    # escalates one step up at a time. Unset: [small_tier, large_tier], the two-tier default. Set:
    # small_tier, large_tier and fallback_tier default to its first, last and last entry.
    tiers: tuple[str, ...] = ()
    # More than two tiers: N-1 non-decreasing score cuts; a score at or above thresholds[i] starts
    # on tiers[i+1] or above. Unset: every cut is `threshold` (the cheapest tier, or straight to the top).
    thresholds: tuple[float, ...] | None = None
    small_tier: str = "small"
    large_tier: str = "large"
    # Where a request goes when the router cannot score it.
    fallback_tier: str = "large"
    # Seconds between checks for a new model: a changed file (0: never), or the registry's "latest"
    # (router and gateway scorer; they also switch at once on each ModelEvent; 0: on events only).
    reload_interval_s: float = Field(10.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _ends_of_the_tier_list(cls, data: Any) -> Any:
        """small_tier / large_tier / fallback_tier follow a given tier list; the list follows them when unset."""
        if not isinstance(data, dict):
            return data
        tiers = data.get("tiers")
        if tiers:
            tiers = [tiers] if isinstance(tiers, str) else list(tiers)
            return {"small_tier": tiers[0], "large_tier": tiers[-1], "fallback_tier": tiers[-1], **data}
        small, large = data.get("small_tier", "small"), data.get("large_tier", "large")
        return {**data, "tiers": list(dict.fromkeys([small, large]))}

    @model_validator(mode="after")
    def _one_model_source(self) -> RouterSettings:
        if self.published is not None and "model" in self.model_fields_set:
            raise ValueError("set router.model (a path) or router.published (a version), not both")
        return self

    @model_validator(mode="after")
    def _tier_list(self) -> RouterSettings:
        tiers = self.tiers
        if not tiers:
            raise ValueError("router.tiers needs at least one tier")
        if len(set(tiers)) != len(tiers):
            raise ValueError(f"router.tiers names a tier twice: {list(tiers)}")
        if (self.small_tier, self.large_tier) != (tiers[0], tiers[-1]):
            raise ValueError("router.small_tier and router.large_tier must be the first and last of router.tiers")
        if self.thresholds is not None:
            if self.threshold is not None:
                raise ValueError("set router.threshold (two tiers) or router.thresholds, not both")
            t = self.thresholds
            if len(t) != len(tiers) - 1 or any(not 0 <= x <= 1 for x in t) or list(t) != sorted(t):
                raise ValueError(f"router.thresholds wants {len(tiers) - 1} non-decreasing numbers in [0, 1], got {t}")
        return self


class SecondOpinionSettings(_Section):
    """Another cheap tier answers the same prompt; agreement with it is a confidence signal."""

    # A configured tier (e.g. Llama-3.1-8B beside Mistral-7B); unset: no second opinion.
    tier: str | None = None
    # never; parallel (asked beside the small tier); when_unsure (asked only when the first
    # confidence, without it, lies in [unsure_low, unsure_high)).
    mode: Literal["never", "parallel", "when_unsure"] = "when_unsure"
    unsure_low: float = Field(0.0, ge=0, le=1)
    unsure_high: float = Field(1.0, ge=0, le=1)


class EscalationSettings(_Section):
    enabled: bool = True
    # Which confidence model scores a small answer (a name in classifier.confidence's registry):
    # scorer (learned, every signal), logprob (geometric-mean token probability), agreement.
    confidence: str = "scorer"
    # The confidence model's files; unset: the shipped default for `confidence`.
    confidence_model: Path | None = None
    # The scorer from the model registry instead (router.registry_bucket, cached under router.cache_dir):
    # "latest" (follow every promotion, checked every router.reload_interval_s and on each ModelEvent)
    # or one version (pinned). Needs confidence: scorer; set: confidence_model is not used.
    published: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    # A small-tier answer whose confidence is below this escalates to the large tier.
    min_confidence: float = Field(0.5, ge=0, le=1)
    # More than two tiers: one threshold per tier below the top (cheapest first); an answer of
    # router.tiers[i] below step_min_confidence[i] escalates to tiers[i+1]. Unset: min_confidence at every step.
    step_min_confidence: tuple[float, ...] | None = None
    # Self-consistency: answers the small tier samples in one call (vLLM's n), at this temperature.
    samples: int = Field(1, ge=1, le=16)
    sample_temperature: float = Field(0.7, ge=0, le=2)
    second_opinion: SecondOpinionSettings = SecondOpinionSettings()
    # A small-tier failure (server down, error) is retried on the large tier.
    on_error: bool = True
    # Escalations per request (one step up the tier list each). Unset: len(router.tiers) - 1, so an
    # answer can climb to the top tier (1 for the two-tier default).
    max_escalations: int | None = Field(None, ge=0)
    # A policy file from `cascade train calibrate` (router and escalation thresholds, second-opinion
    # mode); when set, its values win over min_confidence, second_opinion and router.threshold.
    calibration: Path | None = None

    @model_validator(mode="after")
    def _one_scorer_source(self) -> EscalationSettings:
        if self.published is not None and self.confidence != "scorer":
            raise ValueError(
                f"escalation.published is a published scorer: it needs confidence: scorer, not {self.confidence!r}"
            )
        if self.published is not None and self.confidence_model is not None:
            raise ValueError("set escalation.confidence_model (a path) or escalation.published (a version), not both")
        return self


class BudgetSettings(_Section):
    """A tenant's allowance of large-tier use, enforced by each gateway process on its own traffic."""

    # Largest share of the tenant's requests in the window that may use the large tier (None: no limit).
    max_large_share: float | None = Field(None, ge=0, le=1)
    # Largest large-tier spend in the window, in USD (None: no limit).
    max_large_usd: float | None = Field(None, ge=0)
    window_s: float = Field(3600.0, gt=0)
    # Beyond the budget: answer on the small tier (reason BUDGET), or fail with RESOURCE_EXHAUSTED.
    on_exceeded: Literal["small", "fail"] = "small"


class BreakerSettings(_Section):
    """A circuit breaker per tier in each gateway (services/gateway/breaker.py)."""

    # Failures in a row (tier unreachable, silent or failing) that open a tier's breaker; 0: never opens.
    failures: int = Field(5, ge=0)
    # Seconds an open breaker refuses calls at once; then one probe call decides (success closes it).
    open_s: float = Field(10.0, gt=0)


PolicyName = Literal["cascade", "route", "small", "large"]


def _check_digests(digests: tuple[str, ...], key: str) -> None:
    if any(not re.fullmatch(r"[0-9a-f]{64}", d) for d in digests):
        raise ValueError(f"{key} takes lowercase hex SHA-256 digests (64 characters; `cascade token hash` prints one)")


class TenantSettings(_Section):
    """A client of the gateway, known by its bearer tokens (``gateway.tenants.<name>``)."""

    # Hex SHA-256 of each token the tenant's clients may send; the tokens themselves are never stored.
    tokens_sha256: tuple[str, ...] = Field(min_length=1)
    # The policies its requests may use (a request naming none counts as gateway.default_policy); unset: all.
    policies: tuple[PolicyName, ...] | None = None
    # Request rate limit (a token bucket: rate_per_s refilled continuously, burst at most); unset: none.
    rate_per_s: float | None = Field(None, gt=0)
    burst: int | None = Field(None, ge=1)  # unset: rate_per_s rounded up (at least 1)

    @model_validator(mode="after")
    def _digests(self) -> TenantSettings:
        _check_digests(self.tokens_sha256, "gateway.tenants.*.tokens_sha256")
        if self.burst is not None and self.rate_per_s is None:
            raise ValueError("gateway.tenants.*.burst needs rate_per_s")
        return self


class GatewaySettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535)
    max_prompt_chars: int = Field(200_000, ge=1)
    # Largest gRPC request message (bytes); larger: RESOURCE_EXHAUSTED before it is decoded.
    max_request_bytes: int = Field(4 << 20, ge=1024)
    max_tokens_limit: int = Field(8192, ge=1)
    default_max_tokens: int = Field(512, ge=1)
    # Deadline for calls that come without one.
    default_timeout_s: float = Field(300.0, gt=0)
    max_in_flight: int = Field(512, ge=1)
    route_timeout_s: float = Field(1.0, gt=0)
    tier_accept_timeout_s: float = Field(2.0, gt=0)
    # Longest silence between two chunks of one answer before the tier is declared lost.
    chunk_idle_timeout_s: float = Field(60.0, gt=0)
    # Tokens gathered into one NATS message per this many milliseconds (the first token and the final
    # chunk go at once): for streamed calls (GenerateStream, streamed HTTP) and for unary ones, whose
    # caller sees nothing before the end anyway. 0: one message per token.
    chunk_interval_ms: int = Field(10, ge=0, le=1000)
    unary_chunk_interval_ms: int = Field(200, ge=0, le=10_000)
    reflection: bool = True
    # The policy of requests that name none: cascade, route, small or large.
    default_policy: PolicyName = "cascade"
    # Clients by tenant name, each with its hashed bearer tokens: with any set, every Cascade call needs
    # `authorization: Bearer TOKEN` of a tenant, whose name replaces the request's own `tenant`.
    tenants: dict[str, TenantSettings] = Field(default_factory=dict)
    # Large-tier budgets by tenant; "*" applies to every tenant without its own entry.
    budgets: dict[str, BudgetSettings] = Field(default_factory=dict)
    breaker: BreakerSettings = BreakerSettings()
    # A request that needs a tier whose breaker is open (policies cascade and route): answer on the
    # cheapest tier instead, saying so (reason TIER_DOWN, route.tier_down), or fail at once with
    # UNAVAILABLE naming the tier. Policy large never moves: it fails at once.
    on_tier_down: Literal["small", "fail"] = "small"
    # TLS: PEM files. With both set the gateway serves TLS only; with client_ca too, it requires client certificates.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> GatewaySettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("gateway.tls_cert and gateway.tls_key go together")
        owners: dict[str, str] = {}
        for name, tenant in self.tenants.items():
            for digest in tenant.tokens_sha256:
                if owners.setdefault(digest, name) != name:
                    raise ValueError(f"gateway.tenants: one token belongs to both {owners[digest]!r} and {name!r}")
        return self

    @model_validator(mode="after")
    def _chunks_within_idle_timeout(self) -> GatewaySettings:
        if max(self.chunk_interval_ms, self.unary_chunk_interval_ms) >= self.chunk_idle_timeout_s * 1e3:
            raise ValueError("gateway.chunk_interval_ms and unary_chunk_interval_ms must be below chunk_idle_timeout_s")
        return self


# Built-in redaction patterns for outcomes.redact, applied in the order listed: "phone" before "number"
# (a number pattern first would leave a phone number's digits as several [number] pieces).
REDACT_PATTERNS: dict[str, tuple[str, str]] = {
    # The lookbehind starts a match only where a run of address characters starts: without it a long
    # run with no "@" is scanned again from each of its characters (quadratic; 250 ms on one MMLU-Pro text).
    "email": (r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+", "[email]"),
    "ipv4": (r"\b(?:\d{1,3}\.){3}\d{1,3}\b", "[ip]"),
    "phone": (r"(?<![\w+])\+?\d[\d ()./-]{6,}\d\b", "[phone]"),
    "number": (r"\d+(?:[.,]\d+)*", "[number]"),
}


class RedactRule(_Section):
    """One redaction: a built-in ``name`` (REDACT_PATTERNS), or a custom ``pattern`` with its replacement."""

    name: str | None = None
    pattern: str | None = None
    # For a custom pattern (re.sub syntax: \1 and \g<name> refer to groups); a built-in has its own.
    replacement: str = "[redacted]"

    @model_validator(mode="before")
    @classmethod
    def _a_name_alone(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _compiles(self) -> RedactRule:
        if self.pattern is None:
            if self.name not in REDACT_PATTERNS:
                raise ValueError(
                    f"outcomes.redact: unknown pattern {self.name!r}; built-in: {sorted(REDACT_PATTERNS)}, "
                    "or give a custom one as {pattern: REGEX, replacement: TEXT}"
                )
            return self
        try:
            re.compile(self.pattern).sub(self.replacement, "")  # a bad group reference fails here too
        except re.error as exc:
            raise ValueError(f"outcomes.redact: bad regular expression {self.pattern!r}: {exc}") from exc
        return self

    def compiled(self) -> tuple[re.Pattern[str], str]:
        pattern, replacement = (self.pattern, self.replacement) if self.pattern else REDACT_PATTERNS[self.name or ""]
        return re.compile(pattern), replacement


class OutcomeSettings(_Section):
    stream: str = "CASCADE_OUTCOMES"
    max_age_days: float = Field(30.0, gt=0)
    max_bytes: int = Field(1 << 30, gt=0)
    # Record the prompt text itself, not only its hash (off: prompts may hold personal data).
    store_prompt_text: bool = False
    # Record every attempt's answer text (attempts[].text, answer_text), so an escalated request's
    # small and large answers can be compared into a label (off: answers may hold personal data).
    store_answer_text: bool = False
    # Applied to every text an outcome stores (prompt, answers, samples) before it leaves the gateway:
    # built-in names (REDACT_PATTERNS) or {pattern, replacement}, in order; then redact_hook, a function
    # "package.module:function" taking and returning a str, imported and tried once at start.
    redact: tuple[RedactRule, ...] = ()
    redact_hook: str | None = Field(None, pattern=r"^[\w.]+:[\w]+$")
    publish_timeout_s: float = Field(5.0, gt=0)
    # Feedback counts for this long after a request (seconds): the gateway refuses feedback for an
    # id it has not seen within the window (NOT_FOUND), and labels ignore feedback that came later.
    feedback_window_s: float = Field(86400.0, gt=0)
    # The stream of recently seen request ids (one message per id, kept for feedback_window_s), which
    # every gateway copy checks a Feedback call against; at max bytes the oldest ids are dropped.
    seen_stream: str = "CASCADE_REQUESTS"
    seen_max_bytes: int = Field(256 << 20, gt=0)
    # A publish repeated with the same message id within this window is stored once (a retry, or the
    # next gateway republishing what a killed one had spooled); the server remembers ids this long.
    duplicate_window_s: float = Field(600.0, gt=0)
    # The gateway's local outcome spool (services/outcomes/spool.py): one directory per gateway.
    spool_dir: Path = Path(".cascade/spool")
    spool_max_bytes: int = Field(256 << 20, gt=0)
    spool_fsync: Literal["always", "batch", "never"] = "batch"
    spool_fsync_interval_s: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _windows_within_retention(self) -> OutcomeSettings:
        if self.feedback_window_s > self.max_age_days * 86400:
            raise ValueError(
                "outcomes.feedback_window_s must not exceed outcomes.max_age_days: outcomes must outlive it"
            )
        if self.duplicate_window_s > self.max_age_days * 86400:
            raise ValueError("outcomes.duplicate_window_s cannot be longer than max_age_days")
        if self.seen_stream == self.stream:
            raise ValueError("outcomes.seen_stream must differ from outcomes.stream")
        return self


class ExplorationSettings(_Section):
    """A share of requests also (shadow) or instead (against) answered by another tier, for labels."""

    # Share of the requests under policies cascade and route that are explored, chosen by a hash of the
    # request id (and seed): the same id is always chosen or never. 0: off.
    share: float = Field(0.0, ge=0, le=1)
    # shadow: after the answer is returned, the other end of router.tiers answers too, in the background
    # (never returned; its attempt has purpose "shadow"). against: the router's decision is inverted.
    mode: Literal["shadow", "against"] = "shadow"
    # Caps over the last hour of this gateway's traffic (None: no cap): USD spent on explored requests
    # (a shadow's attempt; the whole cost of a request routed against the decision), and the share of
    # requests explored. A capped request is simply not explored.
    max_usd_per_hour: float | None = Field(None, ge=0)
    max_share: float | None = Field(None, ge=0, le=1)
    # Salt of the choosing hash: another seed explores another sample of request ids.
    seed: str = ""
    # A shadow answer that takes longer is recorded as DEADLINE_EXCEEDED; the outcome is published then.
    shadow_timeout_s: float = Field(120.0, gt=0)
    # Shadows running at once; beyond it a chosen request is not explored.
    max_shadows_in_flight: int = Field(16, ge=1)


class HttpSettings(_Section):
    """The OpenAI-compatible HTTP front door (``python -m services.http``), a client of the gateway."""

    # `cascade up` starts it after the gateway; `python -m services.http` runs it regardless.
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # The gateway's gRPC address (host:port); unset: gateway.host:port (a wildcard host becomes 127.0.0.1).
    gateway_target: str | None = None
    # gRPC deadline of one HTTP request, the whole stream included.
    request_timeout_s: float = Field(300.0, gt=0)
    # Hex SHA-256 digests of the accepted bearer tokens; empty: no authentication.
    api_keys_sha256: tuple[str, ...] = ()
    # Largest request body (bytes); larger: HTTP 413 before it is parsed.
    max_body_bytes: int = Field(4 << 20, ge=1024)
    # TLS to the gateway (when gateway.tls_cert is set): the CA to trust (unset: gateway.tls_cert itself,
    # right for a self-signed certificate), and a client certificate for a gateway that requires one
    # (unset: the gateway's own cert and key, which a tls_client_ca of that same self-signed cert accepts).
    gateway_tls_ca: Path | None = None
    gateway_tls_client_cert: Path | None = None
    gateway_tls_client_key: Path | None = None
    # Seconds to let open responses finish on shutdown.
    shutdown_grace_s: int = Field(10, ge=0)

    @model_validator(mode="after")
    def _keys_are_digests(self) -> HttpSettings:
        _check_digests(self.api_keys_sha256, "http.api_keys_sha256")
        if (self.gateway_tls_client_cert is None) != (self.gateway_tls_client_key is None):
            raise ValueError("http.gateway_tls_client_cert and gateway_tls_client_key go together")
        return self


class SupervisorSettings(_Section):
    """What `cascade up` does when one of its processes dies after start-up (see services/cli/supervisor.py)."""

    # always: restart it (same ports, same JetStream directory); never: stop everything with an error.
    restart: Literal["always", "never"] = "always"
    # Wait before the n-th restart within the window: backoff_initial_s * 2**(n-1), at most backoff_max_s.
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    # More than max_restarts restarts of one process within restart_window_s: stop everything.
    max_restarts: int = Field(5, ge=0)
    restart_window_s: float = Field(300.0, gt=0)


class TelemetrySettings(_Section):
    # OTLP/gRPC collector endpoint, e.g. http://otel-collector:4317 (needs the `otlp` extra): spans and metrics.
    otlp_endpoint: str | None = None
    console: bool = False
    # A Prometheus endpoint (GET /metrics) in this process; None or 0: none. `cascade up` gives its
    # processes consecutive ports from this one (services/cli/preflight.py: metrics_ports).
    metrics_port: int | None = Field(None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # Seconds between two OTLP metric exports (with otlp_endpoint).
    metrics_export_interval_s: float = Field(15.0, gt=0)
    # text: one human-readable line per record; json: JSON lines with request_id and trace_id.
    log_format: Literal["text", "json"] = "text"


# Without a config: the two servers `vllm serve MODEL --port 8000` / `--port 8001` start on this host.
# Prices are list prices of hosted 7B and 70B models (USD per million tokens), for cost reports only.
DEFAULT_TIERS = {
    "small": TierSettings(
        backend="openai",
        openai=OpenAIBackendSettings(base_url="http://127.0.0.1:8000/v1", model="mistralai/Mistral-7B-Instruct-v0.2"),
        price=PriceSettings(input_per_mtok=0.20, output_per_mtok=0.20),
    ),
    "large": TierSettings(
        backend="openai",
        openai=OpenAIBackendSettings(
            base_url="http://127.0.0.1:8001/v1", model="meta-llama/Meta-Llama-3-70B-Instruct", timeout_s=300.0
        ),
        price=PriceSettings(input_per_mtok=0.90, output_per_mtok=0.90),
    ),
}


class CascadeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CASCADE_", env_nested_delimiter="__", extra="forbid", frozen=True)

    nats: NatsSettings = NatsSettings()
    gateway: GatewaySettings = GatewaySettings()
    router: RouterSettings = RouterSettings()
    tiers: dict[str, TierSettings] = Field(default_factory=lambda: dict(DEFAULT_TIERS))
    escalation: EscalationSettings = EscalationSettings()
    outcomes: OutcomeSettings = OutcomeSettings()
    exploration: ExplorationSettings = ExplorationSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    http: HttpSettings = HttpSettings()
    supervisor: SupervisorSettings = SupervisorSettings()

    @model_validator(mode="after")
    def _one_place_for_tokens(self) -> CascadeSettings:
        if self.gateway.tenants and self.http.api_keys_sha256:
            raise ValueError(
                "set gateway.tenants or http.api_keys_sha256, not both: with tenants, the HTTP front door "
                "passes each caller's bearer token on to the gateway, which checks it against gateway.tenants"
            )
        return self

    @model_validator(mode="after")
    def _tiers_known(self) -> CascadeSettings:
        # A tier's name is a NATS subject token and part of its micro service name (services/core/liveness.py).
        bad = [t for t in self.tiers if not re.fullmatch(r"[A-Za-z0-9_-]+", t)]
        if bad:
            raise ValueError(f"tier names take letters, digits, '-' and '_' only: {bad}")
        r = self.router
        named = {r.small_tier, r.large_tier, r.fallback_tier, self.escalation.second_opinion.tier}
        missing = {t for t in named if t is not None} - set(self.tiers)
        if missing:
            raise ValueError(f"router or escalation names tiers that are not configured: {sorted(missing)}")
        missing = set(r.tiers) - set(self.tiers)
        if missing:
            raise ValueError(f"router.tiers names tiers that are not configured: {sorted(missing)}")
        steps = self.escalation.step_min_confidence
        if steps is not None and (len(steps) != len(r.tiers) - 1 or any(not 0 <= x <= 1 for x in steps)):
            raise ValueError(
                f"escalation.step_min_confidence wants {len(r.tiers) - 1} numbers in [0, 1] "
                f"(one per tier below the top of router.tiers), got {steps}"
            )
        # A request the gateway accepts becomes a NATS message of about its size (a TierRequest).
        if self.gateway.max_request_bytes >= self.nats.max_payload_bytes:
            raise ValueError(
                f"gateway.max_request_bytes ({self.gateway.max_request_bytes}) must be below "
                f"nats.max_payload_bytes ({self.nats.max_payload_bytes}): an accepted request must fit on NATS"
            )
        return self

    @property
    def worker_tiers(self) -> tuple[str, ...]:
        """The tiers answered by worker processes (mode worker): those `cascade up` starts and waits for."""
        return tuple(name for name, tier in self.tiers.items() if tier.mode == "worker")

    @property
    def max_escalations(self) -> int:
        """Escalations a request may take: escalation.max_escalations, else one step per tier above the first."""
        configured = self.escalation.max_escalations
        return len(self.router.tiers) - 1 if configured is None else configured

    def step_thresholds(self) -> tuple[float, ...]:
        """The configured confidence threshold of each step up the tier list (before any calibration file)."""
        esc = self.escalation
        return esc.step_min_confidence or (esc.min_confidence,) * (len(self.router.tiers) - 1)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file (passed as init values), which beats defaults; no .env files.
        return (env_settings, init_settings)


def load_settings(path: str | Path | None = None) -> CascadeSettings:
    """Load and validate the configuration; raises ConfigError with every problem listed."""
    path = path or os.environ.get("CASCADE_CONFIG")
    data: dict[str, Any] = {}
    if path:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config {path} must be a mapping at the top level")
        data = _resolve_paths(data, path.resolve().parent)
    try:
        return CascadeSettings(**data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration{f' in {path}' if path else ''}:\n{exc}") from exc


_PATH_KEYS = {
    ("http", "gateway_tls_ca"),
    ("http", "gateway_tls_client_cert"),
    ("http", "gateway_tls_client_key"),
    ("router", "model"),
    ("router", "cache_dir"),
    ("nats", "embedded", "data_dir"),
    ("nats", "embedded", "tls_cert_file"),
    ("nats", "embedded", "tls_key_file"),
    ("nats", "auth", "password_file"),
    ("nats", "auth", "nkey_seed_file"),
    ("nats", "auth", "creds_file"),
    ("nats", "tls", "ca_file"),
    ("nats", "tls", "cert_file"),
    ("nats", "tls", "key_file"),
    ("gateway", "tls_cert"),
    ("gateway", "tls_key"),
    ("gateway", "tls_client_ca"),
    ("escalation", "confidence_model"),
    ("escalation", "calibration"),
    ("outcomes", "spool_dir"),
}


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    def fix(value: Any) -> Any:
        return str(base / value) if isinstance(value, str) and not Path(value).is_absolute() else value

    for keys in _PATH_KEYS:
        node = data
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None  # type: ignore[assignment]
        if isinstance(node, dict) and keys[-1] in node:
            node[keys[-1]] = fix(node[keys[-1]])
    for tier in (data.get("tiers") or {}).values():
        replay = tier.get("replay") if isinstance(tier, dict) else None
        if isinstance(replay, dict) and "data" in replay:
            replay["data"] = fix(replay["data"])
    return data
