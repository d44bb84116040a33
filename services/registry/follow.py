"""Following a kind's active version: load the new model in the background, check it, swap it in.

A follower reacts to ModelEvents on ``cascade.events.model`` at once and also polls ``latest``
every ``interval_s`` (core NATS may drop an event; the poll catches up). Loading and the probe
run in a worker thread while the old model keeps serving; the swap is one assignment on the
event loop, so a request sees the old model or the new one, never neither. A version that
fails to download, load or score its probe is refused once (logged) and the old model stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from cascade.v1 import events_pb2
from services.core import subjects
from services.core.errors import CascadeError, ModelError, Unavailable
from services.core.payloads import decode
from services.registry import store
from services.registry.kinds import kind_of

log = logging.getLogger(__name__)


class Follower:
    def __init__(
        self,
        *,
        nc: NatsClient,
        kind: str,
        bucket: str,
        cache_dir: Path,
        interval_s: float,
        serving: Callable[[], str],
        swap: Callable[[Any], None],
    ) -> None:
        self._nc, self._kind, self._bucket, self._cache = nc, kind_of(kind), bucket, cache_dir
        self._interval_s, self._serving, self._swap = interval_s, serving, swap
        self._lock = asyncio.Lock()  # one check at a time: an event and a poll must not load twice
        self._seen: str | None = None  # the last version tried, good or bad
        self._poller: asyncio.Task[None] | None = None
        self._sub: Subscription | None = None
        self._wake = asyncio.Event()

    async def load(self, version: str) -> Any:
        """Fetch and load ``version`` (``latest``: what it points at) without serving it; raises ModelError."""
        path = await store.fetch(
            self._nc.jetstream(), bucket=self._bucket, kind=self._kind.name, version=version, cache_dir=self._cache
        )
        model = await asyncio.to_thread(self._kind.load, path)
        self._seen = path.name  # the registry's name for it (fetch keeps one folder per version)
        return model

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(subjects.MODEL_EVENTS, cb=self._on_event)
        self._poller = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):  # a closed connection has no subscription left to drop
                await self._sub.unsubscribe()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    async def _on_event(self, msg: Msg) -> None:
        self.on_event_payload(msg.data)

    def on_event_payload(self, data: bytes) -> None:
        """A ModelEvent for this kind wakes the check at once; an unreadable one is logged and ignored."""
        try:
            event = decode(events_pb2.ModelEvent, data)
        except CascadeError as exc:
            log.warning("ModelEvent ignored: %s", exc.message)
            return
        if event.kind == self._kind.name and event.action != "refused":
            self._wake.set()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s if self._interval_s > 0 else None)
            self._wake.clear()
            try:
                await self.check()
            except (Unavailable, ModelError) as exc:  # NATS hiccup, or a bad `latest`: try again next time
                log.warning(
                    "cannot check for a new %s model, still serving %s: %s", self._kind.name, self._serving(), exc
                )
            except Exception:  # the loop must outlive any one bad check
                log.exception("%s model check failed, still serving %s", self._kind.name, self._serving())

    async def check(self) -> bool:
        """Switch to the active version if it is new and good; True when a new model now serves."""
        async with self._lock:
            js = self._nc.jetstream()
            version = await store.current_version(js, bucket=self._bucket, kind=self._kind.name)
            if version is None or version in (self._seen, self._serving()):
                return False
            self._seen = version  # refused once, said once: not retried at every check
            try:
                model = await self.load(version)
            except ModelError as exc:
                log.error(
                    "refused published %s model %s, still serving %s: %s",
                    self._kind.name,
                    version,
                    self._serving(),
                    exc,
                )
                return False
            old = self._serving()
            self._swap(model)
            log.info("%s model %s replaced by %s (published %s)", self._kind.name, old, model.version, version)
            return True
