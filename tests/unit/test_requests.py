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


# ---- every limit at its edge: the value at the limit is accepted, one past it is refused, with a message


def _generate(**kwargs):
    return parse_generate(cascade_pb2.GenerateRequest(**{"prompt": "a", **kwargs}), LIMITS)


@pytest.mark.parametrize(
    ("accepted", "refused", "message"),
    [
        ({"max_tokens": 64}, {"max_tokens": 65}, "max_tokens is 65; it must be between 1 and 64"),
        ({"temperature": 2.0}, {"temperature": 2.01}, "it must be in [0, 2]"),
        ({"temperature": 0.0}, {"temperature": float("nan")}, "temperature is nan"),
        ({"stop": ["s"] * 16}, {"stop": ["s"] * 17}, "stop takes at most 16 non-empty strings"),
        ({"stop": ["s" * 256]}, {"stop": ["s" * 257]}, "of up to 256 characters"),
        ({"tags": {f"k{i}": "v" for i in range(32)}}, {"tags": {f"k{i}": "v" for i in range(33)}}, "at most 32 tags"),
        ({"tags": {"k" * 64: "v"}}, {"tags": {"k" * 65: "v"}}, "tag key is longer than 64 characters"),
        ({"tags": {"k": "v" * 256}}, {"tags": {"k": "v" * 257}}, "tag 'k' is longer than 256 characters"),
        ({"tenant": "t" * 128}, {"tenant": "t" * 129}, "tenant is longer than 128 characters"),
        ({"request_id": "r" * 128}, {"request_id": "r" * 129}, "request_id must be 1-128 characters"),
        ({"policy": cascade_pb2.POLICY_LARGE}, {"policy": 9}, "unknown policy 9"),
        ({"stream_mode": cascade_pb2.STREAM_MODE_HELD}, {"stream_mode": 7}, "unknown stream_mode 7"),
    ],
)
def test_each_limit_accepts_its_edge_and_refuses_past_it(accepted, refused, message):
    _generate(**accepted)  # no error
    with pytest.raises(InvalidRequest) as err:
        _generate(**refused)
    assert message in err.value.message


def test_a_prompt_at_the_character_limit_is_accepted():
    assert parse_generate(cascade_pb2.GenerateRequest(prompt="x" * 100), LIMITS).routed_text == "x" * 100


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": "a", "messages": [common_pb2.ChatMessage(role="user", content="b")]}, "not both"),
        ({"prompt": " "}, "prompt is empty"),
        (
            {"messages": [common_pb2.ChatMessage(role="wizard", content="b")]},
            "messages[0].role is 'wizard'; expected one of ['assistant', 'system', 'user']",
        ),
        ({"messages": [common_pb2.ChatMessage(role="system", content="b")]}, "need a non-empty user message"),
    ],
)
def test_refused_messages_say_why(kwargs, message):
    with pytest.raises(InvalidRequest) as err:
        parse_generate(cascade_pb2.GenerateRequest(**kwargs), LIMITS)
    assert message in err.value.message


def test_the_last_user_message_must_not_be_empty_even_after_a_full_one():
    msgs = [common_pb2.ChatMessage(role="user", content="first"), common_pb2.ChatMessage(role="user", content=" ")]
    with pytest.raises(InvalidRequest, match="non-empty user message"):
        parse_generate(cascade_pb2.GenerateRequest(messages=msgs), LIMITS)


def test_a_parsed_request_keeps_tenant_and_tags():
    r = _generate(tenant="team-a", tags={"run": "1"}, request_id="req-1")
    assert (r.tenant, r.tags, r.request_id) == ("team-a", {"run": "1"}, "req-1")


def test_feedback_fields_and_their_limits():
    fb = parse_feedback(cascade_pb2.FeedbackRequest(request_id="r-1", score=0.0, comment="c" * 4096, tenant="t"))
    assert (fb.request_id, fb.score, fb.comment, fb.tenant) == ("r-1", 0.0, "c" * 4096, "t")
    assert parse_feedback(cascade_pb2.FeedbackRequest(request_id="r", score=0.5, tenant="t" * 128)).score == 0.5
    for request, message in [
        (cascade_pb2.FeedbackRequest(score=0.5), "feedback needs the request_id of an earlier request"),
        (cascade_pb2.FeedbackRequest(request_id="r", score=-0.01), "score is -0.01; it must be in [0, 1]"),
        (cascade_pb2.FeedbackRequest(request_id="r", comment="c" * 4097), "comment is longer than 4096"),
        (cascade_pb2.FeedbackRequest(request_id="r", tenant="t" * 129), "tenant is longer than 128"),
        (cascade_pb2.FeedbackRequest(request_id="bad id"), "request_id must be 1-128 characters"),
    ]:
        with pytest.raises(InvalidRequest) as err:
            parse_feedback(request)
        assert message in err.value.message


def test_one_user_message_is_enough_and_only_the_last_user_message_must_have_text():
    one = [common_pb2.ChatMessage(role="system", content="be brief"), common_pb2.ChatMessage(role="user", content="hi")]
    assert parse_generate(cascade_pb2.GenerateRequest(messages=one), LIMITS).routed_text == "hi"
    three = [common_pb2.ChatMessage(role="user", content=c) for c in ("", "second", "third")]
    assert parse_generate(cascade_pb2.GenerateRequest(messages=three), LIMITS).routed_text == "third"
