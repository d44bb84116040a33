"""`cascade outcomes`: print outcome and feedback events from JetStream as JSON lines."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys

from google.protobuf.json_format import MessageToDict

from services.core.errors import CascadeError
from services.core.nats import connect_from_settings
from services.core.settings import CascadeSettings, load_settings
from services.outcomes import read_events


def main(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
        url = nats_url(settings, args.nats)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_print(settings, url, args))
    except CascadeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`cascade outcomes | head -1`): that is an ordinary end, not an error.
        # Point stdout at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def nats_url(settings: CascadeSettings, override: str | None) -> str:
    """``--nats``, else the config's NATS URL, else the address of the embedded server `cascade up` starts."""
    return override or settings.nats.url or f"nats://{settings.nats.embedded.host}:{settings.nats.embedded.port}"


async def _print(settings: CascadeSettings, url: str, args: argparse.Namespace) -> None:
    stream = settings.outcomes.stream
    nc = await connect_from_settings(settings.nats, name="cascade-outcomes", url=url, wait_s=10)
    try:
        # aclosing: the consumer is unsubscribed before the connection drains, also when printing fails.
        events = read_events(nc.jetstream(), stream=stream, durable=args.durable, follow=args.follow)
        async with contextlib.aclosing(events):
            async for event in events:
                record = {"type": type(event).__name__, **MessageToDict(event, preserving_proto_field_name=True)}
                print(json.dumps(record), flush=True)
    finally:
        await nc.drain()
