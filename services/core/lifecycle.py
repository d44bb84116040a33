"""Process lifecycle: logging, and running a service until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import uvloop

from services.core.logs import LogFormat, setup_logging

__all__ = ["run_event_loop", "run_service", "setup_logging", "stop_event_on_signals"]

T = TypeVar("T")


def stop_event_on_signals(*, again: Callable[[], None] | None = None) -> asyncio.Event:
    """An event set by the first SIGINT or SIGTERM.

    A second signal kills the process as usual, or, with ``again``, calls it instead (a supervisor
    must not die half-way through stopping its children: they would be left running).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    log = logging.getLogger(__name__)

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set() and again is not None:
            log.warning("received %s again, hurrying", sig.name)
            again()
            return
        log.info("received %s, shutting down", sig.name)
        stop.set()
        if again is None:
            for s in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(s)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    return stop


def run_service(
    name: str, serve: Callable[[asyncio.Event], Awaitable[None]], *, log_format: LogFormat = "text"
) -> None:
    """Run ``serve(stop)`` until a signal sets ``stop``; ``serve`` shuts down gracefully itself."""
    setup_logging(name, log_format=log_format)

    async def main() -> None:
        await serve(stop_event_on_signals())

    run_event_loop(main())


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """The one event loop every service process runs on: uvloop's (libuv, in C), not asyncio's own.

    py-spy on the services under bench/overhead.py put a large share of each process in asyncio's
    pure-Python loop (Handle._run, call_at/TimerHandle, _SelectorSocketTransport.write); uvloop runs
    the same code, scheduling and socket I/O in C. Always uvloop, no fallback: one loop to measure and
    to debug. (Tests run services in pytest's own loop, so the code must not depend on either.)
    """
    return uvloop.run(main)
