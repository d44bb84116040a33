"""The outcome journal on a real directory: written before published, bound, order, damage, leftovers,
compaction, a failing disk, the earlier format, one owner."""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.core.errors import ConfigError
from services.core.settings import CascadeSettings, load_settings
from services.outcomes.spool import BAD, DONE, EVENT, HELD, SUFFIX, Spool, decode, encode, read_journal

SUBJECT = "cascade.outcomes.request"


def on_disk(directory: Path) -> list[tuple[int, int, str]]:
    """Every record in the directory's segments, as (kind, sequence number, message id), in file order."""
    records = []
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        records += [(kind, e.seq, e.msg_id) for kind, e in decode(path.read_bytes())[0]]
    return records


def left(directory: Path) -> list[tuple[str, bytes]]:
    return [(e.msg_id, e.payload) for e in read_journal(directory).events]


async def test_every_event_is_written_before_it_is_published_or_settled(tmp_path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, fsync="never")
    spool.open()
    held = spool.hold(SUBJECT, "outcome:r1", b"provisional")
    seen = spool.submit("cascade.requests.seen.x", "seen:r1", b"")
    assert held is not None and seen is not None
    assert on_disk(tmp_path) == []  # buffered until the end of this turn of the event loop, or until needed
    assert [e.msg_id for e in spool.peek(10)] == ["seen:r1"]
    # A seen id is never published before its request's provisional outcome could be lost (bench.chaos).
    assert on_disk(tmp_path) == [(HELD, held.seq, "outcome:r1"), (EVENT, seen.seq, "seen:r1")]
    real = spool.submit(SUBJECT, "outcome:r1", b"real")
    assert real is not None
    spool.settled()  # the gateway answers only after this: no await, no acknowledgement waited for
    assert on_disk(tmp_path)[-1] == (EVENT, real.seq, "outcome:r1")
    await spool.close()


async def test_a_full_spool_refuses_new_events_and_keeps_the_old_ones(tmp_path) -> None:
    payload = b"x" * 100
    size = len(encode(EVENT, 1, SUBJECT, "outcome:a", payload))
    spool = Spool(tmp_path, max_bytes=2 * size, fsync="never")
    spool.open()
    assert spool.submit(SUBJECT, "outcome:a", payload)
    assert spool.submit(SUBJECT, "outcome:b", payload)
    assert not spool.submit(SUBJECT, "outcome:c", payload)  # beyond the bound: refused, counted
    assert spool.dropped == 1 and spool.pending == 2
    [first] = spool.peek()
    assert first.msg_id == "outcome:a" and first.payload == payload
    spool.ack(first)  # room again
    assert spool.submit(SUBJECT, "outcome:d", payload)
    assert [e.msg_id for e in spool.peek(10)] == ["outcome:b", "outcome:d"]
    await spool.flush()
    assert left(tmp_path) == [("outcome:b", payload), ("outcome:d", payload)]
    for event in spool.peek(10):
        spool.ack(event)
    await spool.close()
    assert list(tmp_path.glob(f"*{SUFFIX}")) == [] and spool.size_bytes == 0  # an empty journal leaves no file


@pytest.mark.parametrize("fsync", ["always", "batch", "never"])
async def test_the_next_spool_on_a_directory_gets_what_was_not_acknowledged_in_order(tmp_path, fsync) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20, fsync=fsync)
    first.open()
    events = [first.submit(SUBJECT, f"outcome:{i}", f"payload {i}".encode()) for i in range(4)]
    first.ack(events[1])  # stored in JetStream: its DONE record keeps the next spool from sending it again
    await first.close()

    second = Spool(tmp_path, max_bytes=1 << 20, fsync=fsync)
    assert second.open() == 3
    got = []
    while batch := second.peek():
        got.append((batch[0].subject, batch[0].msg_id, batch[0].payload))
        second.ack(batch[0])
    assert got == [(SUBJECT, f"outcome:{i}", f"payload {i}".encode()) for i in (0, 2, 3)]
    assert second.pending == 0
    await second.close()
    assert list(tmp_path.iterdir()) == [tmp_path / ".lock"]


