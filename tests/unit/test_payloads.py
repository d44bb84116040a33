"""Every NATS payload decoder, given malformed bytes (hypothesis): a project error or a message, nothing else.

The decoders here are plain functions (the gateway's readers of router and tier replies, the outcome
reader); the services' NATS handlers are fuzzed on a real nats-server in tests/integration/test_fuzz_services.py.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import _validate_subject

from bench.fuzz.inputs import SAMPLES, nested_groups, oversized, payloads
from cascade.v1 import events_pb2
from services.core import subjects
from services.core.errors import CascadeError, InvalidRequest, Overloaded, TierUnavailable, Unavailable
from services.core.payloads import decode, is_inbox
from services.gateway import wire
from services.gateway.clients import decode_accept, decode_chunk, decode_decision
from services.outcomes.reader import decode_event

LIMIT = 64 << 10


@given(payloads(list(SAMPLES.values()), limit=LIMIT))
def test_decode_returns_a_message_or_raises_invalid_request_or_overloaded(data: bytes) -> None:
    try:
        message = decode(events_pb2.TierRequest, data, limit=LIMIT)
    except Overloaded:
        assert len(data) > LIMIT
    except InvalidRequest as exc:
        assert "malformed TierRequest" in exc.message
    else:
        assert len(data) <= LIMIT and message.SerializeToString() is not None


def test_a_payload_over_the_limit_is_refused_before_it_is_decoded() -> None:
    with pytest.raises(Overloaded, match="TokenChunk of 65537 bytes is over the limit of 65536"):
        decode(events_pb2.TokenChunk, oversized(LIMIT, 1), limit=LIMIT)
    assert decode(events_pb2.TokenChunk, SAMPLES["TokenChunk"], limit=LIMIT).text == "4"


def test_deeply_nested_groups_are_malformed_not_a_recursion_error() -> None:
    with pytest.raises(InvalidRequest):
        decode(events_pb2.OutcomeEvent, nested_groups(10_000))


@given(payloads([SAMPLES["RouteDecision"]], limit=LIMIT))
def test_the_gateway_reads_any_router_reply_or_says_the_router_misbehaves(data: bytes) -> None:
    try:
        decode_decision(data, limit=LIMIT)
    except Unavailable as exc:
        assert "the router's reply was refused" in exc.message


@given(payloads([SAMPLES["TierAccept"], SAMPLES["TokenChunk"]], limit=LIMIT))
def test_the_gateway_reads_any_tier_reply_or_raises_a_project_error(data: bytes) -> None:
    with contextlib.suppress(CascadeError):  # TierUnavailable, or the error the accept carries
        decode_accept(data, "small", limit=LIMIT)
    try:
        wire.piece(decode_chunk(data, "small", limit=LIMIT))
    except TierUnavailable as exc:
        assert "unreadable TokenChunk" in exc.message


def test_an_unreadable_tier_accept_is_unavailable_naming_the_tier() -> None:
    # Regression: a TierAccept that failed to parse escaped as DecodeError (the caller saw INTERNAL).
    with pytest.raises(TierUnavailable, match="tier 'large' sent an unreadable TierAccept: malformed"):
        decode_accept(b"\xff\xff", "large")


@given(st.sampled_from([subjects.OUTCOMES, subjects.FEEDBACK]), payloads(list(SAMPLES.values()), limit=LIMIT))
def test_the_outcome_reader_skips_what_it_cannot_read(subject: str, data: bytes) -> None:
    event = decode_event(subject, data, limit=LIMIT)
    assert event is None or len(data) <= LIMIT


@given(st.text(max_size=80))
def test_only_plain_inbox_subjects_are_accepted_for_replies(subject: str) -> None:
    if is_inbox(subject):
        assert subject.startswith("_INBOX.")
        _validate_subject(subject)  # nats-py would publish on it
        assert not any(c in subject for c in " \t\r\n*>")


@pytest.mark.parametrize(
    "subject", ["", "_INBOX", "_INBOX.", "cascade.route", "_INBOX.a b", "_INBOX.*", "_INBOX.a\r\nPUB"]
)
def test_subjects_that_are_not_inboxes_are_refused(subject: str) -> None:
    assert not is_inbox(subject)


def test_inbox_subjects_the_gateway_and_nats_py_make_are_accepted() -> None:
    assert is_inbox("_INBOX.cascade.chunks.Xk3aQ1.7") and is_inbox("_INBOX.mH4bPPwWQrTSTkQGkHHSsn")
