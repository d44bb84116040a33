"""Malformed payloads for a decoder, as hypothesis strategies around well-formed examples of every message."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from cascade.v1 import cascade_pb2, common_pb2, events_pb2


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def oversized(limit: int, extra: int) -> bytes:
    """A payload ``extra`` bytes over ``limit``: one unknown bytes field (well-formed, just too large)."""
    body = limit + extra
    head = _field(1000, 2) + _varint(body)
    return head + b"x" * (body - len(head))


def nested_groups(depth: int) -> bytes:
    """``depth`` unknown groups inside each other: deep recursion for a parser that recurses."""
    return _field(1000, 3) * depth + _field(1000, 4) * depth


MESSAGE = common_pb2.ChatMessage(role="user", content="What is 2+2?")
# One well-formed instance of every message that travels on NATS or gRPC: each decoder's "wrong type" inputs.
SAMPLES: dict[str, bytes] = {
    "RouteRequest": events_pb2.RouteRequest(request_id="r-1", text="What is 2+2?").SerializeToString(),
    "RouteDecision": events_pb2.RouteDecision(
        request_id="r-1", tier="small", score=0.2, threshold=0.5, model_version="v1"
    ).SerializeToString(),
    "TierRequest": events_pb2.TierRequest(
        request_id="r-1", messages=[MESSAGE], max_tokens=16, chunk_subject="_INBOX.fuzz.chunks", n=1
    ).SerializeToString(),
    "TierAccept": events_pb2.TierAccept(
        request_id="r-1", tier="small", backend="replay", model="m"
    ).SerializeToString(),
    "TokenChunk": events_pb2.TokenChunk(
        request_id="r-1", seq=0, tier="small", text="4", final=True, finish_reason=common_pb2.FINISH_REASON_STOP
    ).SerializeToString(),
    "OutcomeEvent": events_pb2.OutcomeEvent(schema_version=1, request_id="r-1", policy="cascade").SerializeToString(),
    "FeedbackEvent": events_pb2.FeedbackEvent(schema_version=1, request_id="r-1", score=1.0).SerializeToString(),
    "ModelEvent": events_pb2.ModelEvent(kind="router", version="v2", action="published").SerializeToString(),
    "GenerateRequest": cascade_pb2.GenerateRequest(prompt="What is 2+2?", max_tokens=8).SerializeToString(),
    "FeedbackRequest": cascade_pb2.FeedbackRequest(request_id="r-1", score=0.5).SerializeToString(),
}


def _truncated(data: bytes) -> st.SearchStrategy[bytes]:
    return st.integers(0, max(len(data) - 1, 0)).map(lambda n: data[:n])


def _flipped(data: bytes) -> st.SearchStrategy[bytes]:
    if not data:
        return st.just(data)
    return st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)).map(
        lambda p: data[: p[0]] + bytes([p[1]]) + data[p[0] + 1 :]
    )


def payloads(valid: Sequence[bytes], *, limit: int) -> st.SearchStrategy[bytes]:
    """Random bytes, truncated, corrupted and extended ``valid`` payloads, other messages, oversized ones."""
    examples = st.sampled_from(list(valid))
    return st.one_of(
        st.binary(max_size=512),
        examples.flatmap(_truncated),
        examples.flatmap(_flipped),
        st.tuples(examples, st.binary(min_size=1, max_size=64)).map(lambda p: p[0] + p[1]),
        st.sampled_from(list(SAMPLES.values())),
        st.integers(1, 4096).map(lambda extra: oversized(limit, extra)),
        st.integers(1, 400).map(nested_groups),
        examples,
    )
