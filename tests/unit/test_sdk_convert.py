"""SDK pieces without a socket: wire conversion, local validation, error mapping, options."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from cascade.v1 import cascade_pb2, common_pb2
from services.sdk import (
    ChatMessage,
    ConfigError,
    DeadlineExceeded,
    GenerateResult,
    InternalError,
    InvalidRequest,
    Overloaded,
    Policy,
    RemoteError,
    Route,
    StreamChunk,
    TlsConfig,
    Usage,
    _convert,
    collect,
)
from services.sdk._config import ClientConfig, merge_metadata
from services.sdk._errors import from_rpc_error


def _request(prompt: str | None = "p", **overrides: Any) -> cascade_pb2.GenerateRequest:
    args: dict[str, Any] = {
        "messages": None,
        "max_tokens": 0,
        "temperature": None,
        "stop": (),
        "policy": "auto",
        "tenant": "",
        "tags": None,
        "request_id": "",
    }
    return _convert.generate_request(prompt, **(args | overrides))


@pytest.mark.parametrize(
    ("policy", "wire"),
    [
        ("auto", cascade_pb2.POLICY_AUTO),
        ("cascade", cascade_pb2.POLICY_CASCADE),
        ("Route", cascade_pb2.POLICY_ROUTE),
        (Policy.AUTO, cascade_pb2.POLICY_CASCADE),
        (None, cascade_pb2.POLICY_UNSPECIFIED),  # the gateway's default policy
        ("Small", cascade_pb2.POLICY_SMALL),
        (" large ", cascade_pb2.POLICY_LARGE),
        (Policy.LARGE, cascade_pb2.POLICY_LARGE),
        (cascade_pb2.POLICY_SMALL, cascade_pb2.POLICY_SMALL),
    ],
)
def test_policy_to_wire(policy: Any, wire: int) -> None:
    assert _convert.policy_to_wire(policy) == wire


@pytest.mark.parametrize("policy", ["medium", "", 9, True, 1.0])
def test_bad_policy_is_invalid_request(policy: Any) -> None:
    with pytest.raises(InvalidRequest, match="policy"):
        _convert.policy_to_wire(policy)


def test_request_fields() -> None:
    request = _request(
        None,
        messages=[ChatMessage.user("hi"), {"role": "assistant", "content": "yo"}],
        temperature=0.0,
        stop="END",
        tags={"a": "b"},
    )
    assert [(m.role, m.content) for m in request.messages] == [("user", "hi"), ("assistant", "yo")]
    assert request.HasField("temperature") and request.temperature == 0.0
    assert list(request.stop) == ["END"]
    assert not _request().HasField("temperature")


@pytest.mark.parametrize(
    ("prompt", "overrides"),
    [
        (None, {}),
        ("p", {"messages": []}),
        (None, {"messages": [{"role": "user", "content": "x", "name": "n"}]}),
        (None, {"messages": ["just text"]}),
        ("p", {"max_tokens": 2**32}),
        ("p", {"stop": [1]}),
        (3, {}),
    ],
)
def test_malformed_requests_are_invalid(prompt: Any, overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        _request(prompt, **overrides)


def test_finish_reason_names() -> None:
    assert _convert.finish_reason_from_wire(common_pb2.FINISH_REASON_STOP) == "stop"
    assert _convert.finish_reason_from_wire(common_pb2.FINISH_REASON_LENGTH) == "length"
    assert _convert.finish_reason_from_wire(common_pb2.FINISH_REASON_ERROR) == "error"
    assert _convert.finish_reason_from_wire(common_pb2.FINISH_REASON_UNSPECIFIED) == "unspecified"
    assert _convert.finish_reason_from_wire(42) == "unspecified"  # from a newer server


def test_chunks_and_collect() -> None:
    summary = {
        "finish_reason": common_pb2.FINISH_REASON_LENGTH,
        "route": common_pb2.RouteSummary(tier="large", tiers_tried=["small", "large"], confidence=0.0),
        "usage": common_pb2.Usage(input_tokens=3, output_tokens=4),
        "cost_usd": 0.5,
    }
    wire = [
        cascade_pb2.GenerateChunk(request_id="r", text="ab", tier="small", **summary),  # not final: ignored
        cascade_pb2.GenerateChunk(request_id="r", text="cd", tier="large", final=True, **summary),
    ]
    chunks = [_convert.chunk_from_wire(c) for c in wire]
    assert chunks[0] == StreamChunk(request_id="r", text="ab", tier="small")
    assert chunks[1].route == Route(tier="large", tiers_tried=("small", "large"), confidence=0.0)
    result = collect(chunks)
    assert result.text == "abcd" and result.finish_reason == "length" and result.cost_usd == 0.5
    assert result.usage == Usage(input_tokens=3, output_tokens=4) and result.usage.total_tokens == 7
    with pytest.raises(InternalError, match="final"):
        GenerateResult.from_chunks(chunks[:1])
    with pytest.raises(InternalError):
        collect([])


def test_retraction_withdraws_the_text_before_it() -> None:
    wire = [
        cascade_pb2.GenerateChunk(request_id="r", text="small ", tier="small"),
        cascade_pb2.GenerateChunk(request_id="r", tier="large", retract=True),
        cascade_pb2.GenerateChunk(request_id="r", text="large", tier="large"),
        cascade_pb2.GenerateChunk(
            request_id="r",
            tier="large",
            final=True,
            route=common_pb2.RouteSummary(
                tier="large",
                escalated=True,
                reason=common_pb2.PATH_REASON_DISAGREEMENT,
                agreement=0.0,
                confidence_threshold=0.6,
                samples=3,
                second_opinion_tier="second",
                confidence_model_version="agreement-1",
            ),
        ),
    ]
    chunks = [_convert.chunk_from_wire(c) for c in wire]
    assert [c.retract for c in chunks] == [False, True, False, False]
    result = collect(chunks)
    assert result.text == "large"
    route = result.route
    assert route.reason == "disagreement" and route.agreement == 0.0 and route.confidence_threshold == 0.6
    assert route.samples == 3 and route.second_opinion_tier == "second" and route.confidence_model_version
    assert _convert.route_from_wire(common_pb2.RouteSummary()).reason == ""  # unset: no reason, not "unspecified"


def test_speculative_sets_the_stream_mode() -> None:
    assert _request("hi", speculative=True).stream_mode == cascade_pb2.STREAM_MODE_SPECULATIVE
    assert _request("hi").stream_mode == cascade_pb2.STREAM_MODE_UNSPECIFIED


def test_results_are_frozen() -> None:
    result = _convert.result_from_wire(cascade_pb2.GenerateResponse(text="x"))
    assert result.route.confidence is None and result.finish_reason == "unspecified"
    with pytest.raises(AttributeError):
        result.text = "y"  # type: ignore[misc]


def test_rpc_errors_map_by_status() -> None:
    def rpc_error(code: grpc.StatusCode, details: str | None) -> grpc.RpcError:
        return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)

    error = from_rpc_error(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "too busy"))
    assert isinstance(error, Overloaded) and isinstance(error, RemoteError)
    assert (error.message, error.grpc_code) == ("too busy", grpc.StatusCode.RESOURCE_EXHAUSTED)
    error = from_rpc_error(rpc_error(grpc.StatusCode.DATA_LOSS, None))
    assert isinstance(error, InternalError) and error.message == "DATA_LOSS"
    assert isinstance(from_rpc_error(grpc.RpcError()), InternalError)
    copy = pickle.loads(pickle.dumps(from_rpc_error(rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "late"))))
    assert isinstance(copy, DeadlineExceeded) and isinstance(copy, RemoteError)
    assert copy.grpc_code is grpc.StatusCode.DEADLINE_EXCEEDED


def test_metadata_merge_lowercases_and_overrides() -> None:
    base = merge_metadata({"Authorization": "a", "x-team": "t"})
    assert merge_metadata({"X-Team": "u"}, base=base) == (("authorization", "a"), ("x-team", "u"))


def test_client_config_validation(tmp_path: Path) -> None:
    config = ClientConfig.create(target="h:1", tls=False, timeout=2, metadata=None, options=())
    assert config.credentials is None
    assert config.call_args(None, None)["timeout"] == 2
    assert config.call_args(0.5, None)["timeout"] == 0.5
    with pytest.raises(InvalidRequest):
        config.call_args(-1, None)
    bad: list[dict[str, Any]] = [
        {"target": ""},
        {"timeout": 0},
        {"tls": "yes"},
        {"tls": TlsConfig(root_certificates=tmp_path / "missing.pem")},
        {"tls": TlsConfig(private_key=b"key")},
    ]
    defaults: dict[str, Any] = {"target": "h:1", "tls": False, "timeout": None, "metadata": None, "options": ()}
    for overrides in bad:
        with pytest.raises(ConfigError):
            ClientConfig.create(**(defaults | overrides))
    named = ClientConfig.create(target="h:1", tls=TlsConfig(server_name="svc"), timeout=None, metadata=None, options=())
    assert ("grpc.ssl_target_name_override", "svc") in named.options
    assert named.credentials is not None
