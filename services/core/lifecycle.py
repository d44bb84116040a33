"""Process lifecycle: logging, and running a service until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable


def setup_logging(service: str) -> None:
    level = os.environ.get("CASCADE_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s",
    )


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


def run_service(name: str, serve: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``serve(stop)`` until a signal sets ``stop``; ``serve`` shuts down gracefully itself."""
    setup_logging(name)

    async def main() -> None:
        await serve(stop_event_on_signals())

    asyncio.run(main())
