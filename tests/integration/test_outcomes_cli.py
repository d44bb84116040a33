"""`cascade outcomes` as an operator uses it: piped into other tools."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from cascade.v1 import events_pb2
from services.core import subjects
from services.core.nats import connect_nats
from services.core.settings import OutcomeSettings
from services.outcomes.stream import ensure_stream


async def test_a_reader_that_stops_early_is_not_an_error(nats_server):
    nc = await connect_nats(nats_server.url, name="t")
    js = nc.jetstream()
    await ensure_stream(js, OutcomeSettings())
    for i in range(50):
        await js.publish(subjects.OUTCOMES, events_pb2.OutcomeEvent(request_id=f"r{i}").SerializeToString())
    await nc.drain()
    # `cascade outcomes | head -1`: the pipe closes after one line while events keep coming.
    cascade = [sys.executable, "-m", "services.cli.main", "outcomes", "--nats", nats_server.url]
    proc = await asyncio.create_subprocess_shell(
        " ".join(cascade) + " | head -1", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert out.decode().count("\n") == 1 and '"r0"' in out.decode()
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
