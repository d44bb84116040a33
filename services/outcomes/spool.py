"""A bounded, crash-safe local journal of outcome events: append-only segment files in one directory.

Every event is in the journal before it is published and before anyone waits on it: :meth:`Spool.submit`
appends its record to a buffer, and the buffer is written (one ``write`` of all that was appended since
the last) before :meth:`Spool.peek` hands events to the publisher, in :meth:`Spool.settled` (the gateway
answers a request only after it), and at the end of the event loop's turn. Once JetStream has acknowledged
an event, a DONE record marks it; segments whose events are all done are deleted, oldest first. What the
journal holds, not done, when the gateway dies (SIGKILL, OOM, a crash) is published by the next gateway
that opens the directory.

Why a journal written on the event loop. Before, each event was a file of its own, created, renamed and
deleted by a worker thread, and an answer waited for its file or for JetStream's acknowledgement: at
concurrency 1 that wait was 0.35-0.4 ms of each answer, and the thread hand-offs and file work about a
fifth of the gateway's CPU (bench.overhead). Appending a few hundred bytes to an open file is a copy into
the kernel's page cache, a few microseconds (bench/spool.py), where creates, renames and unlinks are
metadata operations a busy disk takes past a millisecond. So an answer now waits for nothing but that
copy, and the page cache survives the process. A new segment is opened on the loop (one ``open`` per
``segment_bytes``); deletes and fsyncs run in a thread.

Records: a header (magic, CRC-32 of the rest, kind, sequence number, lengths), then subject, message id
and payload. Kinds: EVENT (publish it), HELD (a provisional outcome: published only by the next process,
if this one dies before :meth:`Spool.release`), DONE (the event with that sequence number is acknowledged
or released). Sequence numbers are unique within one process's segments (their names share a prefix).
A record a crash cut short, or a damaged one, fails its check: reading stops there, the rest of that
segment is kept as ``*.bad`` and logged.

Recovery (:meth:`Spool.open`): the events an earlier process left, not done, are appended to this
process's first segment (held ones after all the others: a real outcome goes first and wins by message
id), written and fsynced unless ``never``; only then are the old segments deleted. A process killed in
between leaves both, and their events are published twice within seconds: the message ids make
JetStream store them once. Files of the earlier format (one ``*.evt`` or ``*.held`` file per event) are
read the same way.

Compaction: segments go oldest first, because an event's DONE record can be in a later segment. An event
that stays (one JetStream refuses, a long outage) would keep every later segment; so whenever a segment
fills up, the oldest ones with less than half their bytes still live have those events appended again
(same sequence numbers) to the new segment and are deleted. The disk holds about twice what is live at
most.

Durability (``fsync``): the page cache survives the process; surviving a machine crash needs the disk.
``always`` fsyncs the active segment as soon as the previous fsync is done, ``batch`` every
``fsync_interval_s``, ``never`` leaves it to the kernel; in a thread, so a slow disk delays durability,
not requests.

Bound: at ``max_bytes`` of events not yet done a new event is refused (counted in :attr:`Spool.dropped`,
logged as an error); events already in the journal are never dropped. The events not yet done are
also kept in memory (the publisher sends them from there), so ``max_bytes`` bounds the gateway's memory
for them as much as the disk: a long outage costs up to that much of both. A write that fails (a full or
failing disk) is logged; its events stay in memory and are published all the same, and the next write
goes to a new segment with them.

One spool directory belongs to one gateway: :meth:`Spool.open` takes an exclusive ``flock`` on
``<dir>/.lock`` (released by the kernel when the process dies, so a SIGKILL leaves no stale lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import os
import struct
import time
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from services.core.errors import ConfigError

log = logging.getLogger(__name__)

FsyncPolicy = Literal["always", "batch", "never"]
SUFFIX = ".log"
BAD = ".bad"
EVENT, HELD, DONE = 1, 2, 3
MAGIC = b"CSJ1"
# magic, crc32 of the rest; then kind, sequence number, subject length, message id length, payload length.
_HEADER = struct.Struct(">4sIBQHHI")
_FIELDS = struct.Struct(">BQHHI")
SEGMENT_BYTES = 4 << 20


@dataclass(slots=True, eq=False)
class SpooledEvent:
    """An event in the journal; what submit and hold return, and peek hands out."""

    subject: str
    msg_id: str
    payload: bytes
    seq: int = 0
    held: bool = False
    size: int = 0  # its record's bytes, counted against max_bytes
    segment: _Segment | None = None  # where its latest record is


@dataclass(slots=True, eq=False)
class _Segment:
    path: str
    fd: int
    size: int = 0  # bytes appended, written or still buffered
    live: dict[int, SpooledEvent] = field(default_factory=dict)  # its events not done, by sequence number
    live_bytes: int = 0


def encode(kind: int, seq: int, subject: str = "", msg_id: str = "", payload: bytes = b"") -> bytes:
    s, m = subject.encode(), msg_id.encode()
    rest = _FIELDS.pack(kind, seq, len(s), len(m), len(payload)) + s + m + payload
    return MAGIC + zlib.crc32(rest).to_bytes(4, "big") + rest


def decode(data: bytes) -> tuple[list[tuple[int, SpooledEvent]], int]:
    """The whole, intact records at the start of ``data`` as (kind, event), and where they end."""
    records: list[tuple[int, SpooledEvent]] = []
    pos = 0
    while pos + _HEADER.size <= len(data):
        magic, crc, kind, seq, ns, nm, np = _HEADER.unpack_from(data, pos)
        body = pos + _HEADER.size
        end = body + ns + nm + np
        if magic != MAGIC or end > len(data) or kind not in (EVENT, HELD, DONE):
            break
        if zlib.crc32(memoryview(data)[pos + 8 : end]) != crc:
            break
        subject, msg_id = data[body : body + ns].decode(), data[body + ns : body + ns + nm].decode()
        records.append((kind, SpooledEvent(subject, msg_id, data[body + ns + nm : end], seq, kind == HELD)))
        pos = end
    return records, pos


@dataclass
class Leftovers:
    """What earlier processes left in a directory: events to publish in order (held ones last), their files."""

    events: list[SpooledEvent]
    files: list[str]
    damaged: dict[str, int]  # file -> where its intact records end


def read_journal(directory: Path) -> Leftovers:
    """The events the next gateway on ``directory`` would publish, in its order (nothing is changed)."""
    ordinary: list[SpooledEvent] = []
    held: list[SpooledEvent] = []
    files: list[str] = []
    damaged: dict[str, int] = {}
    groups: dict[str, list[str]] = {}
    for path in sorted(str(p) for p in directory.glob(f"*{SUFFIX}")):
        groups.setdefault(path.rsplit("-", 1)[0], []).append(path)  # one process's segments share a prefix
    for paths in groups.values():
        by_seq: dict[int, SpooledEvent] = {}
        for path in paths:
            with open(path, "rb") as f:
                data = f.read()
            records, end = decode(data)
            if end < len(data):
                damaged[path] = end
            for kind, event in records:
                if kind == DONE:
                    by_seq.pop(event.seq, None)
                else:
                    by_seq.setdefault(event.seq, event)  # a copy compaction made: the same event
            files.append(path)
        for event in by_seq.values():
            (held if event.held else ordinary).append(event)
    legacy_ordinary, legacy_held, legacy_files = _read_legacy(directory)
    events = [*legacy_ordinary, *ordinary, *legacy_held, *held]
    for event in events:
        event.held = False  # the next process publishes them all
    return Leftovers(events, [*legacy_files, *files], damaged)


# The earlier format, one file per event: magic, crc32, subject length, message id length; then the three.
_LEGACY = struct.Struct(">4sIHH")


def _read_legacy(directory: Path) -> tuple[list[SpooledEvent], list[SpooledEvent], list[str]]:
    ordinary: list[SpooledEvent] = []
    held: list[SpooledEvent] = []
    files: list[str] = []
    for suffix, into in ((".evt", ordinary), (".evt.tmp", ordinary), (".held", held), (".held.tmp", held)):
        for path in sorted(str(p) for p in directory.glob(f"*{suffix}")):
            files.append(path)
            data = Path(path).read_bytes()
            if len(data) < _LEGACY.size:
                continue
            magic, crc, ns, nm = _LEGACY.unpack_from(data)
            body = data[_LEGACY.size :]
            if magic != b"CSP1" or zlib.crc32(struct.pack(">HH", ns, nm) + body) != crc or len(body) < ns + nm:
                log.error("an outcome spool file of the earlier format is damaged: %s", path)
                continue
            into.append(SpooledEvent(body[:ns].decode(), body[ns : ns + nm].decode(), body[ns + nm :]))
    return ordinary, held, files


class Spool:
    """The journal's state lives on the event loop; its writes happen there too, fsyncs and deletes in a thread."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        fsync: FsyncPolicy = "batch",
        fsync_interval_s: float = 1.0,
        segment_bytes: int = SEGMENT_BYTES,
    ) -> None:
        self.directory = directory
        self._dir = str(directory)
        self._max_bytes = max_bytes
        self._fsync = fsync
        self._fsync_interval_s = fsync_interval_s
        self._segment_bytes = segment_bytes
        self._lock_fd: int | None = None
        self._segments: deque[_Segment] = deque()  # oldest first; the last one is written to
        self._buffer: list[bytes] = []  # records appended and not yet written
        self._unwritten: list[SpooledEvent] = []  # the events among them (moved if their segment breaks)
        self._scheduled = False  # a write at the end of this turn of the event loop
        self._broken = False  # the last write failed: the next goes to a new segment
        self._pending: dict[int, SpooledEvent] = {}  # to publish, oldest first
        self._held: dict[int, SpooledEvent] = {}
        self._bytes = 0
        self._seqs = itertools.count(1)
        # Segment names sort in write order: a start-time prefix, then a counter within this process.
        self._prefix = f"{self._dir}/{time.time_ns():020d}-{os.getpid()}"
        self._numbers = itertools.count()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outcome-spool")
        self._jobs: set[asyncio.Future[None]] = set()
        self._dirty = asyncio.Event()
        self._sync_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set when there are new events to publish: the publisher waits on it.
        self.ready = asyncio.Event()
        self.dropped = 0
        self.write_errors = 0

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> int:
        """Lock the directory and take over the events earlier processes left; returns their number."""
        self._loop = asyncio.get_running_loop()
        self._lock()
        left = read_journal(self.directory)
        if not self._new_segment():
            raise ConfigError(f"cannot write to outcomes.spool_dir {self.directory}")
        for left_event in left.events:  # taken over even beyond max_bytes: nothing accepted is dropped
            if (event := self._add(left_event.subject, left_event.msg_id, left_event.payload, limit=False)) is not None:
                self._pending[event.seq] = event
        self._write()
        if left.files:
            if self._fsync != "never":
                os.fsync(self._segments[-1].fd)
            for path, end in left.damaged.items():
                log.error("outcome spool file %s is damaged after byte %d: its rest is kept as %s", path, end, BAD)
                with open(path, "rb") as f, open(path + BAD, "wb") as bad:
                    f.seek(end)
                    bad.write(f.read())
            for path in left.files:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            if self._fsync != "never":
                _fsync_dir(self._dir)
        if left.events:
            self.ready.set()
            log.warning("outcome spool %s holds %d events from an earlier run", self.directory, len(left.events))
        if self._fsync != "never":
            self._sync_task = asyncio.create_task(self._sync_loop())
        return len(left.events)

    def _lock(self) -> None:
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

    async def flush(self) -> None:
        """Write what is buffered, and wait for the deletes and fsyncs under way."""
        self._write()
        while self._jobs:
            await asyncio.gather(*list(self._jobs))

    async def close(self) -> None:
        """Write what is buffered and put it on the disk; an empty journal leaves no file. Then unlock."""
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
            self._sync_task = None
        if self._segments:
            await self.flush()
            # The fsync loop's last job may still be in the thread (the loop was cancelled while it ran):
            # one more job through the same single thread runs after it, so no fd is closed under it.
            await asyncio.get_running_loop().run_in_executor(self._executor, _nothing)
            done = not self._pending and not self._held
            if not done and self._fsync != "never":
                os.fsync(self._segments[-1].fd)
            for segment in self._segments:
                if segment.fd >= 0:
                    os.close(segment.fd)
                if done:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(segment.path)
            self._segments.clear()
            if not done:
                log.warning(
                    "%d outcome events stay in the spool %s; the next gateway on it publishes them",
                    len(self._pending) + len(self._held),
                    self.directory,
                )
        self._executor.shutdown(wait=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------ events

    def submit(self, subject: str, msg_id: str, payload: bytes) -> SpooledEvent | None:
        """Append an event to publish; its handle, or None when the spool is full (logged, counted)."""
        event = self._add(subject, msg_id, payload, held=False)
        if event is not None:
            self._pending[event.seq] = event
            self.ready.set()
        return event

    def hold(self, subject: str, msg_id: str, payload: bytes) -> SpooledEvent | None:
        """Append an event that only the next process publishes, if this one dies before :meth:`release`;
        its handle, or None when the spool is full."""
        event = self._add(subject, msg_id, payload, held=True)
        if event is not None:
            self._held[event.seq] = event
        return event

    def release(self, event: SpooledEvent) -> None:
        """A held event is no longer needed (the real one was submitted before)."""
        if self._held.pop(event.seq, None) is not None:
            self._done(event)

    def ack(self, event: SpooledEvent) -> None:
        """The event is stored in JetStream (a crash before its DONE record is written republishes it,
        de-duplicated by its message id)."""
        if self._pending.pop(event.seq, None) is not None:
            self._done(event)

    def peek(self, limit: int = 1) -> list[SpooledEvent]:
        """Up to ``limit`` of the oldest events not yet acknowledged; each is in the journal first."""
        self._write()
        return list(itertools.islice(self._pending.values(), limit))

    def settled(self) -> None:
        """Make sure every event submitted so far survives this process: what is buffered written now.
        The gateway answers a request only then, so a SIGKILL never loses the outcome of a request its
        caller saw answered (bench.chaos found some)."""
        if self._buffer:
            self._write()

    @property
    def pending(self) -> int:
        """Events submitted and not yet acknowledged."""
        return len(self._pending)

    @property
    def size_bytes(self) -> int:
        """What the events not yet done count against ``max_bytes``."""
        return self._bytes

    def _add(
        self, subject: str, msg_id: str, payload: bytes, *, held: bool = False, limit: bool = True
    ) -> SpooledEvent | None:
        if not self._segments:
            raise RuntimeError(f"the outcome spool {self._dir} is not open")
        seq = next(self._seqs)
        record = encode(HELD if held else EVENT, seq, subject, msg_id, payload)
        if limit and self._bytes + len(record) > self._max_bytes:
            self._drop(msg_id, f"the spool is full ({self._bytes} bytes, limit {self._max_bytes})")
            return None
        event = SpooledEvent(subject, msg_id, payload, seq, held, len(record))
        self._bytes += event.size
        if self._segments[-1].size >= self._segment_bytes and self._new_segment():
            self._compact()
        self._append(record, event)
        return event

    def _done(self, event: SpooledEvent) -> None:
        self._bytes -= event.size
        segment = event.segment
        if segment is not None and segment.live.pop(event.seq, None) is not None:
            segment.live_bytes -= event.size
        self._append(encode(DONE, event.seq), None)
        if segment is not None and not segment.live and segment is self._segments[0]:
            self._trim()

    def _append(self, record: bytes, event: SpooledEvent | None) -> None:
        segment = self._segments[-1]
        segment.size += len(record)
        if event is not None:
            event.segment = segment
            segment.live[event.seq] = event
            segment.live_bytes += event.size
            self._unwritten.append(event)
        self._buffer.append(record)
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._write_soon)

    def _drop(self, msg_id: str, why: str) -> None:
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:  # a long outage must not flood the log
            log.error("outcome %s dropped: %s (%d dropped so far, spool %s)", msg_id, why, self.dropped, self._dir)

    # ------------------------------------------------------------------ the files

    def _write_soon(self) -> None:
        self._scheduled = False
        self._write()

    def _write(self) -> None:
        """Write what is buffered, in one system call (a short write: the rest in more)."""
        if not self._buffer:
            return
        if self._broken and not self._new_segment(carry=True):
            return
        data = b"".join(self._buffer)
        fd = self._segments[-1].fd
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
        except OSError as exc:
            self._broken = True  # a torn record may end this segment: nothing more is appended to it
            self.write_errors += 1
            if self.write_errors == 1 or self.write_errors % 1000 == 0:
                log.error(
                    "cannot write the outcome spool %s (%s): %d events are published from memory, not safe from "
                    "a crash until a write succeeds (%d failed writes)",
                    self._dir,
                    exc,
                    len(self._unwritten),
                    self.write_errors,
                )
            return
        self._buffer.clear()
        self._unwritten.clear()
        self._dirty.set()

    def _new_segment(self, *, carry: bool = False) -> bool:
        """Start writing to a new segment; ``carry``: what is buffered goes there (the last one broke).
        False (logged) when it cannot be created: the current one stays in use."""
        if not carry and self._segments:
            self._write()  # what is buffered was counted in the current segment
        path = f"{self._prefix}-{next(self._numbers):08d}{SUFFIX}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except OSError as exc:
            self.write_errors += 1
            log.error("cannot create an outcome spool segment %s: %s", path, exc)
            return False
        segment = _Segment(path, fd)
        if carry:
            old = self._segments[-1]
            segment.size = sum(len(r) for r in self._buffer)
            for event in self._unwritten:
                if old.live.pop(event.seq, None) is not None:
                    old.live_bytes -= event.size
                    segment.live[event.seq] = event
                    segment.live_bytes += event.size
                    event.segment = segment
            self._broken = False
        if self._segments:
            self._retire(self._segments[-1])
        self._segments.append(segment)
        return True

    def _retire(self, segment: _Segment) -> None:
        """A segment no longer written to: fsynced (unless ``never``) and closed in the thread."""
        self._run(_sync_and_close, segment.fd, self._fsync != "never")
        segment.fd = -1

    def _compact(self) -> None:
        """The oldest segments with less than half their bytes live: those events again in the newest."""
        while len(self._segments) > 1 and self._segments[0].live_bytes * 2 < self._segments[0].size:
            oldest = self._segments[0]
            for event in list(oldest.live.values()):
                del oldest.live[event.seq]
                kind = HELD if event.held else EVENT
                self._append(encode(kind, event.seq, event.subject, event.msg_id, event.payload), event)
            oldest.live_bytes = 0
            self._trim()

    def _trim(self) -> None:
        """Delete the oldest segments while none of their events is live (never the one written to)."""
        gone = []
        while len(self._segments) > 1 and not self._segments[0].live:
            gone.append(self._segments.popleft().path)
        if gone:
            self._write()  # what compaction copied, and the DONE records, before the files go
            active = self._segments[-1].fd if self._fsync != "never" else None
            self._run(_delete, gone, active, self._dir)

    def _run(self, fn, *args) -> None:  # type: ignore[no-untyped-def]
        assert self._loop is not None
        job = self._loop.run_in_executor(self._executor, fn, *args)
        self._jobs.add(job)
        job.add_done_callback(self._job_done)

    def _job_done(self, job: asyncio.Future[None]) -> None:
        self._jobs.discard(job)
        if not job.cancelled() and (exc := job.exception()) is not None:
            log.error("outcome spool %s: %s", self._dir, exc)

    async def _sync_loop(self) -> None:
        """``always``: fsync the segment written to as soon as the last fsync is done; ``batch``: every interval."""
        loop = asyncio.get_running_loop()
        while True:
            await self._dirty.wait()
            if self._fsync == "batch":
                await asyncio.sleep(self._fsync_interval_s)
            self._dirty.clear()
            # In the executor, after any close of it: a retired segment's fd is closed by a later job.
            await loop.run_in_executor(self._executor, _fsync_quietly, self._segments[-1].fd)


def _nothing() -> None:
    pass


def _sync_and_close(fd: int, sync: bool) -> None:
    try:
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _delete(paths: list[str], active_fd: int | None, directory: str) -> None:
    """Delete segments, after the one written to is on the disk (it may hold copies of their events)."""
    if active_fd is not None:
        _fsync_quietly(active_fd)
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    if active_fd is not None:
        _fsync_dir(directory)


def _fsync_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):  # EBADF: the segment was closed meanwhile (already fsynced then)
        os.fsync(fd)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