@pytest.mark.parametrize("fsync", ["always", "batch", "never"])
async def test_the_takeover_is_on_the_disk_before_the_old_segments_are_deleted(tmp_path, fsync, monkeypatch) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20, fsync="never")
    first.open()
    first.submit(SUBJECT, "outcome:a", b"a")
    await first.close()
    old = {str(p) for p in tmp_path.glob(f"*{SUFFIX}")}

    calls: list[tuple[str, object]] = []
    fsync_, unlink_ = os.fsync, os.unlink
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(("fsync", fd)), fsync_(fd))[1])
    monkeypatch.setattr(os, "unlink", lambda path, **kw: (calls.append(("unlink", str(path))), unlink_(path, **kw))[1])
    second = Spool(tmp_path, max_bytes=1 << 20, fsync=fsync)
    assert second.open() == 1
    deleted = [i for i, (what, arg) in enumerate(calls) if what == "unlink" and arg in old]
    assert deleted, calls
    synced = [i for i, (what, _) in enumerate(calls) if what == "fsync"]
    if fsync == "never":  # left to the kernel, as every write of this spool
        assert synced == []
    else:  # a machine crash between the delete and the kernel's own flush must not lose the event
        assert synced and synced[0] < deleted[0], calls
    await second.close()


async def test_a_record_cut_short_or_damaged_ends_its_segment_and_the_rest_is_kept_aside(tmp_path, caplog) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20, fsync="never")
    first.open()
    for name in ("good", "damaged", "after"):
        first.submit(SUBJECT, f"outcome:{name}", b"payload")
    await first.close()
    [segment] = tmp_path.glob(f"*{SUFFIX}")
    data = bytearray(segment.read_bytes())
    good = len(encode(EVENT, 1, SUBJECT, "outcome:good", b"payload"))
    data[good + 20] ^= 0xFF  # one flipped bit in the second record: its checksum no longer matches
    segment.write_bytes(bytes(data))
    cut = tmp_path / f"{'9' * 20}-1-{0:08d}{SUFFIX}"  # another process's segment, its last write cut short
    cut.write_bytes(
        encode(EVENT, 1, SUBJECT, "outcome:whole", b"x") + encode(EVENT, 2, SUBJECT, "outcome:cut", b"x")[:9]
    )

    second = Spool(tmp_path, max_bytes=1 << 20, fsync="never")
    with caplog.at_level(logging.ERROR):
        assert second.open() == 2
    assert [e.msg_id for e in second.peek(10)] == ["outcome:good", "outcome:whole"]
    assert sorted(p.name for p in tmp_path.glob(f"*{BAD}")) == sorted([segment.name + BAD, cut.name + BAD])
    assert (tmp_path / (segment.name + BAD)).read_bytes() == bytes(data[good:])
    assert "damaged" in caplog.text
    await second.close()


async def test_a_held_event_is_published_only_by_the_next_spool_and_after_the_others(tmp_path) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20, fsync="never")
    first.open()
    released = first.hold(SUBJECT, "outcome:done", b"provisional")
    kept = first.hold(SUBJECT, "outcome:cut", b"provisional")  # its request never ends: the process dies
    assert released is not None and kept is not None
    assert first.peek(10) == []
    first.submit(SUBJECT, "outcome:done", b"real")
    first.release(released)
    assert [e.msg_id for e in first.peek(10)] == ["outcome:done"]  # never a held one
    await first.close()  # leaves the real outcome and the unreleased held one

    second = Spool(tmp_path, max_bytes=1 << 20, fsync="never")
    assert second.open() == 2
    events = second.peek(10)
    assert [(e.msg_id, e.payload) for e in events] == [("outcome:done", b"real"), ("outcome:cut", b"provisional")]
    for event in events:
        second.ack(event)
    await second.close()
    assert [p.name for p in tmp_path.iterdir()] == [".lock"] and second.size_bytes == 0


async def test_segments_go_once_their_events_are_done_and_a_stuck_event_is_copied_forward(tmp_path) -> None:
    """An event that is never acknowledged must not keep every later segment on the disk."""
    spool = Spool(tmp_path, max_bytes=1 << 24, fsync="never", segment_bytes=2000)
    spool.open()
    stuck = spool.submit(SUBJECT, "outcome:stuck", b"s" * 50)  # JetStream refuses it, say
    assert stuck is not None
    for i in range(200):
        event = spool.submit(SUBJECT, f"outcome:{i}", b"p" * 50)
        assert event is not None
        spool.peek(1000)
        spool.ack(event)
    await spool.flush()
    segments = sorted(tmp_path.glob(f"*{SUFFIX}"))
    assert 1 <= len(segments) <= 3  # about 30 segments were filled
    assert sum(p.stat().st_size for p in segments) < 3 * 2000 + 200
    assert left(tmp_path) == [("outcome:stuck", b"s" * 50)]  # copied forward, once
    assert [e.msg_id for e in spool.peek(10)] == ["outcome:stuck"] and spool.pending == 1
    await spool.close()
    again = Spool(tmp_path, max_bytes=1 << 20, fsync="never")
    assert again.open() == 1
    await again.close()


