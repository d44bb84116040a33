"""Client options shared by the sync and async clients, validated once at construction."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from opentelemetry import propagate

from services.core.errors import CascadeError, ConfigError, InvalidRequest
from services.sdk.types import PemSource, TlsConfig

ChannelOptions = Sequence[tuple[str, Any]]
Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What a client was created with, checked and normalised."""

    target: str
    credentials: grpc.ChannelCredentials | None
    timeout: float | None
    metadata: Metadata
    options: tuple[tuple[str, Any], ...]

    @classmethod
    def create(
        cls,
        *,
        target: str,
        tls: bool | TlsConfig,
        timeout: float | None,
        metadata: Mapping[str, str] | None,
        options: ChannelOptions,
        token: str | None = None,
    ) -> ClientConfig:
        if not target or not isinstance(target, str):
            raise ConfigError("`target` must be a non-empty 'host:port' string")
        check_timeout(timeout, ConfigError)
        options = tuple(options)
        if isinstance(tls, TlsConfig) and tls.server_name:
            options += (("grpc.ssl_target_name_override", tls.server_name),)
        return cls(target, _credentials(tls), timeout, merge_metadata(metadata, base=_bearer(token)), options)

    def call_args(self, timeout: float | None, metadata: Mapping[str, str] | None) -> dict[str, Any]:
        """Keyword arguments for one stub call: the deadline and the merged metadata.

        The metadata carries the caller's current trace context (``traceparent``), so the gateway's
        spans continue the caller's trace.
        """
        check_timeout(timeout, InvalidRequest)
        return {
            "timeout": self.timeout if timeout is None else timeout,
            "metadata": merge_metadata(metadata, base=self.metadata + _trace_context()),
        }


def _bearer(token: str | None) -> Metadata:
    if token is None:
        return ()
    if not isinstance(token, str) or not token.strip() or any(c.isspace() for c in token):
        raise ConfigError("`token` must be a non-empty string without whitespace (sent as `Bearer TOKEN`)")
    return (("authorization", f"Bearer {token}"),)


def _trace_context() -> Metadata:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)  # nothing without a current span
    return tuple(carrier.items())


def check_timeout(timeout: float | None, error: type[CascadeError]) -> None:
    if timeout is not None and not timeout > 0:
        raise error(f"a timeout must be a positive number of seconds, not {timeout!r}")


def merge_metadata(extra: Mapping[str, str] | None, *, base: Metadata = ()) -> Metadata:
    """``base`` overridden key by key by ``extra``; keys lower-cased as gRPC requires."""
    merged = dict(base)
    for key, value in (extra or {}).items():
        merged[key.lower()] = value
    return tuple(merged.items())


def _credentials(tls: bool | TlsConfig) -> grpc.ChannelCredentials | None:
    if tls is False:
        return None
    if tls is True:
        return grpc.ssl_channel_credentials()
    if not isinstance(tls, TlsConfig):
        raise ConfigError(f"`tls` must be a bool or a TlsConfig, not {type(tls).__name__}")
    if (tls.private_key is None) != (tls.certificate_chain is None):
        raise ConfigError("TLS `private_key` and `certificate_chain` must be given together")
    return grpc.ssl_channel_credentials(
        root_certificates=_read_pem(tls.root_certificates, "root_certificates"),
        private_key=_read_pem(tls.private_key, "private_key"),
        certificate_chain=_read_pem(tls.certificate_chain, "certificate_chain"),
    )


def _read_pem(source: PemSource | None, name: str) -> bytes | None:
    if source is None or isinstance(source, bytes):
        return source
    try:
        return Path(os.fspath(source)).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read TLS {name} from {source!s}: {exc}") from exc
