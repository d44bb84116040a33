"""Checks `cascade up` makes before it starts anything: nothing of a running system is touched.

A second `cascade up` on the same data directory or ports must fail at once with a message that
names the conflict, instead of starting a nats-server and services that then die one by one (or,
worse, share a port: gRPC servers set SO_REUSEPORT, so a second gateway could bind beside the first).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from services.core.errors import ConfigError, InUse
from services.core.settings import CascadeSettings

LOCK_NAME = "cascade-up.lock"


@contextlib.contextmanager
def instance_lock(data_dir: Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``data_dir`` (the embedded NATS data) while the block runs.

    fcntl.flock, not a pid file: the kernel drops the lock when the process dies, however it dies,
    so a crash never leaves a stale lock behind. The file holds the owner's pid, for the message.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # no O_TRUNC: the owner's pid stays readable
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise InUse(
                f"another `cascade up` (pid {owner}) is running on the data directory {data_dir}; "
                "stop it first, or give this one its own nats.embedded.data_dir and ports"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


def listen_addresses(settings: CascadeSettings) -> list[tuple[str, str, int]]:
    """(what, host, port) of every socket `cascade up` will listen on; port 0 (any free port) is left out."""
    out = []
    if settings.nats.url is None:
        e = settings.nats.embedded
        out.append(("the embedded nats-server (nats.embedded)", e.host, e.port))
    out.append(("the gateway (gateway)", settings.gateway.host, settings.gateway.port))
    if settings.http.enabled:
        out.append(("the HTTP front door (http)", settings.http.host, settings.http.port))
    host = settings.telemetry.metrics_host
    out += [(f"the metrics of {name} (telemetry.metrics_port)", host, port) for name, port in metrics_ports(settings)]
    return [a for a in out if a[2] != 0]


def metrics_ports(settings: CascadeSettings) -> list[tuple[str, int]]:
    """(process, port) of each Prometheus endpoint `cascade up` opens: consecutive ports from
    telemetry.metrics_port, in this order: gateway, http (when enabled), router (router.mode service), then one
    per worker tier as configured.
    """
    first = settings.telemetry.metrics_port
    if not first:
        return []
    router = ["router"] if settings.router.mode == "service" else []  # embedded: the gateway routes
    names = [
        "gateway",
        *(["http"] if settings.http.enabled else []),
        *router,
        *(f"tier-{t}" for t in settings.worker_tiers),
    ]
    return [(name, first + i) for i, name in enumerate(names)]


def check_ports(addresses: list[tuple[str, str, int]]) -> None:
    """Raise InUse for a port another process listens on, or that two of our servers would share."""
    seen: dict[int, str] = {}
    for what, host, port in addresses:
        if port in seen:
            raise ConfigError(f"{what} and {seen[port]} are both configured on port {port}")
        seen[port] = what
        _try_bind(what, host, port)


def _try_bind(what: str, host: str, port: int) -> None:
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"{what}: cannot resolve host {host!r}: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        # As the servers do: a port whose last connections are in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InUse(
                    f"port {port} on {host} for {what} is in use by another process "
                    "(another `cascade up`?); stop it, or configure another port"
                ) from None
            raise ConfigError(f"{what} cannot listen on {host}:{port}: {exc.strerror}") from None
