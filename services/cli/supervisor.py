"""Watching `cascade up`'s processes once the system is up: restart the dead, or stop everything.

With ``supervisor.restart: always`` a process that dies is started again after a backoff that
doubles with each restart of it within ``restart_window_s`` (``backoff_initial_s`` up to
``backoff_max_s``); one that needs more than ``max_restarts`` restarts in that window is broken,
not unlucky, and everything stops with an error naming it. With ``never`` the first death stops
everything. Every death and restart is logged with the process's exit status and last log line.

Services ride out a restarted nats-server on their own: nats-py reconnects forever and
re-subscribes (services/core/nats.py), and the server comes back on its port and JetStream data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from services.cli.children import Child
from services.core.errors import CascadeError, Unavailable
from services.core.settings import SupervisorSettings

log = logging.getLogger("cascade.up")
POLL_S = 0.2


class ChildFailed(Unavailable):
    """A process died and is not (or no longer) restarted."""


class Supervisor:
    def __init__(self, settings: SupervisorSettings, stop: asyncio.Event) -> None:
        self._settings, self._stop = settings, stop

    async def run(self, children: list[Child]) -> None:
        """Watch ``children`` until ``stop`` is set; raises ChildFailed when one is given up on."""
        keepers = [asyncio.create_task(self._keep(child), name=f"keep-{child.name}") for child in children]
        stopped = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait([*keepers, stopped], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopped:
                    task.result()  # a keeper only ends by raising
        finally:
            for task in [*keepers, stopped]:
                task.cancel()
            await asyncio.gather(*keepers, stopped, return_exceptions=True)

    async def _keep(self, child: Child) -> None:
        restarts: deque[float] = deque()
        while True:
            await self._died(child)
            reason = child.exit_reason()
            while True:  # until a restart succeeds
                delay = self._delay(child, reason, restarts)  # raises (and up logs it) when none is allowed
                log.error("%s %s", child.name, reason)
                log.warning(
                    "restarting %s in %gs (restart %d within %.0fs)",
                    child.name,
                    delay,
                    len(restarts),
                    self._settings.restart_window_s,
                )
                await asyncio.sleep(delay)
                try:
                    await child.start()
                    break
                except CascadeError as exc:
                    reason = f"could not be restarted: {exc.message}"
            log.warning("%s restarted (pid %s)", child.name, child.pid)

    @staticmethod
    async def _died(child: Child) -> None:
        while child.returncode is None:
            await asyncio.sleep(POLL_S)

    def _delay(self, child: Child, reason: str, restarts: deque[float]) -> float:
        """The wait before the next restart (recording it), or ChildFailed when none is allowed."""
        s = self._settings
        if s.restart == "never":
            raise ChildFailed(f"{child.name} {reason}; stopping everything (supervisor.restart: never)")
        now = asyncio.get_running_loop().time()
        while restarts and now - restarts[0] > s.restart_window_s:
            restarts.popleft()
        if len(restarts) >= s.max_restarts:
            raise ChildFailed(
                f"{child.name} died after {len(restarts)} restarts within {s.restart_window_s:.0f}s "
                f"(supervisor.max_restarts); last: {reason}; stopping everything"
            )
        delay = min(s.backoff_initial_s * 2 ** len(restarts), s.backoff_max_s)
        restarts.append(now + delay)
        return delay


async def stop_all(children: list[Child], hurry: asyncio.Event, grace_s: float = 30.0) -> None:
    """Stop in reverse start order: the HTTP front door before the gateway it uses, the gateway
    before the tiers, NATS last. Once ``hurry`` is set (a second signal), the rest is killed."""
    for child in reversed(children):
        with contextlib.suppress(ProcessLookupError):
            await child.stop(hurry, grace_s)
