"""A real nats-server with JetStream per test, on a free port, data in a temp dir."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from services.core.nats import NatsServer


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    async with NatsServer(data_dir=tmp_path / "jetstream") as server:
        yield server


def publish_from_outside(url: str, messages: list[tuple[str, str, bytes]]) -> None:
    """Publish (subject, reply, payload) messages from another connection, blocking the caller's event loop.

    A test's services share its event loop; while it is blocked here they read nothing, so what the
    server delivers to them meanwhile waits in their sockets: delivered, and not yet handled.
    """

    async def publish() -> None:
        nc = await nats.connect(url, name="outside")
        for subject, reply, payload in messages:
            await nc.publish(subject, payload, reply=reply)
        await nc.flush()  # the server has routed every message once this returns
        await nc.close()

    thread = threading.Thread(target=asyncio.run, args=(publish(),))
    thread.start()
    thread.join()
