"""The outcome spool on a real directory: bound, order, damaged files, leftovers, one owner."""

from __future__ import annotations

import pytest

from services.core.errors import ConfigError
from services.outcomes.spool import SUFFIX, Spool, encode

SUBJECT = "cascade.outcomes.request"


def event_size(msg_id: str, payload: bytes) -> int:
    return len(encode(SUBJECT, msg_id, payload))


async def test_a_full_spool_refuses_new_events_and_keeps_the_old_ones(tmp_path) -> None:
    payload = b"x" * 100
    spool = Spool(tmp_path, max_bytes=2 * event_size("outcome:a", payload), fsync="never")
    spool.open()
    assert spool.write(SUBJECT, "outcome:a", payload) is not None
    assert spool.write(SUBJECT, "outcome:b", payload) is not None
    assert spool.write(SUBJECT, "outcome:c", payload) is None  # beyond the bound: refused, counted
    assert spool.dropped == 1 and spool.pending == 2
    assert len(list(tmp_path.glob(f"*{SUFFIX}"))) == 2

    first = spool.peek()
    assert first is not None and first.msg_id == "outcome:a" and first.payload == payload
    spool.ack(first.path)  # room again
    assert spool.write(SUBJECT, "outcome:d", payload) is not None
    order = []
    while (event := spool.peek()) is not None:
        order.append(event.msg_id)
        spool.ack(event.path)
    assert order == ["outcome:b", "outcome:d"]
    assert list(tmp_path.glob(f"*{SUFFIX}")) == [] and spool.bytes == 0
    await spool.close()


@pytest.mark.parametrize("fsync", ["always", "batch", "never"])
async def test_the_next_spool_on_a_directory_gets_the_events_in_order(tmp_path, fsync) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20, fsync=fsync)
    first.open()
    for i in range(3):
        first.write(SUBJECT, f"outcome:{i}", f"payload {i}".encode())
    (tmp_path / ".tmp-half-written.evt").write_bytes(b"CSP1")  # a write a crash cut short
    await first.close()

    second = Spool(tmp_path, max_bytes=1 << 20, fsync=fsync)
    assert second.open() == 3
    got = []
    while (event := second.peek()) is not None:
        got.append((event.subject, event.msg_id, event.payload))
        second.ack(event.path)
    assert got == [(SUBJECT, f"outcome:{i}", f"payload {i}".encode()) for i in range(3)]
    assert not list(tmp_path.glob(".tmp-*"))
    await second.close()


async def test_a_damaged_file_is_set_aside_and_the_rest_still_flows(tmp_path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, fsync="never")
    spool.open()
    bad = spool.write(SUBJECT, "outcome:bad", b"payload")
    spool.write(SUBJECT, "outcome:good", b"payload")
    assert bad is not None
    data = bytearray(bad.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit: the checksum no longer matches
    bad.write_bytes(bytes(data))
    event = spool.peek()
    assert event is not None and event.msg_id == "outcome:good"
    assert bad.with_suffix(".bad").exists() and spool.pending == 1
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
