"""Changes to the models in service: publish, refuse, promote, roll back. Each one is kept in the
bucket's history and announced as a ModelEvent on ``cascade.events.model``."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client as NatsClient

from cascade.v1 import events_pb2
from services.core import subjects
from services.core.errors import ModelError
from services.registry import store
from services.registry.kinds import kind_of

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1
# Actions that make a version the active one (rolled_back makes the one before it active again).
_ACTIVATING = ("published", "promoted")


@dataclass(frozen=True, kw_only=True)
class Change:
    """One entry of ``<kind>/history.json``; also the publication record beside a version."""

    time: str
    kind: str
    action: str  # published, promoted, rolled_back, refused (ModelEvent.action)
    version: str
    previous_version: str
    forced: bool
    reason: str
    by: str
    # The gate's comparison when one was made: metric, candidate, serving, n.
    gate: dict[str, Any] | None = None

    def event(self) -> events_pb2.ModelEvent:
        time = Timestamp()
        time.FromDatetime(dt.datetime.fromisoformat(self.time))
        return events_pb2.ModelEvent(
            schema_version=SCHEMA_VERSION,
            time=time,
            kind=self.kind,
            action=self.action,
            version=self.version,
            previous_version=self.previous_version,
            forced=self.forced,
            reason=f"{self.reason} (by {self.by})" if self.by else self.reason,
        )


def active_stack(records: list[dict[str, Any]]) -> list[str]:
    """The versions made active in turn, the serving one last: what a rollback walks back through."""
    stack: list[str] = []
    for r in records:
        if r.get("action") in _ACTIVATING and (not stack or stack[-1] != r["version"]):
            stack.append(r["version"])
        elif r.get("action") == "rolled_back":
            stack = stack[:-1]
            if not stack or stack[-1] != r["version"]:
                stack.append(r["version"])
    return stack


class ModelRegistry:
    """The bucket's models as an operator changes them; ``nc`` announces every change."""

    def __init__(self, *, nc: NatsClient, bucket: str) -> None:
        self._nc, self._js, self.bucket = nc, nc.jetstream(), bucket

    async def serving(self, kind: str) -> str | None:
        await store.open_bucket(self._js, bucket=self.bucket, create=True)
        return await store.current_version(self._js, bucket=self.bucket, kind=kind)

    async def fetch(self, *, kind: str, version: str, cache_dir: Path) -> Path:
        return await store.fetch(self._js, bucket=self.bucket, kind=kind, version=version, cache_dir=cache_dir)

    async def publish(
        self, *, kind: str, model_dir: Path, version: str, by: str, reason: str, forced: bool, gate: dict | None
    ) -> Change:
        """Store the version with its record, then point ``latest`` at it (last: readers see all or none)."""
        previous = await self.serving(kind)
        change = self._change(kind, "published", version, previous, forced=forced, reason=reason, by=by, gate=gate)
        await store.put_version(self._js, bucket=self.bucket, kind=kind, model_dir=model_dir, record=asdict(change))
        await store.set_latest(self._js, bucket=self.bucket, kind=kind, version=version)
        return await self._record(change)

    async def refuse(self, *, kind: str, version: str, by: str, reason: str, gate: dict | None) -> Change:
        """A candidate the gate turned away: nothing is stored but the history entry and the event."""
        previous = await self.serving(kind)
        change = self._change(kind, "refused", version, previous, forced=False, reason=reason, by=by, gate=gate)
        return await self._record(change)

    async def promote(self, *, kind: str, version: str, by: str, reason: str) -> Change:
        previous = await self.serving(kind)
        if previous == version:
            raise ModelError(f"{kind} {version} is already the active version")
        await store.set_latest(self._js, bucket=self.bucket, kind=kind, version=version)
        return await self._record(self._change(kind, "promoted", version, previous, reason=reason, by=by))

    async def rollback(self, *, kind: str, by: str, reason: str) -> Change:
        """Make the version that was active before the serving one active again."""
        serving = await self.serving(kind)
        stack = active_stack(await store.history(self._js, bucket=self.bucket, kind=kind))
        if stack and stack[-1] == serving:
            stack.pop()
        if not stack:
            raise ModelError(f"no earlier active {kind} version in the history to roll back to (serving {serving})")
        await store.set_latest(self._js, bucket=self.bucket, kind=kind, version=stack[-1])
        return await self._record(self._change(kind, "rolled_back", stack[-1], serving, reason=reason, by=by))

    def _change(
        self,
        kind: str,
        action: str,
        version: str,
        previous: str | None,
        *,
        forced: bool = False,
        reason: str,
        by: str,
        gate: dict | None = None,
    ) -> Change:
        kind_of(kind)
        return Change(
            time=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            kind=kind,
            action=action,
            version=store.check_version(version),
            previous_version=previous or "",
            forced=forced,
            reason=reason,
            by=by,
            gate=gate,
        )

    async def _record(self, change: Change) -> Change:
        await store.append_history(self._js, bucket=self.bucket, kind=change.kind, record=asdict(change))
        # Core NATS: followers also poll `latest`, so a missed event delays a switch, never loses it.
        await self._nc.publish(subjects.MODEL_EVENTS, change.event().SerializeToString())
        await self._nc.flush()
        log.info("%s %s %s (was %s): %s", change.kind, change.action, change.version, change.previous_version, change)
        return change
