"""The embedded nats-server and the connection helper."""

import pytest

from services.core.errors import Unavailable
from services.core.nats import NatsServer, connect_nats, free_port


async def test_embedded_server_runs_jetstream_and_stops(tmp_path):
    async with NatsServer(data_dir=tmp_path / "js") as server:
        nc = await connect_nats(server.url, name="t")
        info = await nc.jetstream().account_info()
        assert info.limits is not None  # JetStream is enabled
        await nc.close()
    with pytest.raises(Unavailable):
        await connect_nats(server.url, name="t", wait_s=0.5)


async def test_connecting_to_nothing_fails_within_the_wait():
    # The first connection is bounded: Unavailable, naming the wait, instead of reconnecting forever.
    with pytest.raises(Unavailable, match="cannot connect to NATS at .* within 1s"):
        await connect_nats(f"nats://127.0.0.1:{free_port()}", name="t", wait_s=1.0)
