"""Service processes run on one event loop implementation, chosen in one place."""

from __future__ import annotations

import asyncio

import uvloop

from services.core.lifecycle import run_event_loop


def test_services_run_on_uvloop_and_get_the_coroutines_result() -> None:
    async def main() -> type:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop())

    assert run_event_loop(main()) is uvloop.Loop
