"""The gateway's gRPC handling under hypothesis: any request a client can build, with any metadata, gets
a proper status (OK or one that names the caller's mistake or the system's state), never INTERNAL or
UNKNOWN and never a hang. Raw malformed bytes are in test_fuzz_services.py (through bench.fuzz's targets).
"""

from __future__ import annotations

import math

import grpc
import pytest
from grpc import aio
from hypothesis import given
from hypothesis import strategies as st

from cascade.v1 import cascade_pb2, cascade_pb2_grpc, common_pb2
from tests.support.system import make_settings, openai_tier, run_system

MAX_PROMPT_CHARS, MAX_REQUEST_BYTES = 2000, 16 << 10
# An answer is due in well under this; a call that reaches it hung.
TIMEOUT_S = 30

texts = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=st.characters(min_codepoint=0x10000), max_size=50),  # 4-byte UTF-8 only
    st.sampled_from(["", " \n\t", "\x00", "\u202e\u200b"]),
)
prompts = st.one_of(texts, st.integers(MAX_PROMPT_CHARS - 1, 3 * MAX_REQUEST_BYTES).map(lambda n: "é" * n))
messages = st.lists(
    st.builds(common_pb2.ChatMessage, role=st.sampled_from(["user", "system", "assistant", "tool", ""]), content=texts),
    max_size=4,
)


WILD: dict[str, st.SearchStrategy] = {
    "prompt": prompts,
    "messages": messages,
    # The edges explicitly: a 50-example sample mostly draws hypothesis's simplest values (0, 0.0).
    "max_tokens": st.one_of(st.sampled_from([0, 1, 64, 65, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1)),
    "temperature": st.one_of(
        st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 2.0, 2.0000002, -1e-45, 3.4e38]), st.floats(width=32)
    ),
    "stop": st.lists(st.text(max_size=300), max_size=20),
    "policy": st.integers(-1, 8),  # open enums: numbers the gateway does not know too
    "tenant": st.text(max_size=200),
    "tags": st.dictionaries(st.text(max_size=70), st.text(max_size=300), max_size=40),
    "request_id": st.one_of(st.just(""), st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True), texts),
    "stream_mode": st.integers(-1, 4),
}


@st.composite
def requests(draw: st.DrawFn) -> cascade_pb2.GenerateRequest:
    """A valid request with one to three fields drawn wild, so each check is reached with the others passing."""
    req = cascade_pb2.GenerateRequest(prompt="Tell me a story.", max_tokens=8)
    for name in draw(st.sets(st.sampled_from(sorted(WILD)), min_size=1, max_size=3)):
        value = draw(WILD[name])
        if name == "messages":
            req.prompt = draw(st.sampled_from(["", req.prompt]))  # both set is INVALID_ARGUMENT too
            req.messages.extend(value)
        elif name in ("stop", "tags"):
            getattr(req, name).extend(value) if name == "stop" else req.tags.update(value)
        else:
            setattr(req, name, value)
    return req


metadata = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from(["traceparent", "tracestate", "authorization", "x-tenant"]),
            st.from_regex(r"x-[a-z0-9_.-]{1,20}", fullmatch=True).filter(lambda k: not k.endswith("-bin")),
        ),
        st.from_regex(r"[ -~]{0,80}", fullmatch=True).map(str.strip),
    ),
    max_size=4,
)


@pytest.fixture
async def stub(nats_server, fake_openai):
    tiers = {"small": openai_tier(fake_openai.base_url), "large": openai_tier(fake_openai.base_url)}
    gateway = {"max_prompt_chars": MAX_PROMPT_CHARS, "max_request_bytes": MAX_REQUEST_BYTES, "max_tokens_limit": 64}
    settings = make_settings(nats_server.url, tiers, nats={"max_payload_bytes": 64 << 10}, gateway=gateway)
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        yield cascade_pb2_grpc.CascadeStub(channel)


@given(request=requests(), meta=metadata, stream=st.booleans())
async def test_any_request_gets_a_proper_status(stub, request, meta, stream) -> None:
    try:
        if stream:
            async for _ in stub.GenerateStream(request, metadata=meta, timeout=TIMEOUT_S):
                pass
        else:
            await stub.Generate(request, metadata=meta, timeout=TIMEOUT_S)
    except aio.AioRpcError as exc:
        assert exc.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), exc.details()
        assert exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED, "the call hung"
        assert exc.details()  # the status says why


@given(request_id=st.one_of(st.just(""), texts), score=st.floats(), comment=st.text(max_size=5000))
async def test_any_feedback_gets_a_proper_status(stub, request_id, score, comment) -> None:
    try:
        await stub.Feedback(
            cascade_pb2.FeedbackRequest(request_id=request_id, score=score, comment=comment), timeout=10
        )
    except aio.AioRpcError as exc:
        assert exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), exc.details()