async def test_an_event_both_in_its_segment_and_copied_forward_is_published_once(tmp_path) -> None:
    """A process killed between compaction's copy and the delete of the old segment leaves both."""
    prefix = f"{'0' * 19}1-77"
    (tmp_path / f"{prefix}-{0:08d}{SUFFIX}").write_bytes(
        encode(EVENT, 1, SUBJECT, "outcome:copied", b"x") + encode(EVENT, 2, SUBJECT, "outcome:acked", b"y")
    )
    (tmp_path / f"{prefix}-{1:08d}{SUFFIX}").write_bytes(
        encode(DONE, 2)
        + encode(EVENT, 1, SUBJECT, "outcome:copied", b"x")
        + encode(EVENT, 3, SUBJECT, "outcome:new", b"z")
    )
    spool = Spool(tmp_path, max_bytes=1 << 20, fsync="never")
    assert spool.open() == 2
    assert [e.msg_id for e in spool.peek(10)] == ["outcome:copied", "outcome:new"]
    await spool.close()


async def test_events_of_the_earlier_one_file_per_event_format_are_taken_over(tmp_path) -> None:
    def legacy(subject: str, msg_id: str, payload: bytes) -> bytes:
        s, m = subject.encode(), msg_id.encode()
        body = s + m + payload
        return (
            struct.pack(">4sIHH", b"CSP1", zlib.crc32(struct.pack(">HH", len(s), len(m)) + body), len(s), len(m)) + body
        )

    (tmp_path / f"{'0' * 20}-1-{0:012d}.held").write_bytes(legacy(SUBJECT, "outcome:cut", b"provisional"))
    (tmp_path / f"{'0' * 20}-1-{1:012d}.evt").write_bytes(legacy(SUBJECT, "outcome:old", b"real"))
    (tmp_path / f"{'0' * 20}-1-{2:012d}.evt.tmp").write_bytes(legacy(SUBJECT, "outcome:tmp", b"whole"))
    spool = Spool(tmp_path, max_bytes=1 << 20, fsync="batch")
    assert spool.open() == 3
    got = [(e.msg_id, e.payload) for e in spool.peek(10)]
    assert got == [("outcome:old", b"real"), ("outcome:tmp", b"whole"), ("outcome:cut", b"provisional")]
    assert [p.suffix for p in tmp_path.iterdir() if p.name != ".lock"] == [SUFFIX]  # now in this spool's journal
    await spool.close()
    assert left(tmp_path) == got


async def test_a_failing_disk_loses_no_event_and_the_next_write_goes_to_a_new_segment(tmp_path, caplog) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, fsync="never")
    spool.open()
    spool.submit(SUBJECT, "outcome:before", b"x")
    await spool.flush()
    [segment] = spool._segments
    full = os.open("/dev/full", os.O_WRONLY)  # every write to it fails: ENOSPC
    saved = os.dup(segment.fd)
    os.dup2(full, segment.fd)
    try:
        during = spool.submit(SUBJECT, "outcome:during", b"y")
        assert during is not None
        with caplog.at_level(logging.ERROR):
            assert [e.msg_id for e in spool.peek(10)] == ["outcome:before", "outcome:during"]  # still published
        assert "cannot write the outcome spool" in caplog.text and spool.write_errors == 1
    finally:
        os.dup2(saved, segment.fd)
        os.close(saved)
        os.close(full)
    spool.submit(SUBJECT, "outcome:after", b"z")
    await spool.flush()
    assert len(list(tmp_path.glob(f"*{SUFFIX}"))) == 2
    await spool.close()
    assert [m for m, _ in left(tmp_path)] == ["outcome:before", "outcome:during", "outcome:after"]


async def test_two_gateways_cannot_share_a_spool_directory(tmp_path) -> None:
    owner = Spool(tmp_path, max_bytes=1 << 20, fsync="never")
    owner.open()
    with pytest.raises(ConfigError, match="in use by another gateway"):
        Spool(tmp_path, max_bytes=1 << 20, fsync="never").open()
    await owner.close()
    successor = Spool(tmp_path, max_bytes=1 << 20, fsync="never")
    successor.open()  # free once the owner has closed it
    await successor.close()


def test_spool_settings_are_validated_and_resolved_against_the_config_file(tmp_path) -> None:
    with pytest.raises(ValidationError, match="duplicate_window_s"):
        CascadeSettings(outcomes={"duplicate_window_s": 2 * 86400, "max_age_days": 1})
    with pytest.raises(ValidationError, match="spool_fsync"):
        CascadeSettings(outcomes={"spool_fsync": "sometimes"})
    config = tmp_path / "cascade.yaml"
    config.write_text("outcomes: {spool_dir: spool/gw1}\n")
    assert load_settings(config).outcomes.spool_dir == tmp_path / "spool" / "gw1"
