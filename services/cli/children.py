"""The processes `cascade up` runs, behind one small interface the supervisor restarts and stops.

A service process (`python -m services.<name>`) has its output relayed line by line to this
process's stderr, keeping its last line: when it dies, the error names what it said last. The
embedded nats-server logs to its own file; its death is reported with that file's error lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
import threading
from typing import IO, Protocol

from services.core.nats import NatsServer

log = logging.getLogger("cascade.up")


class Child(Protocol):
    name: str

    @property
    def returncode(self) -> int | None: ...  # None while it runs

    @property
    def pid(self) -> int | None: ...

    async def start(self) -> None: ...

    def exit_reason(self) -> str: ...

    async def stop(self, hurry: asyncio.Event, grace_s: float) -> None: ...


def exit_status(code: int) -> str:
    """'exited with code 1', or 'was killed by SIGKILL' (Popen's negative codes)."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


class ServiceProcess:
    """One `python -m <module>` process, in its own process group (Ctrl-C reaches only `cascade up`)."""

    def __init__(self, name: str, module_args: list[str], env: dict[str, str]) -> None:
        self.name, self._args, self._env = name, module_args, env
        self._process: subprocess.Popen[bytes] | None = None
        self._last_line = ""

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def start(self) -> None:
        self._last_line = ""
        self._process = subprocess.Popen(
            [sys.executable, "-m", *self._args],
            env=self._env,
            process_group=0,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self._process.stdout is not None
        # A thread, not the event loop: relaying must go on while the loop waits on something else.
        threading.Thread(target=self._relay, args=(self._process.stdout,), daemon=True).start()

    def _relay(self, out: IO[bytes]) -> None:
        with out:
            for line in out:
                # Keep reading even when our stderr is gone (`cascade up | head`): a child whose
                # output pipe fills up blocks in its next log call.
                with contextlib.suppress(OSError, ValueError):
                    sys.stderr.buffer.write(line)
                    sys.stderr.buffer.flush()
                if line.strip():
                    self._last_line = line.decode(errors="replace").strip()

    def exit_reason(self) -> str:
        code = self.returncode
        status = "is running" if code is None else exit_status(code)
        return f"{status}; its last log line: {self._last_line or '(none)'}"

    async def stop(self, hurry: asyncio.Event, grace_s: float) -> None:
        """SIGTERM, then SIGKILL after ``grace_s`` or as soon as ``hurry`` is set (a second Ctrl-C)."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while process.poll() is None:
            if hurry.is_set() or loop.time() > deadline:
                if not hurry.is_set():
                    log.warning("%s did not stop within %gs; killing it", self.name, grace_s)
                process.kill()
                await asyncio.to_thread(process.wait)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hurry.wait(), 0.1)


class EmbeddedNats:
    """The nats-server `cascade up` starts; restarted on the same port and JetStream directory."""

    name = "nats-server"

    def __init__(self, server: NatsServer) -> None:
        self.server = server

    @property
    def returncode(self) -> int | None:
        return self.server.returncode

    @property
    def pid(self) -> int | None:
        return self.server.pid

    async def start(self) -> None:
        await self.server.start()

    def exit_reason(self) -> str:
        code = self.returncode
        status = "is running" if code is None else exit_status(code)
        return f"{status}; its last log line: {self.server.last_errors(tail=1)} (its log: {self.server.log_path})"

    async def stop(self, hurry: asyncio.Event, grace_s: float) -> None:
        await self.server.stop()
