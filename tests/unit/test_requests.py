"""Validation of client requests (what becomes INVALID_ARGUMENT / RESOURCE_EXHAUSTED)."""

import pytest

from cascade.v1 import cascade_pb2, common_pb2
from services.core.errors import InvalidRequest, Overloaded
from services.core.settings import GatewaySettings
from services.gateway.requests import parse_feedback, parse_generate

LIMITS = GatewaySettings(max_prompt_chars=100, max_tokens_limit=64, default_max_tokens=32)


def test_plain_prompt_becomes_one_user_message_with_defaults():
    r = parse_generate(cascade_pb2.GenerateRequest(prompt="hi"), LIMITS)
    assert [(m.role, m.content) for m in r.messages] == [("user", "hi")]
    assert r.max_tokens == 32 and r.policy == "cascade" and r.temperature is None and len(r.request_id) == 32


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (cascade_pb2.POLICY_AUTO, "cascade"),
        (cascade_pb2.POLICY_CASCADE, "cascade"),
        (cascade_pb2.POLICY_ROUTE, "route"),
        (cascade_pb2.POLICY_SMALL, "small"),
        (cascade_pb2.POLICY_LARGE, "large"),
    ],
)
def test_policies_by_name(policy, expected):
    assert parse_generate(cascade_pb2.GenerateRequest(prompt="a", policy=policy), LIMITS).policy == expected


def test_unspecified_policy_is_the_gateway_default_and_stream_mode_is_parsed():
    limits = GatewaySettings(default_policy="route")
    r = parse_generate(cascade_pb2.GenerateRequest(prompt="a"), limits)
    assert r.policy == "route" and not r.speculative
    spec = cascade_pb2.GenerateRequest(prompt="a", stream_mode=cascade_pb2.STREAM_MODE_SPECULATIVE)
    assert parse_generate(spec, limits).speculative


def test_routed_text_is_the_last_user_message():
    msgs = [
        common_pb2.ChatMessage(role=role, content=c)
        for role, c in [("system", "be brief"), ("user", "first"), ("assistant", "ok"), ("user", "second")]
    ]
    r = parse_generate(cascade_pb2.GenerateRequest(messages=msgs, temperature=0.0), LIMITS)
    assert r.routed_text == "second" and r.temperature == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prompt": ""},
        {"prompt": "a", "messages": [common_pb2.ChatMessage(role="user", content="b")]},
        {"messages": [common_pb2.ChatMessage(role="system", content="only system")]},
        {"prompt": "a", "max_tokens": 65},
        {"prompt": "a", "temperature": -0.1},
        {"prompt": "a", "policy": 9},
        {"prompt": "a", "stream_mode": 7},
        {"prompt": "a", "request_id": "has space"},
        {"prompt": "a", "stop": [""]},
        {"prompt": "a", "tags": {"k": "v" * 300}},
    ],
)
def test_invalid_requests_are_refused(kwargs):
    with pytest.raises(InvalidRequest):
        parse_generate(cascade_pb2.GenerateRequest(**kwargs), LIMITS)


def test_oversized_prompt_is_resource_exhausted():
    with pytest.raises(Overloaded, match="limit is 100"):
        parse_generate(cascade_pb2.GenerateRequest(prompt="x" * 101), LIMITS)


def test_feedback_needs_an_id_and_a_score_in_range():
    assert parse_feedback(cascade_pb2.FeedbackRequest(request_id="r", score=1.0)).score == 1.0
    for bad in (cascade_pb2.FeedbackRequest(score=0.5), cascade_pb2.FeedbackRequest(request_id="r", score=2)):
        with pytest.raises(InvalidRequest):
            parse_feedback(bad)
