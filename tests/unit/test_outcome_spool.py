"""The outcome spool on a real directory: bound, order, damaged files, leftovers, one owner."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.core.errors import ConfigError
from services.core.settings import CascadeSettings, load_settings
from services.outcomes.spool import HELD, SUFFIX, Spool, decode, encode

SUBJECT = "cascade.outcomes.request"


def event_size(msg_id: str, payload: bytes) -> int:
    return len(encode(SUBJECT, msg_id, payload))


async def test_a_full_spool_refuses_new_events_and_keeps_the_old_ones(tmp_path) -> None:
    payload = b"x" * 100
    spool = Spool(tmp_path, max_bytes=2 * event_size("outcome:a", payload), fsync="never")
    spool.open()
    assert spool.submit(SUBJECT, "outcome:a", payload)
    assert spool.submit(SUBJECT, "outcome:b", payload)
    assert not spool.submit(SUBJECT, "outcome:c", payload)  # beyond the bound: refused, counted
    assert spool.dropped == 1 and spool.pending == 2
    await spool.flush()
    assert len(list(tmp_path.glob(f"*{SUFFIX}"))) == 2

    [first] = spool.peek()
    assert first.msg_id == "outcome:a" and first.payload == payload
    spool.ack(first.path)  # room again
    assert spool.submit(SUBJECT, "outcome:d", payload)
    await spool.flush()
    assert [e.msg_id for e in spool.peek(10)] == ["outcome:b", "outcome:d"]
    for event in spool.peek(10):
        spool.ack(event.path)
    await spool.flush()
    assert list(tmp_path.glob(f"*{SUFFIX}")) == [] and spool.size_bytes == 0
    await spool.close()


@pytest.mark.parametrize("fsync", ["always", "batch", "never"])
async def test_the_next_spool_on_a_directory_gets_the_events_in_order(tmp_path, fsync) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20, fsync=fsync)
    first.open()
    for i in range(3):
        first.submit(SUBJECT, f"outcome:{i}", f"payload {i}".encode())
    await first.close()  # writes what is queued
    cut_short = tmp_path / f"{'9' * 20}-0-{0:012d}{SUFFIX}"  # sorts last, as a write a crash cut short
    cut_short.write_bytes(encode(SUBJECT, "outcome:cut", b"payload")[:10])

    second = Spool(tmp_path, max_bytes=1 << 20, fsync=fsync)
    assert second.open() == 4
    got = []
    while events := second.peek():
        got.append((events[0].subject, events[0].msg_id, events[0].payload))
        second.ack(events[0].path)
    assert got == [(SUBJECT, f"outcome:{i}", f"payload {i}".encode()) for i in range(3)]
    assert cut_short.with_suffix(".bad").exists() and second.pending == 0
    await second.close()


async def test_a_damaged_file_is_set_aside_and_the_rest_still_flows(tmp_path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, fsync="never")
    spool.open()
    spool.submit(SUBJECT, "outcome:bad", b"payload")
    spool.submit(SUBJECT, "outcome:good", b"payload")
    await spool.flush()
    damaged = Path(spool.peek()[0].path)
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit: the checksum no longer matches
    damaged.write_bytes(bytes(data))
    assert [e.msg_id for e in spool.peek(10)] == ["outcome:good"]
    assert damaged.with_suffix(".bad").exists() and spool.pending == 1
    await spool.close()


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


@pytest.mark.parametrize("yields", [0, 1, 5])
async def test_an_event_acknowledged_before_or_while_it_is_written_leaves_no_file(tmp_path, yields) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, fsync="always")
    spool.open()
    spool.submit(SUBJECT, "outcome:fast", b"payload")
    for _ in range(yields):  # 0: still in memory; later: handed to the worker thread, or written
        await asyncio.sleep(0)
    [event] = spool.peek(10)  # published from memory or from its file
    spool.ack(event.path)
    await spool.flush()
    assert spool.pending == 0 and spool.peek(10) == []
    assert list(tmp_path.glob(f"*{SUFFIX}")) == []
    await spool.close()


async def test_a_held_event_is_published_only_by_the_next_spool_and_after_the_others(tmp_path) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20, fsync="never")
    first.open()
    released = first.hold(SUBJECT, "outcome:done", b"provisional")
    kept = first.hold(SUBJECT, "outcome:cut", b"provisional")  # its request never ends: the process dies
    assert released is not None and kept is not None
    assert first.peek(10) == []  # not even while still in memory
    first.submit(SUBJECT, "outcome:done", b"real")
    first.release(released)
    await first.flush()
    assert [e.msg_id for e in first.peek(10)] == ["outcome:done"]  # never a held one
    assert len(list(tmp_path.glob("*.held"))) == 1
    await first.close()  # leaves the real outcome and the unreleased held one

    second = Spool(tmp_path, max_bytes=1 << 20, fsync="never")
    assert second.open() == 2
    got = [(e.msg_id, e.payload) for e in second.peek(10)]
    assert got == [("outcome:done", b"real"), ("outcome:cut", b"provisional")]  # held ones last
    for event in second.peek(10):
        second.ack(event.path)
    await second.flush()
    assert [p.name for p in tmp_path.iterdir()] == [".lock"] and second.size_bytes == 0
    await second.close()


async def test_a_seen_id_is_not_published_before_its_held_event_is_on_disk(tmp_path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, fsync="never", write_delay_s=30.0)
    spool.open()
    spool.submit(SUBJECT, "outcome:before", b"x")
    held = spool.hold(SUBJECT, "outcome:r1", b"provisional")
    spool.submit(SUBJECT, "seen:r1", b"", after=held)  # a seen id stored before its held outcome could be lost
    spool.submit(SUBJECT, "outcome:other", b"y")  # another request's event waits for nobody
    assert [e.msg_id for e in spool.peek(10)] == ["outcome:before", "outcome:other"]
    await spool.close()  # writes what waits out its delay
    again = Spool(tmp_path, max_bytes=1 << 20, fsync="never")
    again.open()
    assert [e.msg_id for e in again.peek(10)] == ["outcome:before", "seen:r1", "outcome:other", "outcome:r1"]
    await again.close()


async def test_a_file_left_under_its_temporary_name_is_recovered(tmp_path) -> None:
    name = f"{'0' * 20}-1-{0:012d}{SUFFIX}.tmp"  # killed between the write and the rename
    (tmp_path / name).write_bytes(encode(SUBJECT, "outcome:tmp", b"whole"))
    spool = Spool(tmp_path, max_bytes=1 << 20, fsync="never")
    assert spool.open() == 1
    assert [(e.msg_id, e.payload) for e in spool.peek()] == [("outcome:tmp", b"whole")]


async def test_with_a_write_delay_an_event_acknowledged_in_time_is_never_written(tmp_path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, fsync="never", write_delay_s=1.0)
    spool.open()
    spool.submit(SUBJECT, "outcome:quick", b"payload")
    await asyncio.sleep(0.2)  # without the delay the worker thread would have written it by now
    assert list(tmp_path.glob(f"*{SUFFIX}")) == []
    [quick] = spool.peek(10)  # published from memory meanwhile
    spool.ack(quick.path)
    spool.submit(SUBJECT, "outcome:slow", b"payload")  # never acknowledged: written once the delay is over
    await spool.flush()
    [written] = tmp_path.glob(f"*{SUFFIX}")
    assert decode(str(written), written.read_bytes()).msg_id == "outcome:slow"
    await spool.close()


async def test_with_a_write_delay_a_held_event_released_in_time_is_never_written(tmp_path) -> None:
    """A request that ends within the delay costs the disk nothing: its provisional outcome is released
    before it is written, its seen id and outcome are acknowledged before theirs are."""
    spool = Spool(tmp_path, max_bytes=1 << 20, fsync="never", write_delay_s=30.0)
    spool.open()
    held = spool.hold(SUBJECT, "outcome:quick", b"provisional")
    assert held is not None
    spool.submit(SUBJECT, "seen:quick", b"", after=held)
    assert spool.peek(10) == []  # the seen id waits for its provisional outcome
    spool.release(held)
    spool.submit(SUBJECT, "outcome:quick", b"real")
    events = spool.peek(10)
    assert [e.msg_id for e in events] == ["seen:quick", "outcome:quick"]
    for event in events:
        spool.ack(event.path)
    await asyncio.wait_for(spool.flush(), timeout=5)  # nothing left to write: idle long before 30 s
    assert list(tmp_path.iterdir()) == [tmp_path / ".lock"]
    await spool.close()


async def test_a_held_event_not_released_within_the_delay_is_written_then_its_seen_id_goes(tmp_path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, fsync="never", write_delay_s=0.2)
    spool.open()
    held = spool.hold(SUBJECT, "outcome:slow", b"provisional")
    assert held is not None
    spool.submit(SUBJECT, "seen:slow", b"", after=held)
    assert spool.peek(10) == []
    await asyncio.wait_for(spool.settled(held), timeout=5)  # on disk once its delay is over
    assert [p.name for p in tmp_path.glob(f"*{HELD}")] == [Path(held).name]
    assert [e.msg_id for e in spool.peek(10)] == ["seen:slow"]
    await spool.close()


async def test_settled_waits_for_the_file_or_the_acknowledgement(tmp_path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, fsync="never", write_delay_s=0.2)
    spool.open()
    written = spool.submit(SUBJECT, "outcome:written", b"x")
    acked = spool.submit(SUBJECT, "outcome:acked", b"y")
    assert written is not None and acked is not None
    waiting = asyncio.create_task(spool.settled(written))
    await asyncio.sleep(0)
    assert not waiting.done() and not list(tmp_path.glob("*" + SUFFIX))  # still in memory: not yet safe
    spool.ack(acked)
    await spool.settled(acked)  # acknowledged before its file was written: safe at once
    await waiting
    assert [p.name for p in tmp_path.glob("*" + SUFFIX)] == [Path(written).name]  # returned once on disk
    await spool.settled(written)  # and at once afterwards
    await spool.close()
