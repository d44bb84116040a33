"""A real nats-server with JetStream per test, on a free port, data in a temp dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.core.nats import NatsServer


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    async with NatsServer(data_dir=tmp_path / "jetstream") as server:
        yield server
