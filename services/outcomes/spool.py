"""A bounded, crash-safe local spool for outcome events: one file per event, in one directory.

Every event is written here unless JetStream acknowledged it first, and its file is deleted once
JetStream has acknowledged it. What is in the spool when the gateway dies (SIGKILL, OOM, a crash)
is published by the next gateway that opens the same directory.

Why one file per event: an acknowledged event is one ``unlink``, and there is nothing to
compact or recover (a segment file with an offset file would need both). Each file is written
under a temporary name (``O_EXCL``) and renamed, so a process killed between the create and the
write leaves no empty event file (bench.chaos found one in three gateway SIGKILLs under load), and
carries a CRC-32 over its contents, so a file a machine crash left empty or short fails its check
and is set aside (``*.bad``) instead of blocking the queue or being published half. The
standard library is enough; queue libraries (persist-queue, diskcache) bring SQLite or their
own segment formats and synchronous locking for a job this small.

Disk work never runs on the event loop: :meth:`Spool.submit` only queues the event in memory,
and one worker thread writes, deletes and fsyncs the files, a batch at a time (a busy disk took
the file create alone from 20 us to over 1 ms in bench/spool.py). So the guarantee starts once
the event is in the spool: with ``write_delay_s`` 0, well under a millisecond after the request
finished; with a delay (``outcomes.spool_write_delay_ms``), that long after, unless JetStream
acknowledged it first, in which case it is never written at all. An event still queued in memory
when the process is SIGKILLed is lost. Why a delay: JetStream normally acknowledges within a few
milliseconds, so without one nearly every event was written and deleted again for nothing (the
spool's thread hand-offs, file creates, unlinks and fsyncs were ~20-25% of the gateway's py-spy
samples under bench/overhead). Held events wait out the delay too: a request that ends within it
never writes its provisional outcome. Publishing does not wait for the file (see :meth:`Spool.peek`),
except an event submitted ``after`` a held one (a request's seen id behind its provisional outcome).

Durability (``fsync``): a written file is in the kernel's page cache, which survives the process
being killed. Surviving a machine crash needs it on the disk: ``always`` fsyncs each written file
(and the directory) as soon as the previous fsync is done, ``batch`` every ``fsync_interval_s``,
``never`` leaves it to the kernel. The fsyncs run in a second thread, so a slow disk delays
durability, not the writes; a written event is published without waiting for its fsync, and an
event acknowledged before its turn is never fsynced at all.

Bound: at ``max_bytes`` a new event is refused (counted in :attr:`Spool.dropped`, logged as an
error); events already in the spool are never dropped, so the loss is the newest events of a
long outage, not a gap in the middle of it.

Held events (:meth:`Spool.hold`): the gateway holds a provisional outcome for each request as it starts
("the gateway stopped before the request finished") and releases it once the real outcome is submitted.
A held event is never published by the process that holds it, nor an event submitted ``after`` it
while it is not yet on disk; one left by a process that died (a
SIGKILLed gateway's requests in flight) is published by the next, after that process's other events, so
a real outcome spooled before the death wins by message id. Held files are not fsynced: they cover the
gateway process dying, not the machine.

One spool directory belongs to one gateway: :meth:`Spool.open` takes an exclusive ``flock`` on
``<dir>/.lock`` (released by the kernel when the process dies, so a SIGKILL leaves no stale lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import itertools
import logging
import os
import struct
import time
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from services.core.errors import ConfigError

log = logging.getLogger(__name__)

FsyncPolicy = Literal["always", "batch", "never"]
SUFFIX = ".evt"
HELD = ".held"
TMP = ".tmp"
MAGIC = b"CSP1"
# magic, crc32 of the rest, subject length, message id length; then subject, message id, payload.
_HEADER = struct.Struct(">4sIHH")


@dataclass(frozen=True, slots=True)
class SpooledEvent:
    path: str
    subject: str
    msg_id: str
    payload: bytes


def encode(subject: str, msg_id: str, payload: bytes) -> bytes:
    s, m = subject.encode(), msg_id.encode()
    body = s + m + payload
    return _HEADER.pack(MAGIC, zlib.crc32(struct.pack(">HH", len(s), len(m)) + body), len(s), len(m)) + body


def decode(path: str, data: bytes) -> SpooledEvent:
    """The event in a spool file; ValueError if the file is not a whole, intact one."""
    if len(data) < _HEADER.size:
        raise ValueError("shorter than a header")
    magic, crc, ns, nm = _HEADER.unpack_from(data)
    body = data[_HEADER.size :]
    if magic != MAGIC or zlib.crc32(struct.pack(">HH", ns, nm) + body) != crc or len(body) < ns + nm:
        raise ValueError("bad magic or checksum")
    return SpooledEvent(path, body[:ns].decode(), body[ns : ns + nm].decode(), body[ns + nm :])


class Spool:
    """The spool's state lives on the event loop; its file I/O runs in one worker thread."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        fsync: FsyncPolicy = "batch",
        fsync_interval_s: float = 1.0,
        write_delay_s: float = 0.0,
    ) -> None:
        """``write_delay_s``: how long a submitted event waits in memory before it is written, so that
        the events JetStream acknowledges within it never touch the disk (0: written at once)."""
        self.directory = directory
        self._write_delay_s = write_delay_s
        self._dir = str(directory)  # str paths: a pathlib join and hash cost more than the write itself
        self._max_bytes = max_bytes
        self._fsync = fsync
        self._fsync_interval_s = fsync_interval_s
        self._lock_fd: int | None = None
        self._queue: deque[str] = deque()  # files written and not yet acknowledged, oldest first
        self._sizes: dict[str, int] = {}  # every event counted against max_bytes, written or not
        self._held: dict[str, int] = {}  # held events (hold/release), also counted against max_bytes
        self._bytes = 0
        self._to_write: dict[str, bytes] = {}  # submitted, not yet handed to the worker thread
        self._due: dict[str, float] = {}  # when each event in _to_write is written (write_delay_s)
        self._after: dict[str, str] = {}  # event -> the held event it is not published before (submit's after)
        self._in_write: dict[str, bytes] = {}  # being written by the worker thread now
        self._acked_in_write: set[str] = set()
        self._to_delete: list[str] = []
        self._unsynced: list[str] = []
        # Callers waiting until an event is safe (written, or acknowledged before that): see settled().
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._work = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        # Set when there are new events to publish: the publisher waits on it.
        self.ready = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outcome-spool")
        # fsyncs in a thread of their own: a slow disk then holds back durability, not the writes.
        self._sync_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outcome-spool-fsync")
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # File names sort in write order: a start-time prefix, then a counter within this process.
        self._prefix = f"{time.time_ns():020d}-{os.getpid()}"
        self._counter = itertools.count()
        self.dropped = 0

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> int:
        """Lock the directory and queue the events a previous process left; returns their number."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot use outcomes.spool_dir {self.directory}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(
                f"outcomes.spool_dir {self.directory} is in use by another gateway (pid {holder}); "
                "give each gateway its own spool directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd
        for tmp in self.directory.glob(f"*{TMP}"):  # written whole but not renamed (or empty: set aside at peek)
            os.replace(tmp, str(tmp).removesuffix(TMP))
        # An earlier run's held events after its others: its real outcomes go first, and win by message id.
        leftovers = [sorted(str(p) for p in self.directory.glob(f"*{suffix}")) for suffix in (SUFFIX, HELD)]
        for path in itertools.chain(*leftovers):
            size = os.stat(path).st_size
            self._queue.append(path)
            self._sizes[path] = size
            self._bytes += size
        if self._queue:
            log.warning("outcome spool %s holds %d events from an earlier run", self.directory, len(self._queue))
            self.ready.set()
        self._tasks.append(asyncio.create_task(self._io_loop()))
        if self._fsync != "never":
            self._tasks.append(asyncio.create_task(self._sync_loop()))
        return len(self._queue)

    async def flush(self) -> None:
        """Wait until every submitted event is written and every acknowledged one deleted."""
        await self._idle.wait()

    async def close(self) -> None:
        """Write what is queued, put the spool on the disk, then release the directory."""
        if self._tasks:
            self._write_delay_s = 0.0  # what waits out a delay is written now
            self._work.set()
            await self.flush()
            for task in self._tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*self._tasks)
            self._tasks = []
            for path in list(self._waiting):
                self._settle(path)
            if self._fsync != "never":
                await asyncio.get_running_loop().run_in_executor(self._sync_executor, self._sync, self._take_unsynced())
        self._executor.shutdown(wait=True)
        self._sync_executor.shutdown(wait=True)
        if self._queue:
            log.warning(
                "%d outcome events stay in the spool %s; the next gateway on it publishes them",
                len(self._queue),
                self.directory,
            )
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------ events

    def submit(self, subject: str, msg_id: str, payload: bytes, *, after: str | None = None) -> str | None:
        """Queue one event for the spool (no disk work here); its handle (for :meth:`settled`), None when
        the spool is full. ``after``: a held event's handle; this one is not published while that one is
        held and not yet on disk (a request's seen id behind its provisional outcome)."""
        data = encode(subject, msg_id, payload)
        if self._bytes + len(data) > self._max_bytes:
            self._drop(msg_id, f"the spool is full ({self._bytes} bytes, limit {self._max_bytes})")
            return None
        path = f"{self._dir}/{self._prefix}-{next(self._counter):012d}{SUFFIX}"
        self._sizes[path] = len(data)
        self._bytes += len(data)
        self._queue_write(path, data)
        if after is not None:
            self._after[path] = after
        self.ready.set()
        return path

    def _queue_write(self, path: str, data: bytes) -> None:
        first = not self._to_write
        self._to_write[path] = data
        self._idle.clear()
        if self._write_delay_s > 0:
            self._due[path] = asyncio.get_running_loop().time() + self._write_delay_s
            if not first:  # the worker loop already sleeps until an earlier event is due: no wake-up
                return
        self._work.set()

    async def settled(self, path: str) -> None:
        """Wait until the event survives this process: its file written, or JetStream's acknowledgement
        before that (or it was dropped, which is logged). The gateway answers a request only then, so a
        SIGKILL never loses the outcome of a request its caller saw answered (bench.chaos found some)."""
        if not self._tasks or (path not in self._to_write and path not in self._in_write):
            return  # settled already, or no worker to write it (not started, or closed)
        future = self._waiting.get(path)
        if future is None:
            future = self._waiting[path] = asyncio.get_running_loop().create_future()
        await asyncio.shield(future)  # a cancelled waiter must not cancel the others' future

    def _settle(self, path: str) -> None:
        future = self._waiting.pop(path, None)
        if future is not None and not future.done():
            future.set_result(None)

    def hold(self, subject: str, msg_id: str, payload: bytes) -> str | None:
        """Keep an event on disk, unpublished, until :meth:`release`; the next process publishes it if this
        one dies first. Returns its handle; None when the spool is full."""
        data = encode(subject, msg_id, payload)
        if self._bytes + len(data) > self._max_bytes:
            self._drop(msg_id, f"the spool is full ({self._bytes} bytes, limit {self._max_bytes})")
            return None
        path = f"{self._dir}/{self._prefix}-{next(self._counter):012d}{HELD}"
        self._held[path] = len(data)
        self._bytes += len(data)
        self._queue_write(path, data)
        return path

    def release(self, path: str) -> None:
        """A held event is no longer needed (the real one was submitted before): its file goes."""
        self._bytes -= self._held.pop(path, 0)
        self.ready.set()  # what waited for it (its request's seen id) may be published now
        if self._to_write.pop(path, None) is not None:  # never written
            self._due.pop(path, None)
            return
        if path in self._in_write:  # the worker thread deletes it once written
            self._acked_in_write.add(path)
            return
        self._to_delete.append(path)
        self._idle.clear()
        self._work.set()

    def peek(self, limit: int = 1) -> list[SpooledEvent]:
        """Up to ``limit`` of the oldest events not yet acknowledged, written or still in memory.

        Events still in memory are published without waiting for their file: one acknowledged
        before the worker thread reached it is never written at all, so a slow disk only has to
        keep up with what JetStream does not acknowledge. Damaged files are set aside.
        """
        events: list[SpooledEvent] = []
        i = 0
        while i < len(self._queue) and len(events) < limit:
            path = self._queue[i]
            try:
                with open(path, "rb") as f:
                    events.append(decode(path, f.read()))
                i += 1
            except (OSError, ValueError) as exc:
                log.error("setting aside a damaged outcome spool file %s: %s", path, exc)
                self._forget(path)
                with contextlib.suppress(OSError):
                    os.replace(path, path.removesuffix(SUFFIX) + ".bad")
        for pending in (self._in_write, self._to_write):
            for path, data in pending.items():
                if len(events) >= limit:
                    return events
                if path in self._held or path in self._acked_in_write or self._waits_for_held(path):
                    continue
                events.append(decode(path, data))
        return events

    def _waits_for_held(self, path: str) -> bool:
        """A request's seen id must not be stored while its provisional outcome could still be lost (bench.chaos
        found seen ids without outcomes after a SIGKILL): it waits until that one is on disk or released."""
        held = self._after.get(path)
        if held is None:
            return False
        if held in self._held and (held in self._to_write or held in self._in_write):
            return True
        del self._after[path]
        return False

    def ack(self, path: str) -> None:
        """The event is stored in JetStream: its file goes (a crash before that republishes it, de-duplicated)."""
        self._settle(path)
        self._after.pop(path, None)
        if path in self._to_write:  # never written: nothing to delete
            del self._to_write[path]
            self._due.pop(path, None)
            self._bytes -= self._sizes.pop(path, 0)
            return
        if path in self._in_write:  # the worker thread deletes it once written
            self._acked_in_write.add(path)
            self._bytes -= self._sizes.pop(path, 0)
            return
        self._forget(path)
        self._to_delete.append(path)
        self._idle.clear()
        self._work.set()

    @property
    def pending(self) -> int:
        """Events submitted and not yet acknowledged, written or not."""
        return len(self._sizes)

    @property
    def size_bytes(self) -> int:
        """What the pending events count against ``max_bytes``."""
        return self._bytes

    def _forget(self, path: str) -> None:
        if self._queue and self._queue[0] == path:
            self._queue.popleft()
        else:
            with contextlib.suppress(ValueError):
                self._queue.remove(path)
        self._bytes -= self._sizes.pop(path, 0)

    def _drop(self, msg_id: str, why: str) -> None:
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:  # a long outage must not flood the log
            log.error("outcome %s dropped: %s (%d dropped so far, spool %s)", msg_id, why, self.dropped, self._dir)

    # ------------------------------------------------------------------ the worker thread

    async def _io_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._work.is_set():
                # Woken by new work, or when the oldest event waiting out its delay is due.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._until_due(loop.time())):
                        await self._work.wait()
            self._work.clear()
            self._in_write = self._take_due(loop.time())
            deletes, self._to_delete = self._to_delete, []
            failed: dict[str, OSError] = {}
            if self._in_write or deletes:
                failed = await loop.run_in_executor(self._executor, self._do_io, list(self._in_write.items()), deletes)
            for path in self._in_write:
                self._settle(path)  # written, acknowledged meanwhile, or failed (dropped, logged)
                if path in self._acked_in_write:  # published while it was being written
                    self._to_delete.append(path)
                    self._work.set()
                elif path in failed:
                    self._bytes -= self._sizes.pop(path, 0) + self._held.pop(path, 0)
                    self._drop(path, f"cannot write it: {failed[path]}")
                elif path in self._held:  # on disk for the next process, never published by this one
                    self.ready.set()  # what waited for it to be on disk may be published now
                else:
                    self._queue.append(path)
                    if self._fsync != "never":
                        self._unsynced.append(path)
                        self._dirty.set()
            self._in_write, self._acked_in_write = {}, set()
            if not self._to_write and not self._to_delete:
                self._idle.set()

    def _take_due(self, now: float) -> dict[str, bytes]:
        """What the worker thread writes now: the events that have waited ``write_delay_s``, held ones too
        (see the module's docstring)."""
        if self._write_delay_s <= 0:
            due, self._to_write = self._to_write, {}
            self._due.clear()
            return due
        due = {p: d for p, d in self._to_write.items() if self._due[p] <= now}
        for path in due:
            del self._to_write[path]
            self._due.pop(path, None)
        return due

    def _until_due(self, now: float) -> float | None:
        """Seconds until the oldest event waiting out its delay is due; None when none waits."""
        if self._write_delay_s <= 0:
            return None
        first = next((self._due[p] for p in self._to_write), None)  # in submit order: the oldest first
        return None if first is None else max(0.0, first - now)

    def _do_io(self, writes: list[tuple[str, bytes]], deletes: list[str]) -> dict[str, OSError]:
        """In the worker thread: write and delete files; returns the writes that failed."""
        failed: dict[str, OSError] = {}
        for path, data in writes:
            # Written under a temporary name, then renamed: a process killed between the create and the
            # write left an empty event file (bench.chaos); a rename is atomic for a dying process.
            tmp = path + TMP
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    if os.write(fd, data) != len(data):
                        raise OSError(errno.ENOSPC, "short write")
                finally:
                    os.close(fd)
                os.rename(tmp, path)
            except OSError as exc:
                failed[path] = exc
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        for path in deletes:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return failed

    async def _sync_loop(self) -> None:
        """``always``: fsync what was written as soon as the last fsync is done; ``batch``: every interval."""
        loop = asyncio.get_running_loop()
        while True:
            await self._dirty.wait()
            if self._fsync == "batch":
                await asyncio.sleep(self._fsync_interval_s)
            if paths := self._take_unsynced():
                await loop.run_in_executor(self._sync_executor, self._sync, paths)

    def _take_unsynced(self) -> list[str]:
        paths, self._unsynced = self._unsynced, []
        self._dirty.clear()
        return [p for p in paths if p in self._sizes]  # acknowledged meanwhile: nothing to keep

    def _sync(self, paths: list[str]) -> None:
        if not paths:
            return
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        dir_fd = os.open(self._dir, os.O_RDONLY)  # the file names themselves
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
