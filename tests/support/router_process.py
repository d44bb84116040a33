"""A real `python -m services.router` process on a config of its own, having routed one request."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml

from cascade.v1 import events_pb2
from services.core import subjects
from services.core.nats import connect_nats
from tests.support.processes import wait_for_line
from tests.support.system import openai_tier


@asynccontextmanager
async def routed_router_process(
    tmp_path: Path, nats_url: str, *, telemetry: dict[str, Any], request_id: str
) -> AsyncIterator[Path]:
    """The router started with ``telemetry``, once it has answered RouteRequest ``request_id``; yields its log.
    On exit it gets SIGTERM and is waited for (its exporters flush at exit)."""
    tier = openai_tier("http://127.0.0.1:9/v1")
    config = {"nats": {"url": nats_url}, "tiers": {"small": tier, "large": tier}, "telemetry": telemetry}
    (tmp_path / "cascade.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
    log = tmp_path / "router.log"
    with log.open("wb") as out:
        cmd = [sys.executable, "-m", "services.router", "--config", str(tmp_path / "cascade.yaml")]
        process = subprocess.Popen(cmd, stdout=out, stderr=out, env=env)
    try:
        await wait_for_line(log, "router ready", process)
        nc = await connect_nats(nats_url, name=f"probe-{request_id}")
        try:
            request = events_pb2.RouteRequest(request_id=request_id, text="What is 2 + 2?")
            await nc.request(subjects.ROUTE, request.SerializeToString(), timeout=5)
        finally:
            await nc.close()
        yield log
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 30)
